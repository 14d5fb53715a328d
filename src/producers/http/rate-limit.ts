import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import type { Queues } from '../../jobs/queues.js';

/**
 * The store of the API rate limit (`@fastify/rate-limit`): one counter per key and window in Redis,
 * under QUEUE_PREFIX, so every API process counts the same requests (contract: the limit is shared
 * by all API processes). A fixed window: the first request of a window sets its expiry.
 *
 * Redis trouble barely holds a request: while the intake's gate is shut (an add failed and Redis
 * has not answered since) or the connection is not ready, the count is skipped at once, and a count
 * that takes longer than {@link COUNT_TIMEOUT_MS} is given up. The plugin's `skipOnError` lets such
 * a request through uncounted (the limit protects the service; it never refuses for Redis' sake).
 */

/**
 * How long a request waits for its count before it goes on uncounted: far above a healthy Redis'
 * answer, and small beside the intake's own Redis timeout (a POST during a Redis stall still
 * answers 503 within 2 s).
 */
export const COUNT_TIMEOUT_MS = 100;

const COUNT = `local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) ttl = tonumber(ARGV[1]) end
return {n, ttl}`;

/** The store class for the plugin's `store` option, counting in `queues`' Redis. */
export function sharedRateLimitStore(queues: Pick<Queues, 'connection' | 'prefix' | 'gate'>): FastifyRateLimitStoreCtor {
  const base = `${queues.prefix}:rate-limit:`;
  return class SharedRateLimitStore implements FastifyRateLimitStore {
    private readonly namespace: string;

    /** The plugin passes its options; a child store passes its own namespace. */
    constructor(namespace?: unknown) {
      this.namespace = typeof namespace === 'string' ? namespace : base;
    }

    incr(key: string, callback: (error: Error | null, result?: { current: number; ttl: number }) => void, timeWindow: number): void {
      if (queues.gate.shut || queues.connection.status !== 'ready') {
        callback(new Error('Redis is not answering: the request is not counted'));
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`Redis did not count the request within ${COUNT_TIMEOUT_MS} ms`)), COUNT_TIMEOUT_MS);
      });
      const count = queues.connection.eval(COUNT, 1, `${this.namespace}${key}`, String(Math.max(1, Math.round(timeWindow)))) as Promise<[number, number]>;
      Promise.race([count, late]).finally(() => clearTimeout(timer)).then(
        ([current, ttl]) => callback(null, { current: Number(current), ttl: Number(ttl) }),
        (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))),
      );
      count.catch(() => undefined);
    }

    child(routeOptions: { method: string | string[]; url: string }): FastifyRateLimitStore {
      return new SharedRateLimitStore(`${this.namespace}${String(routeOptions.method)}${routeOptions.url}-`);
    }
  };
}
