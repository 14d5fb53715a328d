import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import pg from 'pg';
import { pino, type Logger } from 'pino';
import type { ApiToken, Config } from '../config/index.js';
import type { AppContext } from './context.js';
import { openOrm } from './db/orm.js';
import { TokenRegistry } from './producers/http/auth.js';
import { buildServer } from './producers/http/server.js';
import { createQueues } from './queues/index.js';
import { Metrics } from './metrics.js';
import { startWorkers, type RunningWorkers, type WorkerHooks } from './workers/index.js';
import { upsertRecalcScheduler } from './workers/scheduler.js';

export class StartupError extends Error {
  override name = 'StartupError';
}

export function createLogger(level: string): Logger {
  return pino({ level, redact: { paths: ['req.headers.authorization', '*.token', '*.password', 'config.tokens'], censor: '[redacted]' } });
}

/** Says which service does not answer and how to start it, instead of a stack trace. */
export async function checkServices(config: Config): Promise<void> {
  const url = new URL(config.databaseUrl);
  url.pathname = '/postgres';
  const client = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
  } catch (err) {
    throw new StartupError(`Postgres at ${url.hostname}:${url.port || 5432} did not answer (${(err as Error).message}). ` +
      `Start it (for example: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start), or set DATABASE_URL.`);
  } finally {
    await client.end().catch(() => undefined);
  }
  const r = new URL(config.redisUrl);
  const redis = new Redis({ host: r.hostname, port: Number(r.port || 6379), lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    throw new StartupError(`Redis at ${r.hostname}:${r.port || 6379} did not answer (${(err as Error).message}). ` +
      `Start it (for example: redis-server --daemonize yes --appendonly yes --maxmemory-policy noeviction), or set REDIS_URL.`);
  } finally {
    redis.disconnect();
  }
}

/**
 * Warns loudly when Redis may drop jobs: an eviction policy other than noeviction can delete queued
 * jobs under memory pressure, and without AOF a restart forgets them (the reconciler rebuilds them
 * from Postgres, but only after RECONCILE_GRACE_MS). Returns the warnings.
 */
export async function checkRedisSettings(redis: Redis, logger: Logger): Promise<string[]> {
  const warnings: string[] = [];
  try {
    const policy = ((await redis.config('GET', 'maxmemory-policy')) as string[])[1];
    const aof = ((await redis.config('GET', 'appendonly')) as string[])[1];
    if (policy && policy !== 'noeviction') warnings.push(`Redis maxmemory-policy is "${policy}": Redis may evict queued jobs under memory pressure. Set maxmemory-policy noeviction.`);
    if (aof === 'no') warnings.push('Redis has AOF off (appendonly no): a Redis restart loses queued jobs until the reconciler re-enqueues them from Postgres. Set appendonly yes in production.');
  } catch (err) {
    warnings.push(`Could not read the Redis configuration (CONFIG GET refused?): ${(err as Error).message}. Make sure maxmemory-policy is noeviction.`);
  }
  for (const w of warnings) logger.warn({ redisSettings: true }, w);
  return warnings;
}

export interface RunningApp {
  ctx: AppContext;
  server?: FastifyInstance;
  workers?: RunningWorkers;
  /** The generated development admin token, when API_TOKENS was not set. */
  devToken?: string;
  url?: string;
  close(): Promise<void>;
}

/**
 * The composition root: one process with the roles of ROLES (api, worker, scheduler) on one
 * Postgres (MikroORM) and one Redis (BullMQ). Used by `npm start` and by the tests.
 */
export async function startApp(config: Config, opts: { logger?: Logger; hooks?: WorkerHooks; now?: () => Date } = {}): Promise<RunningApp> {
  const logger = opts.logger ?? createLogger(config.logLevel);
  await checkServices(config);
  const orm = await openOrm(config.databaseUrl, { migrate: config.migrateOnStart });
  const queues = await createQueues(config.redisUrl, config.queuePrefix);
  await checkRedisSettings(queues.connection, logger);
  const metrics = new Metrics(queues);
  const ctx: AppContext = { config, orm, queues, logger, metrics, now: opts.now ?? (() => new Date()) };
  const running: RunningApp = { ctx, close: async () => undefined };

  if (config.roles.has('worker')) {
    running.workers = startWorkers(ctx, {
      onJob: (queue, job, outcome, final, err) => {
        metrics.recordJob(queue, job, outcome, final, err);
        opts.hooks?.onJob?.(queue, job, outcome, final, err);
      },
      onReconcile: (r) => {
        for (const [kind, n] of Object.entries(r)) if (n) metrics.reenqueued.inc({ kind }, n);
        opts.hooks?.onReconcile?.(r);
      },
      onEmailsSent: (n) => {
        metrics.emails.inc({ outcome: 'sent' }, n);
        opts.hooks?.onEmailsSent?.(n);
      },
    });
  }
  if (config.roles.has('scheduler')) await upsertRecalcScheduler(ctx);
  if (config.roles.has('api')) {
    let tokens: ApiToken[] = config.tokens ?? [];
    if (!config.tokens) {
      running.devToken = randomBytes(24).toString('base64url');
      tokens = [{ token: running.devToken, name: 'dev-admin', partners: '*', scopes: ['admin'] }];
    }
    running.server = await buildServer(ctx, {
      registry: new TokenRegistry(tokens),
      readiness: (): Record<string, boolean> => (running.workers ? { workers: running.workers.isConsuming() } : {}),
    });
    running.url = await running.server.listen({ port: config.port, host: config.host });
  }

  let closed: Promise<void> | null = null;
  running.close = () => {
    closed ??= (async () => {
      await running.server?.close();
      await running.workers?.close(config.shutdownTimeoutMs);
      await queues.close();
      await orm.close();
    })();
    return closed;
  };
  return running;
}
