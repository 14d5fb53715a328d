import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { createServer as createNetServer } from 'node:net';
import { PinoPretty } from 'pino-pretty';
import { pino, type Logger } from 'pino';
import type { ApiToken, Config } from '../config/index.js';
import type { AppContext } from './context.js';
import { checkDatabaseServer, openOrm } from './db/orm.js';
import { TokenRegistry } from './producers/http/auth.js';
import { buildServer } from './producers/http/server.js';
import { createQueues, type RedisClient } from './jobs/queues.js';
import { listenMetrics, Metrics, type MetricsServer } from './metrics.js';
import { startWorkers, type RunningWorkers, type WorkerHooks } from './workers/index.js';
import { upsertSchedulers } from './jobs/enqueue.js';
import { requestGauges } from './db/lifecycle-store.js';
import { WebhookSecretError } from './webhooks/secret-box.js';
import { sealStoredSecrets } from './webhooks/secrets-at-rest.js';

/** A start that cannot go on; `main` prints the message alone (no stack) and exits with `exitCode`. */
export class StartupError extends Error {
  override name = 'StartupError';
  /** 2: a setting does not fit the data (WEBHOOK_SECRET_KEY); 3: Postgres or Redis does not answer; 4: the HTTP (or metrics) port cannot be bound. */
  constructor(message: string, readonly exitCode = 3) {
    super(message);
  }
}

/**
 * The process's logger: JSON lines, or readable lines (pino-pretty, written synchronously so a
 * line logged right before `process.exit` is not lost) when `pretty` (LOG_PRETTY=1, or stdout is a
 * terminal). Credentials are redacted by path in both.
 */
export function createLogger(level: string, opts: { pretty?: boolean } = {}): Logger {
  const options = { level, redact: { paths: ['req.headers.authorization', '*.token', '*.password', 'config.tokens'], censor: '[redacted]' } };
  if (!opts.pretty) return pino(options);
  return pino(options, PinoPretty({ sync: true, colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }));
}

/** Says why a port cannot be bound, in one line (a busy port, a privileged port, an address not of this machine). */
function listenError(err: unknown, what: string, port: number, host: string): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  const where = `${host}:${port}`;
  if (code === 'EADDRINUSE') return new StartupError(`The ${what} port ${where} is already in use (another instance of the service, or another program). Stop that program, or set ${what === 'HTTP' ? 'PORT' : 'METRICS_PORT'} to a free port.`, 4);
  if (code === 'EACCES') return new StartupError(`Not permitted to listen on ${where} (${what}): ports below 1024 need privileges. Use a higher port.`, 4);
  if (code === 'EADDRNOTAVAIL') return new StartupError(`Cannot listen on ${where} (${what}): ${host} is not an address of this machine. Set HOST.`, 4);
  return err;
}

/**
 * Fails fast, before anything is migrated or written to Redis, when a port cannot be bound: binds
 * it and lets it go. (The real listen still comes before any startup write, should another program
 * take the port in between.) Port 0 (any free port) needs no check.
 */
export async function checkPort(port: number, host: string, what: 'HTTP' | 'metrics'): Promise<void> {
  if (port === 0) return;
  const probe = createNetServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen({ port, host, exclusive: true }, resolve);
    });
  } catch (err) {
    throw listenError(err, what, port, host);
  } finally {
    await new Promise<void>((resolve) => (probe.listening ? probe.close(() => resolve()) : resolve()));
  }
}

/** Says which service does not answer and how to start it, instead of a stack trace. */
export async function checkServices(config: Config): Promise<void> {
  const url = new URL(config.databaseUrl);
  try {
    await checkDatabaseServer(config.databaseUrl, 3000);
  } catch (err) {
    throw new StartupError(`Postgres at ${url.hostname}:${url.port || 5432} did not answer (${(err as Error).message}). ` +
      `Start it (for example: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start), or set DATABASE_URL.`);
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
export async function checkRedisSettings(redis: RedisClient, logger: Logger): Promise<string[]> {
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
  /** Where a process without the api role serves `/metrics` (METRICS_PORT). */
  metricsUrl?: string;
  close(): Promise<void>;
}

/**
 * The composition root: one process with the roles of ROLES (api, worker, scheduler) on one
 * Postgres (MikroORM) and one Redis (BullMQ). Used by `npm start` and by the tests.
 */
export async function startApp(config: Config, opts: { logger?: Logger; hooks?: WorkerHooks; now?: () => Date } = {}): Promise<RunningApp> {
  const logger = opts.logger ?? createLogger(config.logLevel, { pretty: config.logPretty });
  const metricsPort = config.roles.has('api') ? undefined : config.metricsPort;
  if (config.roles.has('api')) await checkPort(config.port, config.host, 'HTTP');
  if (metricsPort !== undefined) await checkPort(metricsPort, config.host, 'metrics');
  await checkServices(config);
  const orm = await openOrm(config.databaseUrl, { migrate: config.migrateOnStart });
  // Webhook secrets not sealed with WEBHOOK_SECRET_KEY yet are sealed now; one it cannot open stops the start (exit 2).
  const sealed = await sealStoredSecrets(orm.em.fork(), config.webhookSecretKeys).catch(async (err: unknown) => {
    await orm.close();
    throw err instanceof WebhookSecretError ? new StartupError(err.message, 2) : err;
  });
  if (sealed) logger.info({ sealed }, 'webhook secrets sealed with WEBHOOK_SECRET_KEY');
  const queues = await createQueues({ url: config.redisUrl, cluster: config.redisCluster }, config.queuePrefix);
  await checkRedisSettings(queues.connection, logger);
  if (config.webhookSecretKeyIsDefault) logger.warn({ key: 'WEBHOOK_SECRET_KEY' }, 'WEBHOOK_SECRET_KEY is not set: webhook secrets are sealed with the public development key. Set it (the same in every process) anywhere real.');
  if (config.grantLinkSecretIsDefault) logger.warn({ key: 'GRANT_LINK_SECRET' }, 'GRANT_LINK_SECRET is not set: grant links use the public development key. Set it (the same in every process) anywhere real.');
  const metrics = new Metrics(queues, () => requestGauges(orm.em.fork()));
  const ctx: AppContext = { config, orm, queues, logger, metrics, now: opts.now ?? (() => new Date()) };
  const running: RunningApp = { ctx, close: async () => undefined };

  let metricsServer: MetricsServer | undefined;
  try {
    if (config.roles.has('api')) {
      let tokens: ApiToken[] = config.tokens ?? [];
      if (!config.tokens) {
        running.devToken = randomBytes(24).toString('base64url');
        tokens = [{ token: running.devToken, name: 'dev-admin', partners: '*', scopes: ['admin'] }];
      }
      running.server = await buildServer(ctx, {
        registry: new TokenRegistry(tokens),
        // Not ready until this process's workers consume (they start once the port is bound).
        readiness: (): Record<string, boolean> => (config.roles.has('worker') ? { workers: running.workers?.isConsuming() ?? false } : {}),
      });
      running.url = await running.server.listen({ port: config.port, host: config.host }).catch((err: unknown) => {
        throw listenError(err, 'HTTP', config.port, config.host);
      });
    }
    if (metricsPort !== undefined) {
      metricsServer = await listenMetrics(metrics.registry, metricsPort, config.host).catch((err: unknown) => {
        throw listenError(err, 'metrics', metricsPort, config.host);
      });
      running.metricsUrl = metricsServer.url;
    }
  } catch (err) {
    await running.server?.close();
    await queues.close();
    await orm.close();
    throw err;
  }

  // Only with the ports bound: what writes to Redis at start (workers and their reconciler, the job scheduler).
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
  if (config.roles.has('scheduler')) await upsertSchedulers(ctx);

  let closed: Promise<void> | null = null;
  running.close = () => {
    closed ??= (async () => {
      await running.server?.close();
      await running.workers?.close(config.shutdownTimeoutMs);
      await metricsServer?.close();
      await queues.close();
      await orm.close();
    })();
    return closed;
  };
  return running;
}
