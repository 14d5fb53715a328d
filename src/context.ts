import type { Logger } from 'pino';
import type { Config } from '../config/index.js';
import type { Orm } from './db/orm.js';
import type { Queues } from './jobs/queues.js';
import type { Metrics } from './metrics.js';

/** What every role gets from the composition root (src/main.ts). */
export interface AppContext {
  config: Config;
  orm: Orm;
  queues: Queues;
  logger: Logger;
  metrics: Metrics;
  /** The clock; tests and benchmarks may pin it. */
  now: () => Date;
}
