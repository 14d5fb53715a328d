import { parseArgs } from 'node:util';
import { loadConfig } from '../../config/index.js';
import { getCommandStatus } from '../commands/log.js';
import { openOrm } from '../db/orm.js';
import { errorCode } from '../metrics.js';
import { createQueues, QUEUES, type QueueName } from '../queues/index.js';
import { reconcileOnce } from '../workers/reconciler.js';
import { createLogger } from '../app.js';

const usage = `npm run ops -- <command> [options]

  failed [--queue Q] [--code CODE] [--limit N]   list failed jobs (queue, id, code, reason)
  retry  [--queue Q] [--code CODE] [--limit N]   retry failed jobs (e.g. --code EMAIL_LINKED_TO_OTHER_PARTNER)
  reenqueue                                       re-enqueue unfinished commands, pairs and emails whose job Redis lost
  history <commandId>                             a command's status, items and audit fields from the command log

Queues: ${Object.values(QUEUES).join(', ')}.`;

/** The operators' CLI: chase failed jobs by code, retry them, repair lost jobs, read a command's history. */
async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({ args: argv, allowPositionals: true, options: { queue: { type: 'string' }, code: { type: 'string' }, limit: { type: 'string', default: '1000' }, help: { type: 'boolean', short: 'h' } } });
  const [cmd, arg] = positionals;
  if (!cmd || values.help) {
    console.log(usage);
    return cmd ? 0 : 2;
  }
  const config = loadConfig(process.env);
  const logger = createLogger('warn');
  const orm = await openOrm(config.databaseUrl, { migrate: false, poolMax: 2 });
  const queues = await createQueues(config.redisUrl, config.queuePrefix);
  try {
    const limit = Math.max(1, Math.min(100_000, Number(values.limit) || 1000));
    const selected = queues.all().filter((q) => !values.queue || q.name === (values.queue as QueueName));
    if (cmd === 'failed' || cmd === 'retry') {
      let n = 0;
      for (const q of selected) {
        for (let start = 0; n < limit; start += 500) {
          const jobs = await q.getFailed(start, start + 499);
          if (!jobs.length) break;
          for (const job of jobs) {
            const code = errorCode(new Error(job.failedReason ?? ''));
            if (values.code && code !== values.code) continue;
            if (cmd === 'retry') await job.retry('failed');
            console.log([q.name, job.id, code, job.failedReason ?? '', cmd === 'retry' ? 'retried' : ''].filter(Boolean).join('\t'));
            if (++n >= limit) break;
          }
          if (jobs.length < 500) break;
        }
      }
      console.log(`${n} job(s) ${cmd === 'retry' ? 'retried' : 'failed'}`);
      return 0;
    }
    if (cmd === 'reenqueue') {
      const r = await reconcileOnce({ config: { ...config, reconcileGraceMs: 0 }, orm, queues, logger }, limit);
      console.log(`re-enqueued: ${r.commands} command(s), ${r.pairs} pair(s), ${r.mail} email(s)`);
      return 0;
    }
    if (cmd === 'history' && arg) {
      const status = await getCommandStatus(orm.em.fork(), arg);
      if (!status) {
        console.error(`no command ${arg}`);
        return 1;
      }
      const [audit] = await orm.em.fork().execute<{ token_name: string | null; payload: unknown; started_at: string | null }[]>('select token_name, payload, started_at from command where id = ?', [arg]);
      console.log(JSON.stringify({ ...status, who: audit?.token_name ?? null, startedAt: audit?.started_at ?? null, command: audit?.payload }, null, 2));
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
