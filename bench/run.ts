/**
 * `npm run bench` (`-- --quick` for a small, ~1 minute run): starts the service against the local
 * Postgres and Redis with its own database and queue prefix and an in-process SMTP sink, runs the
 * scenarios (each with its baseline measured in the same run), prints one table and writes JSON to
 * bench/results/<timestamp>.json and bench/results/latest.json, then cleans up. Exit code 0 when
 * every scenario produced its figures (whatever they are), 1 when one could not run, 130 on SIGINT.
 *
 * Environment (optional): BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432),
 * BENCH_REDIS_URL (default redis://127.0.0.1:6379/0), WORKER_CONCURRENCY (default 16).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { loadConfig } from '../config/index.js';
import { createLogger, startApp, type RunningApp } from '../src/app.js';
import { dropDatabase } from '../src/db/orm.js';
import { killAllChildrenSync, repoRoot, stopAllChildren } from './lib/children.js';
import { fullSizes, quickSizes, type Bench } from './lib/context.js';
import { deleteKeys } from './lib/io.js';
import { buildRows, render, type Results } from './lib/report.js';
import {
  cascade,
  cascadeBaseline,
  endToEnd,
  endToEndBaseline,
  intake,
  memory,
  recalculation,
  recalculationBaseline,
  seedRecalc,
  startWorkers,
  stopWorkers,
} from './lib/scenarios.js';
import { startSmtpSink, type SmtpSink } from './lib/smtp-sink.js';
import { smtpCeiling, stream } from './lib/stream.js';
// The worker's own SMTP pool for the grant emails it sends right after commit: the ceiling uses as many connections.
import { INLINE_MAIL_CONNECTIONS } from '../src/workers/index.js';
import { withTimeout } from './lib/util.js';


const quick = process.argv.includes('--quick');
/** `--only=e2e,recalc`: run only these scenarios (intake, e2e, smtp, stream, cascade, recalc, memory), e.g. while profiling one. */
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length).split(',').filter(Boolean) ?? null;
const sizes = quick ? quickSizes : fullSizes;
const pgBase = (process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432').replace(/\/+$/, '');
const redisUrl = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379/0';
const concurrency = Number(process.env.WORKER_CONCURRENCY ?? '16');
const runId = `${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
const dbName = `pap_bench_${runId}`;
const dbUrl = `${pgBase}/${dbName}`;
const prefix = `papbench_${runId}`;
const token = `bench-${randomBytes(18).toString('base64url')}`;
const t0 = performance.now();
const log = (msg: string) => process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);

function gitCommit(): string | null {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

const results: Results = {
  meta: {
    startedAt: new Date().toISOString(),
    quick,
    only,
    node: process.version,
    cores: availableParallelism(),
    concurrency,
    gitCommit: gitCommit(),
    database: dbName,
    queuePrefix: prefix,
    sizes,
  },
  errors: [],
};

// ---- resources, released by cleanup() whatever happens -------------------------------------
let app: RunningApp | null = null;
let pool: pg.Pool | null = null;
let redis: Redis | null = null;
let smtp: SmtpSink | null = null;
let dbCreated = false;
let cleaning: Promise<void> | null = null;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    const step = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await withTimeout(what, fn(), 20_000);
      } catch (err) {
        log(`cleanup: ${what} failed: ${(err as Error).message}`);
      }
    };
    await step('stop children', () => stopAllChildren());
    if (app) await step('close the API', () => app!.close());
    if (pool) await step('close the Postgres pool', () => pool!.end());
    if (smtp) await step('close the SMTP sink', () => smtp!.close());
    if (redis) {
      await step('delete the Redis keys', () => deleteKeys(redis!, `${prefix}:*`));
      redis.disconnect();
    }
    if (dbCreated) await step('drop the database', () => dropDatabase(dbUrl));
  })();
  return cleaning;
}

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) {
      killAllChildrenSync();
      process.exit(130);
    }
    interrupted = true;
    log(`${sig}: stopping and cleaning up (again to force)`);
    void cleanup().finally(() => process.exit(130));
  });
}
process.on('exit', () => killAllChildrenSync());

async function scenario(name: string, fn: () => Promise<void>): Promise<void> {
  if (interrupted) return;
  if (only && !only.includes(name.replace(/-.*$/, ''))) return;
  const started = performance.now();
  log(`${name} ...`);
  try {
    await fn();
    log(`${name} done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } catch (err) {
    if (interrupted) return;
    const message = (err as Error).stack ?? String(err);
    results.errors.push({ scenario: name, message: (err as Error).message ?? String(err) });
    log(`${name} FAILED: ${message}`);
  }
}

async function main(): Promise<number> {
  smtp = await startSmtpSink();
  const env: Record<string, string> = {
    NODE_ENV: 'production',
    DATABASE_URL: dbUrl,
    REDIS_URL: redisUrl,
    QUEUE_PREFIX: prefix,
    SMTP_URL: smtp.url,
    MAIL_FROM: 'Partner Program <no-reply@bench.test>',
    PORT: '0',
    HOST: '127.0.0.1',
    PUBLIC_URL: 'http://bench.test',
    API_TOKENS: JSON.stringify([{ token, name: 'bench', partners: '*', scopes: ['admin'] }]),
    // The grant links' key and the webhook secrets' key (required in production): one per run, shared by the API and the workers.
    GRANT_LINK_SECRET: randomBytes(32).toString('base64url'),
    WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64url'),
    LOG_LEVEL: 'warn',
    RECONCILE_GRACE_MS: '600000',
    WORKER_CONCURRENCY: String(concurrency),
    SHUTDOWN_TIMEOUT_MS: '5000',
    // The API's per-token rate limit would cap the intake figure; the bench measures the service behind it.
    RATE_LIMIT_PER_MINUTE: '0',
  };
  log(`database ${dbName}, queue prefix ${prefix}, ${quick ? 'quick' : 'full'} run`);
  const config = loadConfig({ ...env, ROLES: 'api', MIGRATE_ON_START: 'true' });
  dbCreated = true; // startApp creates it; dropping a missing database is harmless
  app = await startApp(config, { logger: createLogger('error') });
  if (!app.url) throw new Error('the API did not report its URL');
  pool = new pg.Pool({ connectionString: dbUrl, max: 6 });
  redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const b: Bench = {
    quick,
    sizes,
    env,
    dbUrl,
    dbName,
    redisUrl,
    prefix,
    token,
    concurrency,
    cores: availableParallelism(),
    app,
    baseUrl: app.url.replace('0.0.0.0', '127.0.0.1'),
    pool,
    redis,
    smtp,
    workers: [],
    log,
  };

  await scenario('intake', async () => {
    results.intake = await intake(b);
  });
  await scenario('e2e-baseline', async () => {
    results.e2eBaseline = await endToEndBaseline(b);
  });
  await scenario('e2e-1', async () => {
    await startWorkers(b, 1);
    results.e2e1 = await endToEnd(b, 'ea');
  });
  await scenario('e2e-2', async () => {
    await startWorkers(b, 2);
    results.e2e2 = await endToEnd(b, 'eb');
  });
  await scenario('smtp-ceiling', async () => {
    await stopWorkers(b, 0);
    const e2e = results.e2e1?.value;
    results.smtpCeiling = await smtpCeiling(b, e2e?.emails ?? sizes.e2e.partners * sizes.e2e.clientsPerPartner, INLINE_MAIL_CONNECTIONS);
  });
  await scenario('stream-1', async () => {
    results.stream1 = await stream(b, 'sa', 1);
  });
  await scenario('stream-100', async () => {
    results.stream100 = await stream(b, 'sb', sizes.stream.spreadPartners);
  });
  await scenario('cascade', async () => {
    await stopWorkers(b, 1);
    await startWorkers(b, 1);
    results.cascade = await cascade(b);
  });
  await scenario('cascade-baseline', async () => {
    await startWorkers(b, 1);
    results.cascadeBaseline = await cascadeBaseline(b);
  });
  await scenario('recalc', async () => {
    await startWorkers(b, 1);
    log('seeding partners, clients and sales ...');
    const seeded = await seedRecalc(b);
    results.recalcBaseline = await recalculationBaseline(b);
    results.recalc = await recalculation(b, seeded);
  });
  await scenario('memory', async () => {
    await stopWorkers(b, 1);
    await startWorkers(b, 1);
    results.memory = await memory(b);
  });
  return results.errors.length ? 1 : 0;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  results.errors.push({ scenario: 'setup', message: (err as Error).message });
  log(`setup FAILED: ${(err as Error).stack ?? String(err)}`);
  code = 1;
}
if (interrupted) {
  await cleanup();
  process.exit(130);
}
log('cleaning up ...');
await cleanup();

results.meta.finishedAt = new Date().toISOString();
results.meta.totalS = (performance.now() - t0) / 1000;
results.rows = buildRows(results);
const dir = fileURLToPath(new URL('./results/', import.meta.url));
mkdirSync(dir, { recursive: true });
const json = JSON.stringify(results, null, 2);
const file = `${dir}${results.meta.startedAt.replace(/[:.]/g, '-')}${quick ? '-quick' : ''}.json`;
writeFileSync(file, json);
writeFileSync(`${dir}latest.json`, json);
process.stdout.write(`\n${render(results)}\n\nJSON: ${file}\n`);
// Everything is closed: the process ends by itself. The guard only reports a leaked handle.
process.exitCode = code;
setTimeout(() => {
  log('an open handle kept the process alive 10 s after cleanup; exiting');
  process.exit(code);
}, 10_000).unref();
