import { parseArgs } from 'node:util';
import { Cluster, type Redis } from 'ioredis';
import { loadConfig } from '../../config/index.js';
import { getCommandStatus } from '../commands/log.js';
import { openOrm } from '../db/orm.js';
import { findCommand } from '../db/command-log.js';
import { failureCode } from '../lib/failure-code.js';
import { createQueues, producerConnection, queuePrefix, QUEUES, type QueueName, type RedisTarget } from '../jobs/queues.js';
import { reconcileOnce } from '../workers/reconciler.js';
import { createLogger } from '../app.js';

const usage = `npm run ops -- <command> [options]

  failed [--queue Q] [--code CODE] [--limit N]   list failed jobs (queue, id, code, reason)
  retry  [--queue Q] [--code CODE] [--limit N]   retry failed jobs (e.g. --code EMAIL_LINKED_TO_OTHER_PARTNER)
  reenqueue                                       re-enqueue unfinished commands, pairs and emails whose job Redis lost
  history <commandId>                             a command's status, items and audit fields from the command log

  --json    one JSON document on stdout instead of lines

Which Redis, queue prefix and Postgres: the service's own variables (REDIS_URL, REDIS_CLUSTER,
QUEUE_PREFIX, DATABASE_URL), read from this shell's environment exactly as the service reads them;
the CLI prints them (to stderr) before anything else. It refuses to go on (exit 2) when no queue of
the service exists under that prefix on that Redis (the service writes <prefix>:<queue>:meta when
it starts; {<prefix>-<queue>}:<queue>:meta on a Redis Cluster), and lists the prefixes it does find
there instead of picking one.

Queues: ${Object.values(QUEUES).join(', ')}.`;

/** A URL as shown to the operator: the password masked. */
const shown = (url: string) => {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
};

/**
 * Whether the service's queues live under `prefix` on this Redis: their BullMQ meta (or id) keys.
 * When they do not, the prefixes that do hold a `commands` queue there (a bounded SCAN), so the
 * operator can set QUEUE_PREFIX; the CLI never picks one itself. Read-only.
 */
async function findQueues(target: RedisTarget, prefix: string): Promise<{ present: boolean; others: string[] }> {
  const redis = producerConnection(target);
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    const keys = Object.values(QUEUES).flatMap((q) => [`${queuePrefix(prefix, q, target.cluster)}:${q}:meta`, `${queuePrefix(prefix, q, target.cluster)}:${q}:id`]);
    // One key at a time: on a cluster they live in different slots.
    const found = await Promise.all(keys.map((k) => redis.exists(k)));
    if (found.some((n) => n > 0)) return { present: true, others: [] };
    const suffix = `:${QUEUES.commands}:meta`;
    // The QUEUE_PREFIX a commands queue's key belongs to (on a cluster: `{<prefix>-commands}`).
    const prefixOfKey = (k: string) => {
      const p = k.slice(0, -suffix.length);
      return target.cluster ? p.replace(/^\{(.*)-commands\}$/, '$1') : p;
    };
    const others = new Set<string>();
    for (const node of redis instanceof Cluster ? redis.nodes('master') : [redis as Redis]) {
      let cursor = '0';
      for (let round = 0; round < 200; round++) {
        const [next, keysFound] = await node.scan(cursor, 'MATCH', `*${suffix}`, 'COUNT', 1000);
        for (const k of keysFound) others.add(prefixOfKey(k));
        cursor = next;
        if (cursor === '0' || others.size > 50) break;
      }
    }
    const sorted = [...others].sort();
    return { present: false, others: sorted.length > 50 ? [...sorted.slice(0, 50), '(and more)'] : sorted };
  } finally {
    redis.disconnect();
  }
}

/** The operators' CLI: chase failed jobs by code, retry them, repair lost jobs, read a command's history. */
async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({ args: argv, allowPositionals: true, options: { queue: { type: 'string' }, code: { type: 'string' }, limit: { type: 'string', default: '1000' }, json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h' } } });
  const [cmd, arg] = positionals;
  if (!cmd || values.help) {
    console.log(usage);
    return cmd ? 0 : 2;
  }
  const env = process.env;
  const config = loadConfig(env);
  const from = (key: string) => (env[key] ? key : `default, ${key} not set`);
  const target = { redis: shown(config.redisUrl), queuePrefix: config.queuePrefix, postgres: shown(config.databaseUrl) };
  const redisTarget = { url: config.redisUrl, cluster: config.redisCluster };
  console.error(`ops: Redis ${target.redis}${config.redisCluster ? ' (a node of a Redis Cluster)' : ''} (${from('REDIS_URL')}), queue prefix "${target.queuePrefix}" (${from('QUEUE_PREFIX')}), Postgres ${target.postgres} (${from('DATABASE_URL')})`);
  if (cmd !== 'history') {
    const found = await findQueues(redisTarget, config.queuePrefix).catch((err: Error) => {
      console.error(`ops: Redis at ${target.redis} does not answer (${err.message}).`);
      return null;
    });
    if (!found) return 3;
    if (!found.present) {
      console.error(`ops: no queue of the service under prefix "${config.queuePrefix}" on ${target.redis}; ` +
        (found.others.length ? `queue prefixes found there: ${found.others.join(', ')}. ` : 'no queue prefix of this service was found on that Redis database. ') +
        'Set QUEUE_PREFIX and REDIS_URL to the values the service runs with; the CLI does not guess.');
      return 2;
    }
  }
  const logger = createLogger('warn');
  const orm = await openOrm(config.databaseUrl, { migrate: false, poolMax: 2 });
  const queues = await createQueues(redisTarget, config.queuePrefix);
  try {
    const limit = Math.max(1, Math.min(100_000, Number(values.limit) || 1000));
    const selected = queues.all().filter((q) => !values.queue || q.name === (values.queue as QueueName));
    if (cmd === 'failed' || cmd === 'retry') {
      const rows: { queue: string; jobId: string | undefined; code: string; reason: string; retried: boolean }[] = [];
      let n = 0;
      for (const q of selected) {
        for (let start = 0; n < limit; start += 500) {
          const jobs = await q.getFailed(start, start + 499);
          if (!jobs.length) break;
          for (const job of jobs) {
            const code = failureCode(job.failedReason);
            if (values.code && code !== values.code) continue;
            if (cmd === 'retry') await job.retry('failed');
            rows.push({ queue: q.name, jobId: job.id, code, reason: job.failedReason ?? '', retried: cmd === 'retry' });
            if (!values.json) console.log([q.name, job.id, code, job.failedReason ?? '', cmd === 'retry' ? 'retried' : ''].filter(Boolean).join('\t'));
            if (++n >= limit) break;
          }
          if (jobs.length < 500) break;
        }
      }
      if (values.json) console.log(JSON.stringify({ ...target, jobs: rows, count: n }));
      else console.log(`${n} job(s) ${cmd === 'retry' ? 'retried' : 'failed'}`);
      return 0;
    }
    if (cmd === 'reenqueue') {
      const r = await reconcileOnce({ config: { ...config, reconcileGraceMs: 0 }, orm, queues, logger }, limit);
      if (values.json) console.log(JSON.stringify({ ...target, reenqueued: r }));
      else console.log(`re-enqueued: ${r.commands} command(s), ${r.pairs} pair(s), ${r.mail} email(s)`);
      return 0;
    }
    if (cmd === 'history' && arg) {
      const status = await getCommandStatus(orm.em.fork(), arg);
      if (!status) {
        console.error(`no command ${arg}`);
        return 1;
      }
      const audit = await findCommand(orm.em.fork(), arg);
      console.log(JSON.stringify({ ...status, who: audit?.tokenName ?? null, startedAt: audit?.startedAt ?? null, command: audit?.payload }, null, 2));
      return 0;
    }
    console.error(usage);
    return 2;
  } finally {
    await queues.close();
    await orm.close();
  }
}

process.exitCode = await main(process.argv.slice(2));
