import { Queue, type ConnectionOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { defaultJobOptions, QUEUES, type CommandJob, type CreditJob, type MailJob, type PairJob, type QueueName } from './contracts.js';

export { QUEUES, type QueueName } from './contracts.js';


/** A connection for producers: fails fast while Redis is down (the API answers 503) instead of queueing commands in memory. */
export function producerConnection(url: string): Redis {
  return new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2000, lazyConnect: true });
}

/** Connection options for workers (BullMQ opens, owns and closes the connection from the URL): waits out Redis outages. */
export function workerConnection(url: string): ConnectionOptions {
  return { url, maxRetriesPerRequest: null };
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

/** The producer side of every queue, on one shared connection. Jobs are added through `enqueue.ts` only. */
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
