import { Queue, type ConnectionOptions } from 'bullmq';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { defaultJobOptions, QUEUES, type CommandJob, type CreditJob, type LifecycleSweepJob, type MailJob, type PairJob, type QueueName, type WebhookJob } from './contracts.js';

export { QUEUES, type QueueName } from './contracts.js';

/** A connection to Redis: one server, or a Redis Cluster (REDIS_CLUSTER=true). */
export type RedisClient = Redis | Cluster;

/** Which Redis: REDIS_URL, and whether it names one node of a Redis Cluster. */
export interface RedisTarget { url: string; cluster?: boolean }

/**
 * How long a producer command may take before it fails (ioredis `commandTimeout`): a stalled Redis
 * makes the intake answer 503 after this long rather than when Redis wakes up.
 */
export const PRODUCER_COMMAND_TIMEOUT_MS = 1500;

/** The user, password and TLS of a Redis URL, for the nodes of a cluster (which has no db index). */
function nodeOptions(url: URL): RedisOptions {
  return {
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
    ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/** An ioredis Cluster that discovers the cluster from the one node REDIS_URL names. */
function clusterClient(url: string, opts: { redis: RedisOptions; offlineQueue: boolean; lazy: boolean }): Cluster {
  const u = new URL(url);
  return new Cluster([{ host: u.hostname, port: Number(u.port || 6379) }], {
    enableOfflineQueue: opts.offlineQueue,
    lazyConnect: opts.lazy,
    redisOptions: { ...nodeOptions(u), ...opts.redis },
  });
}

/**
 * A connection for producers: fails fast while Redis is down (the API answers 503) instead of
 * queueing commands in memory, and gives up on a command after PRODUCER_COMMAND_TIMEOUT_MS.
 */
export function producerConnection(target: RedisTarget | string): RedisClient {
  const { url, cluster } = typeof target === 'string' ? { url: target, cluster: false } : target;
  const redis: RedisOptions = { maxRetriesPerRequest: 1, connectTimeout: 2000, commandTimeout: PRODUCER_COMMAND_TIMEOUT_MS };
  if (cluster) return clusterClient(url, { redis, offlineQueue: false, lazy: true });
  return new Redis(url, { ...redis, enableOfflineQueue: false, lazyConnect: true });
}

/**
 * The connection of one worker: waits out Redis outages (no command timeout, retries forever).
 * On one Redis these are options (BullMQ opens, owns and closes the connection); on a cluster it
 * is a Cluster client that the caller closes after the worker.
 */
export function workerConnection(target: RedisTarget | string): ConnectionOptions {
  const { url, cluster } = typeof target === 'string' ? { url: target, cluster: false } : target;
  if (cluster) return clusterClient(url, { redis: { maxRetriesPerRequest: null }, offlineQueue: true, lazy: false });
  return { url, maxRetriesPerRequest: null };
}

/**
 * The BullMQ prefix of a queue. On one Redis, QUEUE_PREFIX for every queue. On a Redis Cluster,
 * every key of one queue must live in one hash slot (BullMQ's scripts touch several keys at once),
 * and different queues should not share a slot (or one node carries them all): each queue gets a
 * hash tag of its own, `{<QUEUE_PREFIX>-<queue>}` (braces in QUEUE_PREFIX are dropped).
 */
export function queuePrefix(prefix: string, queue: QueueName, cluster = false): string {
  return cluster ? `{${prefix.replace(/[{}]/g, '')}-${queue}}` : prefix;
}

/** How each queue reads on the queue dashboard: a name for people and what its jobs are. */
export const QUEUE_INFO: Record<QueueName, { displayName: string; description: string }> = {
  commands: {
    displayName: 'Commands',
    description: 'One job per accepted command, named by its type; its data is the commandId, its link the command\'s status. Pair commands fan out into "Access pairs".',
  },
  pairs: {
    displayName: 'Access pairs',
    description: 'Pairs of access.assign / access.revoke / access.resend / access.extend commands: a range of pairs per job, applied in one transaction; a refused pair fails on a job of its own with its code (EMAIL_LINKED_TO_OTHER_PARTNER, …).',
  },
  mail: {
    displayName: 'Emails',
    description: 'One job per outbox row (team emails, reminders, partner notices, grant emails that were not sent right after their commit); a sent row is never sent again.',
  },
  credit: {
    displayName: 'Credit recalculation',
    description: 'The daily recalculate-all run (a parent job whose progress counts its finished groups), its recalculate-partners groups, and single-partner jobs.',
  },
  lifecycle: {
    displayName: 'Request lifecycle',
    description: 'The lifecycle-sweep job scheduler (every LIFECYCLE_SWEEP_MS): expires due requests and time-bound accesses, writes reminders and partner notices (sent by "Emails").',
  },
  webhooks: {
    displayName: 'Webhook deliveries',
    description: 'One "deliver" job per webhook subscription with something to send: its deliveries one at a time, in event order, signed; a job waiting (delayed) holds a delivery that is being retried. Its data is the subscription id; the delivery log is GET /v1/partners/{id}/webhooks/{webhookId}/deliveries.',
  },
};

/**
 * The intake's gate on the producer connection: after a failed add, the intake refuses at once
 * (503) until Redis answers a PING again. Without it a stalled Redis would hold every request for
 * the command timeout, one group of requests after the other.
 */
class AnswerGate {
  private isShut = false;
  private probe: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly redis: RedisClient) {
    // A connection that is (re)established has just heard from Redis.
    redis.on('ready', () => { this.isShut = false; });
  }

  /** Whether the last add failed and Redis has not answered since. */
  get shut(): boolean {
    return this.isShut;
  }

  /** An add failed: shut until Redis answers a PING (probed again and again, each bounded by the command timeout). */
  addFailed(): void {
    if (this.closed) return;
    this.isShut = true;
    this.probe ??= (async () => {
      while (!this.closed && this.isShut) {
        if (await this.redis.ping().then(() => true, () => false)) this.isShut = false;
        else await new Promise((r) => setTimeout(r, 100).unref());
      }
      this.probe = null;
    })();
  }

  close(): void {
    this.closed = true;
  }
}

export interface Queues {
  commands: Queue<CommandJob>;
  pairs: Queue<PairJob>;
  mail: Queue<MailJob>;
  credit: Queue<CreditJob>;
  lifecycle: Queue<LifecycleSweepJob>;
  webhooks: Queue<WebhookJob>;
  connection: RedisClient;
  /** QUEUE_PREFIX (other keys of the service, such as web sessions, live under it). */
  prefix: string;
  /** Whether Redis is a cluster (REDIS_CLUSTER). */
  cluster: boolean;
  /** The BullMQ prefix of one queue (see queuePrefix). */
  prefixOf(queue: QueueName): string;
  /** The intake's gate: shut after a failed add until Redis answers again (see AnswerGate). */
  gate: { readonly shut: boolean; addFailed(): void };
  all(): Queue[];
  close(): Promise<void>;
}

/**
 * The producer side of every queue, on one shared connection. Jobs are added through `enqueue.ts`
 * only. `target` is REDIS_URL, or REDIS_URL with REDIS_CLUSTER.
 */
export async function createQueues(target: RedisTarget | string, prefix: string): Promise<Queues> {
  const cluster = typeof target === 'string' ? false : target.cluster === true;
  const connection = producerConnection(target);
  connection.on('error', () => undefined); // reported by readiness checks and by failing adds (503)
  await connection.connect();
  const prefixOf = (name: QueueName) => queuePrefix(prefix, name, cluster);
  const make = <T>(name: QueueName) => new Queue<T>(name, { connection, prefix: prefixOf(name), defaultJobOptions, skipWaitingForReady: true });
  const q = {
    commands: make<CommandJob>(QUEUES.commands),
    pairs: make<PairJob>(QUEUES.pairs),
    mail: make<MailJob>(QUEUES.mail),
    credit: make<CreditJob>(QUEUES.credit),
    lifecycle: make<LifecycleSweepJob>(QUEUES.lifecycle),
    webhooks: make<WebhookJob>(QUEUES.webhooks),
  };
  const gate = new AnswerGate(connection);
  return {
    ...q,
    connection,
    prefix,
    cluster,
    prefixOf,
    gate,
    all: () => Object.values(q) as Queue[],
    async close() {
      gate.close();
      await Promise.all(Object.values(q).map((x) => x.close()));
      if (connection.status !== 'end') connection.disconnect();
    },
  };
}
