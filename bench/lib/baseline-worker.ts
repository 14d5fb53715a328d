/**
 * The end-to-end baseline, run as its own process like a service worker: a bare BullMQ worker that
 * does one Postgres transaction per job (insert the processed job id + one effect row), at the
 * same concurrency. Env: BENCH_DATABASE_URL, REDIS_URL, QUEUE_PREFIX, BENCH_QUEUE, WORKER_CONCURRENCY.
 * Prints BASELINE_READY when consuming; exits on SIGTERM.
 */
import { Worker } from 'bullmq';
import pg from 'pg';
import { workerConnection } from '../../src/jobs/queues.js';

const need = (k: string) => {
  const v = process.env[k];
  if (!v) throw new Error(`baseline worker: ${k} is not set`);
  return v;
};

const pool = new pg.Pool({ connectionString: need('BENCH_DATABASE_URL'), max: 20 });
const concurrency = Number(process.env.WORKER_CONCURRENCY ?? '16');

const worker = new Worker(
  need('BENCH_QUEUE'),
  async (job) => {
    const c = await pool.connect();
    try {
      await c.query('begin');
      await c.query('insert into bench_processed (job_id) values ($1) on conflict do nothing', [job.id]);
      await c.query('insert into bench_effect (job_id, payload) values ($1, $2::jsonb)', [job.id, JSON.stringify(job.data)]);
      await c.query('commit');
    } catch (err) {
      await c.query('rollback').catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  },
  { connection: workerConnection(need('REDIS_URL')), prefix: need('QUEUE_PREFIX'), concurrency },
);
worker.on('error', (err) => console.error('baseline worker error', err.message));
await worker.waitUntilReady();
console.log('BASELINE_READY');

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  const hard = setTimeout(() => process.exit(1), 10_000);
  hard.unref();
  void worker
    .close()
    .then(() => pool.end())
    .then(() => process.exit(0), () => process.exit(1));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
