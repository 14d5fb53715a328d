import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';

/** Queue names. Jobs carry ids only (never emails or names): Redis can be rebuilt from Postgres. */
export const QUEUES = {
  /** One job per accepted command: `{commandId}`. */
  commands: 'commands',
  /**
   * access.assign / access.revoke pairs: one job per range of a command's pairs (`{commandId, from, to}`,
   * applied in one transaction), and one job per pair (`{commandId, idx}`) for a pair that failed or
   * must be applied on its own, so a refused pair is one failed job with its code.
   */
  pairs: 'pairs',
  /** One job per outbox row: `{outboxId}`. */
  mail: 'mail',
  /** Credit recalculation: the scheduled fan-out, one job per group of partners, and single-partner jobs. */
  credit: 'credit',
} as const;
export type QueueName = (typeof QUEUES)[keyof typeof QUEUES];

export interface CommandJob { commandId: string }
export type PairJob = { commandId: string; idx: number } | PairRangeJob;
export interface PairRangeJob { commandId: string; from: number; to: number }
export interface MailJob { outboxId: string }
/** `recalculate-all` `{groupSize?}`, `recalculate-partners` `{partnerIds, runId}`, `recalculate-partner` `{partnerId, isolatedFrom?}` (see workers/scheduler.ts). */
export interface CreditJob { partnerId?: string; month?: string; partnerIds?: string[]; runId?: string; isolatedFrom?: string; groupSize?: number }

/** BullMQ job ids must not contain ':' (commandIds may): '~' is outside the commandId alphabet, so this is one-to-one. */
const safe = (id: string) => id.replaceAll(':', '~');
export const jobIds = {
  command: (commandId: string) => `c.${safe(commandId)}`,
  pair: (commandId: string, idx: number) => `p.${safe(commandId)}.${idx}`,
  pairRange: (commandId: string, from: number, to: number) => `p.${safe(commandId)}.${from}-${to}`,
  mail: (outboxId: string | number) => `m.${outboxId}`,
  credit: (partnerId: string, runId: string) => `r.${safe(partnerId)}.${runId}`,
};

/** Retries with exponential backoff for transient failures; domain refusals use UnrecoverableError and skip them. */
export const defaultJobOptions: JobsOptions = {
  attempts: 8,
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: { age: 24 * 3600, count: 5000 },
  removeOnFail: { age: 14 * 24 * 3600, count: 50_000 },
};

function redisOptions(url: string): RedisOptions {
  const u = new URL(url);
  const db = Number(u.pathname.replace(/^\//, '') || '0');
  return {
    host: u.hostname || '127.0.0.1',
    port: Number(u.port || 6379),
    db: Number.isFinite(db) ? db : 0,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/** A connection for producers: fails fast while Redis is down (the API answers 503) instead of queueing commands in memory. */
export function producerConnection(url: string): Redis {
  return new Redis({ ...redisOptions(url), enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2000, lazyConnect: true });
}

/** Connection options for workers (BullMQ owns and closes the connection): waits out Redis outages. */
export function workerConnection(url: string): ConnectionOptions {
  return { ...redisOptions(url), maxRetriesPerRequest: null } as ConnectionOptions;
}

export interface Queues {
  commands: Queue<CommandJob>;
  pairs: Queue<PairJob>;
  mail: Queue<MailJob>;
  credit: Queue<CreditJob>;
  connection: Redis;
  prefix: string;
  all(): Queue[];
  close(): Promise<void>;
}

/** The producer side of every queue, on one shared connection. */
export async function createQueues(redisUrl: string, prefix: string): Promise<Queues> {
  const connection = producerConnection(redisUrl);
  connection.on('error', () => undefined); // reported by readiness checks and by failing adds (503)
  await connection.connect();
  const make = <T>(name: QueueName) => new Queue<T>(name, { connection, prefix, defaultJobOptions, skipWaitingForReady: true });
  const q = {
    commands: make<CommandJob>(QUEUES.commands),
    pairs: make<PairJob>(QUEUES.pairs),
    mail: make<MailJob>(QUEUES.mail),
    credit: make<CreditJob>(QUEUES.credit),
  };
  return {
    ...q,
    connection,
    prefix,
    all: () => Object.values(q) as Queue[],
    async close() {
      await Promise.all(Object.values(q).map((x) => x.close()));
      if (connection.status !== 'end') connection.disconnect();
    },
  };
}
