import { createHash } from 'node:crypto';
import { z } from 'zod';

/** Every scope a token can carry (contract §3); `admin` is everything, all partners. */
export const scopes = ['commands:write', 'read', 'employees:read', 'clients:sync', 'webhooks:write', 'admin'] as const;

/** One API token: who it is, which partners it may act on, what it may do. */
export const tokenSchema = z
  .object({
    token: z.string().min(8).max(256),
    name: z.string().min(1).max(100),
    partners: z.union([z.literal('*'), z.array(z.string().min(1).max(128)).max(10_000)]),
    scopes: z.array(z.enum(scopes)).min(1).max(scopes.length),
  })
  .strict();
export type ApiToken = z.infer<typeof tokenSchema>;
export type Scope = ApiToken['scopes'][number];

export type Role = 'api' | 'worker' | 'scheduler';
const roles: readonly Role[] = ['api', 'worker', 'scheduler'];

const roleList = z
  .string()
  .max(100)
  .transform((s, ctx) => {
    const given = s.split(',').map((r) => r.trim()).filter(Boolean);
    for (const r of given) {
      if (!roles.includes(r as Role)) {
        ctx.addIssue({ code: 'custom', message: `unknown role "${r}" (api, worker, scheduler)` });
        return z.NEVER;
      }
    }
    return new Set(given as Role[]);
  });

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

/**
 * A comma list of day counts (decimals allowed: `0.0005` is about 43 seconds, so a test can watch a
 * reminder fire), parsed to numbers, without duplicates, largest first.
 */
const dayList = (fallback: string) =>
  z
    .string()
    .max(200)
    .default(fallback)
    .transform((s, ctx) => {
      const parts = s.split(',').map((d) => d.trim()).filter(Boolean);
      const days = parts.map(Number);
      if (parts.length === 0 || parts.length > 20 || days.some((d) => !Number.isFinite(d) || d <= 0 || d > 3650)) {
        ctx.addIssue({ code: 'custom', message: 'expected a comma list of 1 to 20 day counts, each > 0 and <= 3650 (e.g. 30,7,1)' });
        return z.NEVER;
      }
      return [...new Set(days)].sort((a, b) => b - a);
    });

/**
 * A 32-byte key written in base64 or base64url (`openssl rand -base64 32`), decoded. The message
 * never repeats the value.
 */
const key32 = z
  .string()
  .max(100)
  .transform((s, ctx) => {
    const key = /^[A-Za-z0-9+/_-]{43}=?$/.test(s.trim()) ? Buffer.from(s.trim(), 'base64') : null;
    if (key?.length !== 32) {
      ctx.addIssue({ code: 'custom', message: 'expected 32 bytes in base64 or base64url (e.g. openssl rand -base64 32)' });
      return z.NEVER;
    }
    return key;
  });

/**
 * The environment, parsed once at start. Nothing else reads `process.env`.
 * Every key has a description; secrets (API_TOKENS, the password in SMTP_URL) have no default.
 */
export const envSchema = z.object({
  NODE_ENV: z.string().max(40).default('development').describe('production makes API_TOKENS mandatory'),
  DATABASE_URL: z.url().max(2000).default('postgres://postgres@127.0.0.1:5432/partner_access').describe('Postgres connection URL; the database is created when missing'),
  REDIS_URL: z.url().max(2000).default('redis://127.0.0.1:6379/0').describe('Redis URL; a db index in the path is honoured'),
  REDIS_CLUSTER: bool.default(false).describe('true: REDIS_URL names one node of a Redis Cluster (queues are hash-tagged one per queue)'),
  QUEUE_PREFIX: z.string().min(1).max(100).regex(/^[A-Za-z0-9_{}-]+$/).default('pap').describe('BullMQ key prefix (use {hash-tag} braces on Redis Cluster)'),
  SMTP_URL: z.url().max(2000).default('smtp://127.0.0.1:1025').describe('outgoing mail server'),
  MAIL_FROM: z.string().max(300).default('Partner Program <no-reply@partner-access.local>').describe('sender address of every email'),
  PORT: int(0, 65535).default(3000).describe('HTTP port'),
  HOST: z.string().max(200).default('0.0.0.0').describe('HTTP bind address'),
  METRICS_PORT: int(0, 65535).optional().describe('a port where a process without the api role serves /metrics; unset: none'),
  PUBLIC_URL: z.url().max(2000).optional().describe('base URL used in links inside emails; default http://localhost:$PORT'),
  API_TOKENS: z.string().max(1_000_000).optional().describe('JSON array of {token,name,partners,scopes}'),
  ROLES: roleList.default(new Set<Role>(roles)).describe('comma list of api, worker, scheduler'),
  MIGRATE_ON_START: bool.default(true).describe('apply pending migrations when npm start runs'),
  RECALC_CRON: z.string().min(9).max(100).default('0 6 * * *').describe('cron pattern of the scheduled credit recalculation'),
  RECALC_TZ: z.string().min(1).max(64).default('UTC').describe('time zone of RECALC_CRON'),
  RENEWAL_ALERT_DAYS: int(1, 3650).default(90).describe('window for upcoming renewal decisions'),
  WORKER_CONCURRENCY: int(1, 500).default(16).describe('jobs processed at once per queue per process'),
  PAIR_BATCH_SIZE: int(1, 1000).default(32).describe('single pair jobs committed together in one transaction (at most)'),
  PAIR_RANGE_SIZE: int(1, 1000).default(256).describe('pairs per range job of a many-pair command (one transaction; its emails sent right after the commit)'),
  JOB_LOCK_MS: int(1000, 600_000).default(30_000).describe('job lock; a crashed worker\'s job is taken over after about this long'),
  RECONCILE_INTERVAL_MS: int(200, 3_600_000).default(5000).describe('how often unfinished commands without a job are re-enqueued'),
  RECONCILE_GRACE_MS: int(0, 3_600_000).default(10_000).describe('age of a command before the reconciler looks at it'),
  RATE_LIMIT_PER_MINUTE: int(0, 10_000_000).default(60_000).describe('requests per minute per API token (0 disables the limit)'),
  GRANT_TTL_DAYS: z.coerce.number().finite().positive().max(365).default(14).describe('days a pending request (and its link) stays open after its email; decimals allowed (0.0005 is about 43 seconds)'),
  GRANT_REMINDER_DAYS: dayList('3').describe('comma list: days before a pending request expires when the client gets a reminder'),
  ACCESS_END_REMINDER_DAYS: dayList('30,7,1').describe('comma list: days before a time-bound access ends when the partner is told'),
  GRANT_LINK_SECRET: z.string().min(16).max(1000).optional().describe('key of the grant links (HMAC-SHA256); the same in every process; required with NODE_ENV=production'),
  WEBHOOK_SECRET_KEY: key32.optional().describe('key (32 bytes, base64 or base64url) that seals the webhook signing secrets in Postgres (AES-256-GCM); the same in every process; required with NODE_ENV=production'),
  WEBHOOK_SECRET_KEY_PREVIOUS: key32.optional().describe('the key before WEBHOOK_SECRET_KEY, during a key rotation: secrets sealed with it still open, and are sealed again with WEBHOOK_SECRET_KEY at start'),
  LIFECYCLE_SWEEP_MS: int(100, 86_400_000).default(60_000).describe('how often the lifecycle sweep runs (request expiry, reminders, time-bound access ends and their notices)'),
  WEBHOOK_ALLOW_PRIVATE: bool.default(false).describe('allow webhook targets on loopback/private addresses (development, tests)'),
  WEBHOOK_RETRY_BASE_MS: int(10, 3_600_000).default(5000).describe('first retry delay of a failed webhook delivery; each next one doubles, at most 1 hour apart, for 24 hours'),
  WEBHOOK_RETENTION_DAYS: int(1, 3650).default(30).describe('days a finished webhook event (every delivery delivered, given up or dropped) and its deliveries are kept after their last activity; the lifecycle sweep deletes older ones'),
  BODY_LIMIT_BYTES: int(1024, 100 * 1024 * 1024).default(5 * 1024 * 1024).describe('largest accepted request body (413 above)'),
  SHUTDOWN_TIMEOUT_MS: int(100, 600_000).default(15_000).describe('bound on draining workers at SIGTERM'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('pino log level'),
  LOG_PRETTY: bool.default(false).describe('1: readable log lines instead of JSON (development)'),
});

const apiTokens = z.array(tokenSchema).min(1).max(10_000);

/** The grant-link key outside production when GRANT_LINK_SECRET is not set: public, so links made with it prove nothing. */
export const DEV_GRANT_LINK_SECRET = 'development-only-grant-link-secret-do-not-use-in-production';

/**
 * The webhook-secret key outside production when WEBHOOK_SECRET_KEY is not set: public (derived
 * from this text), so secrets sealed with it are as good as clear.
 */
export const devWebhookSecretKey = (): Buffer => createHash('sha256').update('development-only-webhook-secret-key-do-not-use-in-production').digest();

/**
 * The environment turned into the typed configuration the application is given. API_TOKENS is
 * JSON inside a string: it is parsed here, and its issues are reported under its key, with the
 * path inside the JSON (never the value).
 */
export const configSchema = envSchema.transform((e, ctx) => {
  let tokens: ApiToken[] | null = null;
  if (e.API_TOKENS !== undefined) {
    let raw: unknown;
    try {
      raw = JSON.parse(e.API_TOKENS);
    } catch {
      ctx.addIssue({ code: 'custom', path: ['API_TOKENS'], message: 'not valid JSON' });
      return z.NEVER;
    }
    const t = apiTokens.safeParse(raw);
    if (!t.success) {
      for (const i of t.error.issues) ctx.addIssue({ code: 'custom', path: ['API_TOKENS'], message: `[${i.path.join('.')}] ${i.message}` });
      return z.NEVER;
    }
    tokens = t.data;
  } else if (e.NODE_ENV === 'production') {
    ctx.addIssue({ code: 'custom', path: ['API_TOKENS'], message: 'required when NODE_ENV=production' });
    return z.NEVER;
  }
  if (e.GRANT_LINK_SECRET === undefined && e.NODE_ENV === 'production') {
    ctx.addIssue({ code: 'custom', path: ['GRANT_LINK_SECRET'], message: 'required when NODE_ENV=production' });
    return z.NEVER;
  }
  if (e.WEBHOOK_SECRET_KEY === undefined && e.NODE_ENV === 'production') {
    ctx.addIssue({ code: 'custom', path: ['WEBHOOK_SECRET_KEY'], message: 'required when NODE_ENV=production' });
    return z.NEVER;
  }
  return {
    env: e.NODE_ENV,
    databaseUrl: e.DATABASE_URL,
    redisUrl: e.REDIS_URL,
    redisCluster: e.REDIS_CLUSTER,
    queuePrefix: e.QUEUE_PREFIX,
    smtpUrl: e.SMTP_URL,
    mailFrom: e.MAIL_FROM,
    port: e.PORT,
    host: e.HOST,
    /** undefined: no separate metrics listener. */
    metricsPort: e.METRICS_PORT,
    publicUrl: (e.PUBLIC_URL ?? `http://localhost:${e.PORT}`).replace(/\/+$/, ''),
    /** null: no API_TOKENS given (development: a generated admin token is used). */
    tokens,
    roles: e.ROLES,
    migrateOnStart: e.MIGRATE_ON_START,
    recalcCron: e.RECALC_CRON,
    recalcTz: e.RECALC_TZ,
    renewalAlertDays: e.RENEWAL_ALERT_DAYS,
    workerConcurrency: e.WORKER_CONCURRENCY,
    jobLockMs: e.JOB_LOCK_MS,
    pairBatchSize: e.PAIR_BATCH_SIZE,
    pairRangeSize: e.PAIR_RANGE_SIZE,
    reconcileIntervalMs: e.RECONCILE_INTERVAL_MS,
    reconcileGraceMs: e.RECONCILE_GRACE_MS,
    grantTtlDays: e.GRANT_TTL_DAYS,
    /**
     * The key of the grant links' tokens (HMAC-SHA256 of the pair and its request). Outside
     * production without GRANT_LINK_SECRET: a fixed development key (API and worker processes
     * must agree, so never a random one), and `grantLinkSecretIsDefault` says so (a warning at start).
     */
    grantLinkSecret: e.GRANT_LINK_SECRET ?? DEV_GRANT_LINK_SECRET,
    grantLinkSecretIsDefault: e.GRANT_LINK_SECRET === undefined,
    /**
     * The keys of the webhook signing secrets at rest (src/webhooks/secret-box.ts). Outside
     * production without WEBHOOK_SECRET_KEY: a fixed development key (every process must open what
     * another sealed, so never a random one), and `webhookSecretKeyIsDefault` says so (a warning at start).
     */
    webhookSecretKeys: { current: e.WEBHOOK_SECRET_KEY ?? devWebhookSecretKey(), previous: e.WEBHOOK_SECRET_KEY_PREVIOUS ?? null },
    webhookSecretKeyIsDefault: e.WEBHOOK_SECRET_KEY === undefined,
    lifecycleSweepMs: e.LIFECYCLE_SWEEP_MS,
    /** Days before a pending request expires when the client is reminded, largest first. */
    grantReminderDays: e.GRANT_REMINDER_DAYS,
    /** Days before a time-bound access ends when the partner is told, largest first. */
    accessEndReminderDays: e.ACCESS_END_REMINDER_DAYS,
    webhookAllowPrivate: e.WEBHOOK_ALLOW_PRIVATE,
    webhookRetryBaseMs: e.WEBHOOK_RETRY_BASE_MS,
    webhookRetentionDays: e.WEBHOOK_RETENTION_DAYS,
    rateLimitPerMinute: e.RATE_LIMIT_PER_MINUTE,
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    logLevel: e.LOG_LEVEL,
    logPretty: e.LOG_PRETTY,
  };
});

/** The typed configuration: what `configSchema` makes of the environment. */
export type Config = z.output<typeof configSchema>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parses the environment; throws a ConfigError naming the bad keys (never their values). */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const defined = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = configSchema.safeParse(defined);
  if (!parsed.success) {
    const keys = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid environment: ${keys.join('; ')}`);
  }
  return parsed.data;
}
