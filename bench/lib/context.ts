import type pg from 'pg';
import type { Redis } from 'ioredis';
import type { RunningApp } from '../../src/app.js';
import type { Child } from './children.js';
import type { SmtpSink } from './smtp-sink.js';

/** Sizes of one run; `--quick` shrinks every scenario. */
export interface Sizes {
  e2e: { partners: number; clientsPerPartner: number; timeoutS: number };
  /**
   * `connections`: the single endpoint is measured at each of these concurrencies (its capacity is
   * the best of them, see bench/README.md); the :batch endpoint at the first.
   */
  intake: { durationS: number; batchSize: number; connections: number[] };
  cascade: { accesses: number; timeoutS: number; baselineCapS: number };
  recalc: { partners: number; clientsPerPartner: number; salesPerPartner: number; timeoutS: number };
  memory: { warmupJobs: number; jobs: number; timeoutS: number };
  /**
   * One partner's (or 100 partners') stream of single-pair `access.assign` commands, posted one
   * request each while no worker runs, then applied by one worker process. `capS`: the wait is
   * capped and the rate extrapolated beyond it.
   */
  stream: { commands: number; spreadPartners: number; postConnections: number; timeoutS: number; capS: number };
}

export const fullSizes: Sizes = {
  e2e: { partners: 20, clientsPerPartner: 1000, timeoutS: 480 },
  intake: { durationS: 5, batchSize: 100, connections: [32, 128, 512] },
  cascade: { accesses: 10_000, timeoutS: 120, baselineCapS: 90 },
  recalc: { partners: 1000, clientsPerPartner: 100, salesPerPartner: 300, timeoutS: 480 },
  memory: { warmupJobs: 6000, jobs: 100_000, timeoutS: 600 },
  stream: { commands: 10_000, spreadPartners: 100, postConnections: 16, timeoutS: 300, capS: 60 },
};

export const quickSizes: Sizes = {
  e2e: { partners: 4, clientsPerPartner: 250, timeoutS: 90 },
  intake: { durationS: 2, batchSize: 100, connections: [32, 256] },
  cascade: { accesses: 1000, timeoutS: 30, baselineCapS: 5 },
  recalc: { partners: 50, clientsPerPartner: 100, salesPerPartner: 300, timeoutS: 60 },
  memory: { warmupJobs: 1000, jobs: 5000, timeoutS: 90 },
  stream: { commands: 1000, spreadPartners: 20, postConnections: 16, timeoutS: 90, capS: 20 },
};

export interface Bench {
  quick: boolean;
  sizes: Sizes;
  /** The service environment (shared by the in-process API and the worker children). */
  env: Record<string, string>;
  dbUrl: string;
  dbName: string;
  redisUrl: string;
  prefix: string;
  token: string;
  concurrency: number;
  cores: number;
  app: RunningApp;
  baseUrl: string;
  /** The bench's own Postgres pool (seeding, polling, sampling). */
  pool: pg.Pool;
  /** The bench's own Redis connection (INFO, key scans, the baseline producer). */
  redis: Redis;
  smtp: SmtpSink;
  /** Worker children currently running. */
  workers: Child[];
  log(msg: string): void;
}
