import type { Bench } from './context.js';
import { spawnCeiling } from './children.js';
import { postCommand } from './io.js';
import { assertWorkersAlive, clearQueues, measured, seedE2e, startWorkers, stopWorkers, workerPids, type Measured } from './scenarios.js';
import { pollUntil, seconds, sleep } from './util.js';

// ---------------------------------------------------------------------------------------------
// Streams: single-pair access.assign commands, one HTTP request each, applied by one worker
// ---------------------------------------------------------------------------------------------

export interface StreamResult {
  partners: number;
  commands: number;
  /** Posting them, one request each (no worker running). */
  postS: number;
  postPerS: number;
  /** From the first command the worker started to the last command settled and the last email sent (Postgres clock). */
  seconds: number;
  perS: number;
  /** From the worker's spawn (includes its boot, ~2–4 s of loading TypeScript) to the end. */
  fromSpawnS: number;
  /** When the last command was settled, from the first start (the emails may finish later). */
  appliedS: number;
  completed: number;
  emails: number;
  /** True when the wait was capped and `seconds` extrapolates the observed rate to all commands. */
  extrapolated: boolean;
  observedS: number;
}

/** Posts every command one request each, `connections` requests in flight. */
async function postEach(b: Bench, commands: { partnerId: string; command: unknown }[], connections: number): Promise<string[]> {
  const ids: string[] = new Array(commands.length);
  let next = 0;
  await Promise.all(Array.from({ length: connections }, async () => {
    while (next < commands.length) {
      const i = next++;
      const c = commands[i]!;
      ids[i] = (await postCommand(b, c.partnerId, c.command)).commandId;
    }
  }));
  return ids;
}

/**
 * `stream-1` (partners = 1) and `stream-100`: N single-pair `access.assign` commands (all pending,
 * one email each) posted one request each with no worker running, then one worker process is
 * started; measured until every command is settled and every email sent. Commands alternate over
 * the partners (command i goes to partner i mod P), as concurrent upstreams would send them.
 */
export async function stream(b: Bench, tag: string, partners: number): Promise<Measured<StreamResult>> {
  const { commands: n, postConnections, timeoutS, capS } = b.sizes.stream;
  const perPartner = Math.ceil(n / partners);
  await seedE2e(b, tag, partners, perPartner);
  const partnerIds = Array.from({ length: partners }, (_, p) => `${tag}-p${p + 1}`);
  await stopWorkers(b, 0);
  const list = Array.from({ length: n }, (_, i) => {
    const p = (i % partners) + 1;
    const c = Math.floor(i / partners) + 1;
    return { partnerId: `${tag}-p${p}`, command: { type: 'access.assign', clientHubIds: [`${tag}-${p}-${c}`], employeeEmails: [`emp-${p}@${tag}.bench.test`] } };
  });
  const tp = performance.now();
  await postEach(b, list, postConnections);
  const postS = seconds(tp);
  b.log(`${tag}: ${n} commands posted in ${postS.toFixed(1)} s; starting one worker process`);
  const spawnedAt = Date.now();
  await startWorkers(b, 1);
  let done = 0;
  let sent = 0;
  const result = await measured(b, workerPids(b), async () => {
    const deadline = performance.now() + capS * 1000;
    const tw = performance.now();
    await pollUntil(
      `${n} stream commands settled with their emails sent`,
      async () => {
        assertWorkersAlive(b);
        // Cheap while it runs (the poll shares the machine): what is still open, through the partial
        // indexes of unfinished commands and pending emails. The emails are written with their
        // commands, so nothing open and nothing pending means all done.
        const r = await b.pool.query<{ open: string; unsent: string }>(
          `select (select count(*) from command where partner_id = any($1::text[]) and state in ('waiting', 'active')) as open,
                  (select count(*) from outbox where state = 'pending' and partner_id = any($1::text[])) as unsent`,
          [partnerIds],
        );
        const open = Number(r.rows[0]?.open ?? n);
        const unsent = Number(r.rows[0]?.unsent ?? 0);
        done = n - open;
        const finished = open === 0 && unsent === 0;
        if (finished || performance.now() > deadline) {
          const t = await b.pool.query<{ failed: string; sent: string }>(
            `select (select count(*) from command where partner_id = any($1::text[]) and state = 'failed') as failed,
                    (select count(*) from outbox where partner_id = any($1::text[]) and state = 'sent') as sent`,
            [partnerIds],
          );
          sent = Number(t.rows[0]?.sent ?? 0);
          if (Number(t.rows[0]?.failed ?? 0) > 0) {
            const e = await b.pool.query(`select error from command where partner_id = any($1::text[]) and state = 'failed' limit 1`, [partnerIds]);
            throw new Error(`${tag}: ${t.rows[0]?.failed} commands failed, e.g. ${JSON.stringify(e.rows[0])}`);
          }
          if (finished && sent < n) throw new Error(`${tag}: every command settled but ${sent} emails were sent for ${n} commands`);
          return true;
        }
        return undefined;
      },
      { timeoutMs: timeoutS * 1000, intervalMs: 250, describe: () => `${done}/${n} settled` },
    );
    const fromSpawnS = (Date.now() - spawnedAt) / 1000;
    const observedS = seconds(tw);
    // Postgres' clock: from the first command started to the last settled / the last email sent.
    const t = await b.pool.query<{ first: number; applied: number; mailed: number | null }>(
      `select extract(epoch from min(started_at))::float8 as first, extract(epoch from max(finished_at))::float8 as applied,
              (select extract(epoch from max(sent_at))::float8 from outbox where partner_id = any($1::text[])) as mailed
         from command where partner_id = any($1::text[])`,
      [partnerIds],
    );
    const row = t.rows[0]!;
    const base = { partners, commands: n, postS, postPerS: n / postS, completed: done, emails: sent, observedS };
    if (done >= n && sent >= n) {
      const s = Math.max(row.applied, row.mailed ?? 0) - row.first;
      return { ...base, seconds: s, perS: n / s, fromSpawnS, appliedS: row.applied - row.first, extrapolated: false };
    }
    // Capped: extrapolate the observed rate (emails sent, the slower of the two) to all n.
    const progress = Math.min(done, sent);
    const est = progress > 0 ? (observedS * n) / progress : Number.POSITIVE_INFINITY;
    return { ...base, seconds: est, perS: n / est, fromSpawnS: Number.NaN, appliedS: Number.NaN, extrapolated: true };
  });
  // Not measured: the jobs of commands a run settled still finish, at once, and jobs that waited
  // for their turn as delayed jobs too; let them (bounded), so that they do not run during the next
  // scenario (they did: the cascade after the streams measured 0.33 s instead of 0.13 s).
  if (!result.value.extrapolated) {
    const left = await b.app.ctx.queues.commands.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
    b.log(`${tag}: command jobs left after the measurement: ${JSON.stringify(left)}`);
    await pollUntil('the command jobs to finish', async () => {
      const c = await b.app.ctx.queues.commands.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
      return Object.values(c).every((v) => v === 0) ? true : undefined;
    }, { timeoutMs: 60_000, intervalMs: 200 }).catch((err: unknown) => b.log(`${tag}: ${(err as Error).message}; going on`));
  }
  if (result.value.extrapolated) {
    b.log(`${tag}: capped after ${capS} s (${done}/${n} settled, ${sent} emails); clearing its backlog`);
    await clearQueues(b, ['commands', 'pairs', 'mail']);
    await b.pool.query(`delete from outbox where partner_id = any($1::text[])`, [partnerIds]);
    await b.pool.query(`delete from command where partner_id = any($1::text[])`, [partnerIds]);
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// The bare SMTP ceiling: the same number of emails through a nodemailer pool, no queue, no DB
// ---------------------------------------------------------------------------------------------

export interface CeilingResult {
  messages: number;
  seconds: number;
  perS: number;
  connections: number;
}

/** Sends `messages` request emails from a child process through a pool of `connections` to the bench's SMTP sink. */
export async function smtpCeiling(b: Bench, messages: number, connections: number): Promise<Measured<CeilingResult>> {
  const before = b.smtp.count();
  const child = await spawnCeiling({ SMTP_URL: b.smtp.url, MAIL_FROM: b.env.MAIL_FROM ?? '', BENCH_MESSAGES: String(messages), BENCH_CONNECTIONS: String(connections) });
  try {
    return await measured(b, () => [child.pid], async () => {
      const line = await pollUntil('the SMTP ceiling sender to finish', async () => {
        if (!child.alive() && !/CEILING_RESULT/.test(child.tail())) throw new Error(`the SMTP ceiling sender died:\n${child.tail()}`);
        return child.tail().split('\n').find((l) => l.startsWith('CEILING_RESULT '));
      }, { timeoutMs: 300_000, intervalMs: 20 });
      const r = JSON.parse(line.slice('CEILING_RESULT '.length)) as { messages: number; seconds: number };
      await sleep(100);
      if (b.smtp.count() - before < messages) throw new Error(`the SMTP sink got ${b.smtp.count() - before} of ${messages} ceiling messages`);
      return { messages: r.messages, seconds: r.seconds, perS: r.messages / r.seconds, connections };
    });
  } finally {
    await child.stop();
  }
}
