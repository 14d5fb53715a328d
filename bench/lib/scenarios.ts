import autocannon from 'autocannon';
import { Queue } from 'bullmq';
import Cursor from 'pg-cursor';
import type { Bench } from './context.js';
import { spawnBaseline, spawnWorker, type Child, type MemReport } from './children.js';
import { jobIds } from '../../src/jobs/contracts.js';
import { deleteKeys, postBatch, postCommand, prefixMemory, usedMemory } from './io.js';
import { cpuSnapshot, cpuUsage, rssBytes, type CpuUsage } from './procstat.js';
import { startWaitSampler, type WaitProfile } from './pgwait.js';
import { pollUntil, seconds, sleep } from './util.js';

// ---------------------------------------------------------------------------------------------
// Measurement plumbing
// ---------------------------------------------------------------------------------------------

export interface Measured<T> {
  value: T;
  cpu: CpuUsage;
  waits: WaitProfile;
}

/** Runs `fn` between two /proc CPU snapshots while sampling Postgres wait events. */
export async function measured<T>(b: Bench, workerPids: () => number[], fn: () => Promise<T>): Promise<Measured<T>> {
  const sampler = startWaitSampler(b.pool, b.dbName);
  let waits: WaitProfile | null = null;
  try {
    const before = cpuSnapshot(workerPids());
    const value = await fn();
    const after = cpuSnapshot(workerPids());
    waits = await sampler.stop();
    return { value, cpu: cpuUsage(before, after, b.cores), waits };
  } finally {
    if (!waits) await sampler.stop();
  }
}

export const workerPids = (b: Bench) => () => b.workers.map((w) => w.pid);

export function assertWorkersAlive(b: Bench): void {
  for (const w of b.workers) {
    if (!w.alive()) throw new Error(`${w.name} (pid ${w.pid}) died during the scenario:\n${w.tail()}`);
  }
}

export async function startWorkers(b: Bench, n: number): Promise<void> {
  while (b.workers.length < n) {
    const i = b.workers.length + 1;
    b.log(`starting worker process ${i} ...`);
    b.workers.push(await spawnWorker(`worker ${i}`, b.env));
  }
}

export async function stopWorkers(b: Bench, keep: number): Promise<void> {
  while (b.workers.length > keep) await b.workers.pop()?.stop();
}

/** Pauses the queues, waits for their active jobs, obliterates them (jobs gone), resumes. */
export async function clearQueues(b: Bench, names: ('commands' | 'pairs' | 'mail' | 'credit')[]): Promise<void> {
  const queues = names.map((n) => b.app.ctx.queues[n]);
  for (const q of queues) await q.pause();
  await pollUntil('active jobs to finish before clearing the queues', async () => {
    const active = await Promise.all(queues.map((q) => q.getActiveCount()));
    return active.every((a) => a === 0) ? true : undefined;
  }, { timeoutMs: 60_000, intervalMs: 50 });
  for (const q of queues) {
    await q.obliterate({ force: true });
    await q.resume();
  }
}

const count = async (b: Bench, sql: string, params: unknown[] = []): Promise<number> => {
  const r = await b.pool.query<{ n: string }>(sql, params);
  return Number(r.rows[0]?.n ?? 0);
};

// ---------------------------------------------------------------------------------------------
// Intake: commands accepted per second with no worker running (autocannon)
// ---------------------------------------------------------------------------------------------

export interface IntakeResult {
  endpoint: 'single' | 'batch';
  commandsPerRequest: number;
  connections: number;
  durationS: number;
  requests2xx: number;
  non2xx: number;
  errors: number;
  reqPerS: number;
  commandsPerS: number;
  p50Ms: number;
  p99Ms: number;
}

async function cannon(b: Bench, endpoint: 'single' | 'batch', partnerId: string, connections: number, durationS = b.sizes.intake.durationS): Promise<IntakeResult> {
  const { batchSize } = b.sizes.intake;
  const per = endpoint === 'single' ? 1 : batchSize;
  const body =
    endpoint === 'single'
      ? JSON.stringify({ type: 'employee.tag', email: 'a@b.test' })
      : JSON.stringify({ commands: Array.from({ length: batchSize }, (_, i) => ({ type: 'employee.tag', email: `u${i}@b.test` })) });
  const path = endpoint === 'single' ? `/v1/partners/${partnerId}/commands` : `/v1/partners/${partnerId}/commands:batch`;
  const r = await autocannon({
    url: `${b.baseUrl}${path}`,
    method: 'POST',
    headers: { authorization: `Bearer ${b.token}`, 'content-type': 'application/json' },
    body,
    connections,
    duration: durationS,
    timeout: 30,
    // autocannon in its own thread: the API's event loop in this process is not shared with it.
    workers: 1,
  });
  const ok = r['2xx'];
  return {
    endpoint,
    commandsPerRequest: per,
    connections,
    durationS: r.duration,
    requests2xx: ok,
    non2xx: r.non2xx,
    errors: r.errors,
    reqPerS: ok / r.duration,
    commandsPerS: (ok * per) / r.duration,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
  };
}

export interface IntakeResults {
  /** The single endpoint at each concurrency of `sizes.intake.connections`, in that order. */
  single: Measured<IntakeResult>[];
  batch: Measured<IntakeResult>;
  accepted: number;
}

/**
 * The single endpoint's capacity: its best rate over the concurrencies measured, counting only a
 * level where every request got a 2xx. A fixed number of connections measures the round trip
 * rather than the intake once the service has time to spare (see bench/README.md).
 */
export function intakeCapacity(levels: readonly Measured<IntakeResult>[]): Measured<IntakeResult> | undefined {
  const clean = levels.filter((l) => l.value.non2xx === 0 && l.value.errors === 0);
  return clean.reduce<Measured<IntakeResult> | undefined>((best, l) => (!best || l.value.commandsPerS > best.value.commandsPerS ? l : best), undefined);
}

export async function intake(b: Bench): Promise<IntakeResults> {
  if (b.workers.length) throw new Error('intake must run with no worker process');
  const { connections } = b.sizes.intake;
  const single: Measured<IntakeResult>[] = [];
  // Not measured: the API has just started, and its first second runs at a fraction of the warm
  // rate (JIT, first connections), which only the first level would pay.
  await cannon(b, 'single', 'p-intake-warmup', connections[0]!, Math.min(2, b.sizes.intake.durationS));
  // One partner per level, so that no level's commands queue behind another's in the log.
  for (const c of connections) single.push(await measured(b, () => [], () => cannon(b, 'single', `p-intake-single-${c}`, c)));
  const batch = await measured(b, () => [], () => cannon(b, 'batch', 'p-intake-batch', connections[0]!));
  const mine = `partner_id like 'p-intake-%'`;
  const accepted = await count(b, `select count(*) as n from command where ${mine}`);
  // Clear the intake's commands before the next scenario: rows and their queued jobs. autocannon
  // stops with requests in flight, whose groups still confirm their rows (enqueued_at): a delete
  // meeting them in another row order can deadlock, so it is retried (left behind, the rows would
  // be re-enqueued by the reconciler in the middle of the next scenario).
  for (let attempt = 1; ; attempt++) {
    try {
      await b.pool.query(`delete from command where ${mine}`);
      break;
    } catch (err) {
      if ((err as { code?: string }).code !== '40P01' || attempt >= 5) throw err;
      await sleep(200 * attempt);
    }
  }
  await deleteKeys(b.redis, `${b.prefix}:commands:*`);
  return { single, batch, accepted };
}

// ---------------------------------------------------------------------------------------------
// End to end: access.assign pairs applied (pending + email sent) per second
// ---------------------------------------------------------------------------------------------

export interface E2eResult {
  processes: number;
  pairs: number;
  seconds: number;
  pairsPerS: number;
  /** When every command_item was completed (pending), from the post. */
  itemsDoneS: number;
  /** When every outbox row was sent, from the post. */
  mailDoneS: number;
  postS: number;
  emails: number;
  distinctMessageIds: number;
}

export async function seedE2e(b: Bench, tag: string, partners: number, clients: number): Promise<void> {
  await b.pool.query(`insert into partner (id, name) select $1 || '-p' || p, 'Bench partner ' || p from generate_series(1, $2::int) p`, [tag, partners]);
  await b.pool.query(
    `insert into employee (partner_id, email, name, tagged, status)
     select $1 || '-p' || p, 'emp-' || p || '@' || $1 || '.bench.test', 'Employee ' || p, true, 'active' from generate_series(1, $2::int) p`,
    [tag, partners],
  );
  await b.pool.query(
    `insert into client (partner_id, hub_id, name, status)
     select $1 || '-p' || p, $1 || '-' || p || '-' || c, 'Client ' || c, 'active'
       from generate_series(1, $2::int) p, generate_series(1, $3::int) c`,
    [tag, partners, clients],
  );
  await b.pool.query(
    `insert into client_account (hub_id, contact_email, locale, mrr)
     select $1 || '-' || p || '-' || c, 'contact-' || c || '@client-' || p || '.test', 'en', 100
       from generate_series(1, $2::int) p, generate_series(1, $3::int) c`,
    [tag, partners, clients],
  );
  await b.pool.query('analyze partner, employee, client, client_account');
}

export async function endToEnd(b: Bench, tag: string): Promise<Measured<E2eResult>> {
  const { partners, clientsPerPartner, timeoutS } = b.sizes.e2e;
  const total = partners * clientsPerPartner;
  await seedE2e(b, tag, partners, clientsPerPartner);
  const partnerIds = Array.from({ length: partners }, (_, i) => `${tag}-p${i + 1}`);
  const commands = partnerIds.map((_, i) => ({
    type: 'access.assign',
    clientHubIds: Array.from({ length: clientsPerPartner }, (_, c) => `${tag}-${i + 1}-${c + 1}`),
    employeeEmails: [`emp-${i + 1}@${tag}.bench.test`],
  }));
  const mails0 = b.smtp.count();
  const ids0 = b.smtp.distinctIds();
  return measured(b, workerPids(b), async () => {
    const t0 = performance.now();
    const accepted = await Promise.all(partnerIds.map((p, i) => postBatch(b, p, [commands[i]])));
    const postS = seconds(t0);
    const commandIds = accepted.flat().map((a) => a.commandId);
    let itemsDoneS = 0;
    let outboxRows = 0;
    let last = '';
    await pollUntil(
      `${total} pairs pending with their emails sent`,
      async () => {
        assertWorkersAlive(b);
        // Cheap while it runs (the poll shares the machine): what is still open, through the partial
        // indexes of open items and pending emails, once every command has written its items.
        const r = await b.pool.query<{ fanned: string; open: string; unsent: string }>(
          `select (select count(*) from command where id = any($1::text[]) and items_total > 0) as fanned,
                  (select count(*) from command_item where command_id = any($1::text[]) and state in ('waiting', 'active')) as open,
                  (select count(*) from outbox where state = 'pending' and partner_id = any($2::text[])) as unsent`,
          [commandIds, partnerIds],
        );
        const fanned = Number(r.rows[0]?.fanned ?? 0);
        const open = Number(r.rows[0]?.open ?? 0);
        const unsent = Number(r.rows[0]?.unsent ?? 0);
        last = `${fanned}/${commandIds.length} commands fanned out, ${open} pairs open, ${unsent} emails unsent`;
        const applied = fanned === commandIds.length && open === 0;
        if (applied && !itemsDoneS) itemsDoneS = seconds(t0);
        return applied && unsent === 0 ? true : undefined;
      },
      { timeoutMs: timeoutS * 1000, intervalMs: 100, describe: () => `${last}` },
    );
    const s = seconds(t0);
    // Every pair pending and every email sent, exactly.
    const [items, mail] = await Promise.all([
      b.pool.query<{ pending: string; failed: string }>(
        `select count(*) filter (where state = 'completed' and outcome = 'pending') as pending, count(*) filter (where state = 'failed') as failed
           from command_item where command_id = any($1::text[])`,
        [commandIds],
      ),
      b.pool.query<{ sent: string; failed: string; total: string }>(
        `select count(*) filter (where state = 'sent') as sent, count(*) filter (where state = 'failed') as failed, count(*) as total from outbox where partner_id = any($1::text[])`,
        [partnerIds],
      ),
    ]);
    const it = items.rows[0];
    const m = mail.rows[0];
    outboxRows = Number(m?.total ?? 0);
    if (Number(it?.pending ?? 0) !== total || Number(it?.failed ?? 0) > 0 || Number(m?.failed ?? 0) > 0 || Number(m?.sent ?? 0) !== outboxRows) {
      const e = await b.pool.query(`select error from command_item where command_id = any($1::text[]) and state = 'failed' limit 1`, [commandIds]);
      throw new Error(`end to end: ${it?.pending}/${total} pairs pending, ${it?.failed} failed, ${m?.sent}/${outboxRows} emails sent, ${m?.failed} failed, e.g. ${JSON.stringify(e.rows[0] ?? null)}`);
    }
    const emails = b.smtp.count() - mails0;
    const distinct = b.smtp.distinctIds() - ids0;
    // One email per command and client (each command here names one employee: one per pair).
    if (emails !== outboxRows || distinct !== outboxRows || outboxRows !== partners * clientsPerPartner) {
      throw new Error(`end to end: the SMTP sink got ${emails} messages (${distinct} distinct Message-IDs) for ${outboxRows} outbox rows and ${total} pairs; expected exactly one per command and client`);
    }
    return { processes: b.workers.length, pairs: total, seconds: s, pairsPerS: total / s, itemsDoneS, mailDoneS: s, postS, emails, distinctMessageIds: distinct };
  });
}

// ---------------------------------------------------------------------------------------------
// End-to-end baseline: a bare BullMQ worker, one Postgres transaction per job
// ---------------------------------------------------------------------------------------------

export interface BaselineResult {
  jobs: number;
  seconds: number;
  jobsPerS: number;
  concurrency: number;
}

export async function endToEndBaseline(b: Bench): Promise<Measured<BaselineResult>> {
  const { partners, clientsPerPartner, timeoutS } = b.sizes.e2e;
  const total = partners * clientsPerPartner;
  await b.pool.query(`create table if not exists bench_processed (job_id text primary key, at timestamptz not null default now())`);
  await b.pool.query(`create table if not exists bench_effect (id bigserial primary key, job_id text not null, payload jsonb not null, at timestamptz not null default now())`);
  const queueName = 'bench-baseline';
  const child: Child = await spawnBaseline({
    BENCH_DATABASE_URL: b.dbUrl,
    REDIS_URL: b.redisUrl,
    QUEUE_PREFIX: b.prefix,
    BENCH_QUEUE: queueName,
    WORKER_CONCURRENCY: String(b.concurrency),
  });
  const queue = new Queue(queueName, {
    connection: b.redis,
    prefix: b.prefix,
    defaultJobOptions: { attempts: 8, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: { count: 5000 }, removeOnFail: { count: 50_000 } },
  });
  try {
    return await measured(b, () => [child.pid], async () => {
      const t0 = performance.now();
      for (let i = 0; i < total; i += 1000) {
        const n = Math.min(1000, total - i);
        await queue.addBulk(Array.from({ length: n }, (_, k) => ({ name: 'pair', data: { commandId: 'baseline', idx: i + k }, opts: { jobId: `b.${i + k}` } })));
      }
      let last = 0;
      await pollUntil(
        `${total} baseline jobs`,
        async () => {
          if (!child.alive()) throw new Error(`baseline worker died:\n${child.tail()}`);
          last = await count(b, 'select count(*) as n from bench_processed');
          return last >= total ? true : undefined;
        },
        { timeoutMs: timeoutS * 1000, intervalMs: 100, describe: () => `${last}/${total} processed` },
      );
      const s = seconds(t0);
      return { jobs: total, seconds: s, jobsPerS: total / s, concurrency: b.concurrency };
    });
  } finally {
    await child.stop();
    await queue.close();
    await deleteKeys(b.redis, `${b.prefix}:${queueName}:*`);
  }
}

// ---------------------------------------------------------------------------------------------
// Cascade: employee.remove over N active accesses vs N single-pair access.revoke commands
// ---------------------------------------------------------------------------------------------

async function seedAccesses(b: Bench, partnerId: string, email: string, n: number): Promise<string[]> {
  await b.pool.query(`insert into partner (id, name) values ($1, 'Cascade partner')`, [partnerId]);
  await b.pool.query(`insert into employee (partner_id, email, name, tagged, status) values ($1, $2, 'Leaver', true, 'active')`, [partnerId, email]);
  await b.pool.query(
    `insert into client (partner_id, hub_id, name, status)
     select $1, $1 || '-c' || c, 'Client ' || c, 'active' from generate_series(1, $2::int) c`,
    [partnerId, n],
  );
  await b.pool.query(
    `insert into client_account (hub_id, contact_email, locale, mrr)
     select $1 || '-c' || c, 'contact-' || c || '@cascade.test', 'en', 100 from generate_series(1, $2::int) c`,
    [partnerId, n],
  );
  await b.pool.query(
    `insert into access (partner_id, hub_id, email, state) select $1, $1 || '-c' || c, $2, 'active' from generate_series(1, $3::int) c`,
    [partnerId, email, n],
  );
  await b.pool.query('analyze access, client, client_account, employee');
  return Array.from({ length: n }, (_, i) => `${partnerId}-c${i + 1}`);
}

export interface CascadeResult {
  accesses: number;
  seconds: number;
}

export interface CascadeBaselineResult {
  commands: number;
  completed: number;
  seconds: number;
  /** True when the wait was capped and `seconds` extrapolates the observed rate to all commands. */
  extrapolated: boolean;
  observedS: number;
}

export async function cascade(b: Bench): Promise<Measured<CascadeResult>> {
  const n = b.sizes.cascade.accesses;
  const partnerId = 'cas-p1';
  const email = 'leaver@cascade.test';
  await seedAccesses(b, partnerId, email, n);
  return measured(b, workerPids(b), async () => {
    const t0 = performance.now();
    const { commandId } = await postCommand(b, partnerId, { type: 'employee.remove', email });
    let last = '';
    await pollUntil(
      `employee.remove to revoke ${n} accesses`,
      async () => {
        assertWorkersAlive(b);
        const r = await b.pool.query<{ state: string; live: string }>(
          `select (select state from command where id = $1) as state,
                  (select count(*) from access where partner_id = $2 and email = $3 and state <> 'revoked') as live`,
          [commandId, partnerId, email],
        );
        const row = r.rows[0];
        last = `command ${row?.state}, ${row?.live} not revoked`;
        if (row?.state === 'failed') throw new Error(`employee.remove failed: ${last}`);
        return row?.state === 'completed' && Number(row.live) === 0 ? true : undefined;
      },
      { timeoutMs: b.sizes.cascade.timeoutS * 1000, intervalMs: 10, describe: () => last },
    );
    return { accesses: n, seconds: seconds(t0) };
  });
}

export async function cascadeBaseline(b: Bench): Promise<Measured<CascadeBaselineResult>> {
  const n = b.sizes.cascade.accesses;
  const partnerId = 'cas-p2';
  const email = 'leaver2@cascade.test';
  const hubs = await seedAccesses(b, partnerId, email, n);
  const capS = b.sizes.cascade.baselineCapS;
  const result = await measured(b, workerPids(b), async () => {
    const t0 = performance.now();
    for (let i = 0; i < n; i += 1000) {
      await postBatch(b, partnerId, hubs.slice(i, i + 1000).map((h) => ({ type: 'access.revoke', clientHubIds: [h], employeeEmails: [email] })));
    }
    let done = 0;
    const deadline = t0 + capS * 1000;
    for (;;) {
      assertWorkersAlive(b);
      done = await count(b, `select count(*) as n from command where partner_id = $1 and state in ('completed', 'failed')`, [partnerId]);
      if (done >= n || performance.now() > deadline) break;
      await sleep(100);
    }
    const observedS = seconds(t0);
    if (done >= n) return { commands: n, completed: done, seconds: observedS, extrapolated: false, observedS };
    // Capped: extrapolate the observed completion rate to all n commands.
    const est = done > 0 ? (observedS * n) / done : Number.POSITIVE_INFINITY;
    return { commands: n, completed: done, seconds: est, extrapolated: true, observedS };
  });
  if (result.value.extrapolated) {
    // Unfinished work would leak into the next scenarios: drop the backlog (queues paused meanwhile).
    b.log(`cascade baseline capped after ${capS} s (${result.value.completed}/${n} done); clearing its backlog`);
    await clearQueues(b, ['commands', 'pairs']);
    await b.pool.query(`delete from command where partner_id = $1`, [partnerId]);
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Recalculation: every partner's credit vs one streaming SELECT of the same facts
// ---------------------------------------------------------------------------------------------

export interface RecalcResult {
  partners: number;
  clients: number;
  sales: number;
  seconds: number;
}

export interface SelectResult {
  rows: number;
  seconds: number;
}

export async function seedRecalc(b: Bench): Promise<{ clients: number; sales: number }> {
  const { partners, clientsPerPartner: cpp, salesPerPartner: spp } = b.sizes.recalc;
  await b.pool.query(`insert into partner (id, name) select 'rc-p' || p, 'Recalc partner ' || p from generate_series(1, $1::int) p`, [partners]);
  await b.pool.query(
    `insert into employee (partner_id, email, name, tagged, status) select 'rc-p' || p, 'emp@rc-' || p || '.test', 'Employee', true, 'active' from generate_series(1, $1::int) p`,
    [partners],
  );
  await b.pool.query(
    `insert into client (partner_id, hub_id, name, status)
     select 'rc-p' || p, 'rc-' || p || '-' || c, 'Client ' || c, case when c % 25 = 0 then 'terminated' else 'active' end
       from generate_series(1, $1::int) p, generate_series(1, $2::int) c`,
    [partners, cpp],
  );
  await b.pool.query(
    `insert into client_account (hub_id, contact_email, locale, mrr, renewal_date)
     select 'rc-' || p || '-' || c, 'contact@rc-' || p || '.test', 'en', (c * 37) % 900 + 50, current_date + ((c * 7) % 400)
       from generate_series(1, $1::int) p, generate_series(1, $2::int) c`,
    [partners, cpp],
  );
  // Some managed clients: one tagged employee active on a fifth of them.
  await b.pool.query(
    `insert into access (partner_id, hub_id, email, state)
     select 'rc-p' || p, 'rc-' || p || '-' || c, 'emp@rc-' || p || '.test', 'active'
       from generate_series(1, $1::int) p, generate_series(1, $2::int) c where c % 5 = 0`,
    [partners, cpp],
  );
  // Sales over the last 24 months; one in ten is a downgrade.
  await b.pool.query(
    `insert into sale (partner_id, sale_id, hub_id, closed_on, mrr)
     select 'rc-p' || p, 's' || s, 'rc-' || p || '-' || (1 + (s * 7 + p) % $2::int),
            least(current_date, (date_trunc('month', current_date) - interval '23 months')::date + ((s * 37 + p) % 720)),
            case when s % 10 = 0 then -((s * 17) % 200) - 1 else (s * 31 + p) % 500 + 20 end
       from generate_series(1, $1::int) p, generate_series(1, $3::int) s`,
    [partners, cpp, spp],
  );
  await b.pool.query(
    `insert into churn (partner_id, hub_id, on_date)
     select 'rc-p' || p, 'rc-' || p || '-' || c, current_date - ((c * 11) % 300)
       from generate_series(1, $1::int) p, generate_series(1, $2::int) c where c % 50 = 0`,
    [partners, cpp],
  );
  // Vacuumed as well as analyzed: tables a long-running database holds, not a fresh bulk load that
  // autovacuum would start on (300,000 inserted sales pass its insert threshold) while the
  // recalculation or its baseline is being timed. Both read the same tables after it.
  await b.pool.query('vacuum analyze partner, employee, client, client_account, access, sale, churn');
  return { clients: partners * cpp, sales: partners * spp };
}

export async function recalculation(b: Bench, seeded: { clients: number; sales: number }): Promise<Measured<RecalcResult>> {
  const { partners, timeoutS } = b.sizes.recalc;
  return measured(b, workerPids(b), async () => {
    const start = (await b.pool.query<{ t: Date }>('select clock_timestamp() as t')).rows[0]?.t;
    const t0 = performance.now();
    await b.app.ctx.queues.credit.add('recalculate-all', {}, { jobId: `bench-recalc-${Date.now()}` });
    let last = 0;
    await pollUntil(
      `${partners} partners recalculated`,
      async () => {
        assertWorkersAlive(b);
        last = await count(b, `select count(*) as n from credit_snapshot where partner_id like 'rc-p%' and calculated_at >= $1`, [start]);
        return last >= partners ? true : undefined;
      },
      // Polled every 20 ms (a count over the snapshot table, well under a millisecond): at 100 ms the
      // poll alone added up to 0.1 s (0.05 s on average) to a run of about a second.
      { timeoutMs: timeoutS * 1000, intervalMs: 20, describe: () => `${last}/${partners} recalculated` },
    );
    return { partners, clients: seeded.clients, sales: seeded.sales, seconds: seconds(t0) };
  });
}

/** The baseline: stream the same facts (sales, clients, accesses, churns) out of Postgres with a cursor. */
export async function recalculationBaseline(b: Bench): Promise<Measured<SelectResult>> {
  return measured(b, () => [], async () => {
    const client = await b.pool.connect();
    try {
      const t0 = performance.now();
      let rows = 0;
      const queries = [
        `select partner_id, sale_id, hub_id, to_char(closed_on, 'YYYY-MM-DD') as closed_on, mrr from sale where partner_id like 'rc-p%'`,
        `select c.partner_id, c.hub_id, c.status, a.mrr, to_char(a.renewal_date, 'YYYY-MM-DD') as renewal_date from client c join client_account a on a.hub_id = c.hub_id where c.partner_id like 'rc-p%'`,
        `select partner_id, hub_id, email, state from access where partner_id like 'rc-p%'`,
        `select partner_id, hub_id, to_char(on_date, 'YYYY-MM-DD') as on_date from churn where partner_id like 'rc-p%'`,
      ];
      await client.query('begin isolation level repeatable read read only');
      for (const q of queries) {
        const cursor = client.query(new Cursor(q));
        for (;;) {
          const batch = await cursor.read(5000);
          rows += batch.length;
          if (batch.length === 0) break;
        }
        await cursor.close();
      }
      await client.query('commit');
      return { rows, seconds: seconds(t0) };
    } finally {
      client.release();
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Memory: worker RSS and Redis memory before/after many cheap jobs
// ---------------------------------------------------------------------------------------------

export interface MemSample {
  workerRss: number;
  workerHeapUsed: number;
  redisUsedMemory: number;
  prefixKeys: number;
  prefixBytes: number;
  /** Event-loop utilisation of the worker since the previous sample. */
  workerElu: number;
}

export interface MemoryResult {
  jobs: number;
  warmupJobs: number;
  seconds: number;
  jobsPerS: number;
  before: MemSample;
  after: MemSample;
}

async function memSample(b: Bench, w: Child): Promise<MemSample> {
  await sleep(1000); // let in-flight completions and event handlers settle
  const report: MemReport = await w.memReport();
  const rss = rssBytes(w.pid) ?? report.rss;
  const { keys, bytes } = await prefixMemory(b.redis, b.prefix);
  return { workerRss: rss, workerHeapUsed: report.heapUsed, redisUsedMemory: await usedMemory(b.redis), prefixKeys: keys, prefixBytes: bytes, workerElu: report.elu };
}

/**
 * Cheap jobs on the `pairs` queue: `access.revoke` items on pairs that have no access (outcome
 * "unchanged"). The commands and their items are written with SQL, as the command job's fan-out
 * would, and the jobs are added with the service's own queue, job ids and options, interleaved
 * across commands so that concurrent jobs do not queue up on one command row (the end-to-end
 * scenario measures that). The per-partner FIFO of the commands queue is not involved.
 */
async function runPairJobs(b: Bench, tag: string, jobs: number, timeoutS: number): Promise<number> {
  const perCommand = 10;
  const commands = Math.ceil(jobs / perCommand);
  await b.pool.query(
    `insert into command (id, partner_id, type, payload, body_hash, state, items_total, started_at)
     select $1 || '-' || c, $1 || '-p' || c, 'access.revoke', '{}'::jsonb, 'bench', 'active', $3::int, now()
       from generate_series(1, $2::int) c`,
    [tag, commands, perCommand],
  );
  await b.pool.query(
    `insert into command_item (command_id, idx, hub_id, email)
     select $1 || '-' || c, i - 1, $1 || '-c' || c || '-h' || i, 'nobody@' || $1 || '.bench.test'
       from generate_series(1, $2::int) c, generate_series(1, $3::int) i`,
    [tag, commands, perCommand],
  );
  const t0 = performance.now();
  const all: { commandId: string; idx: number }[] = [];
  for (let i = 0; i < perCommand; i++) for (let c = 1; c <= commands; c++) all.push({ commandId: `${tag}-${c}`, idx: i });
  const pairs = b.app.ctx.queues.pairs;
  for (let i = 0; i < all.length; i += 1000) {
    await pairs.addBulk(all.slice(i, i + 1000).map((d) => ({ name: 'access.revoke', data: d, opts: { jobId: jobIds.pair(d.commandId, d.idx) } })));
  }
  let last = '';
  await pollUntil(
    `${all.length} pair jobs`,
    async () => {
      assertWorkersAlive(b);
      const r = await b.pool.query<{ done: string; failed: string }>(
        `select count(*) filter (where state = 'completed') as done, count(*) filter (where state = 'failed') as failed from command where id like $1`,
        [`${tag}-%`],
      );
      const done = Number(r.rows[0]?.done ?? 0);
      last = `${done}/${commands} commands completed`;
      if (Number(r.rows[0]?.failed ?? 0) > 0) throw new Error(`memory scenario: ${r.rows[0]?.failed} commands failed`);
      return done >= commands ? true : undefined;
    },
    { timeoutMs: timeoutS * 1000, intervalMs: 200, describe: () => last },
  );
  return seconds(t0);
}

export async function memory(b: Bench): Promise<Measured<MemoryResult>> {
  const { warmupJobs, jobs, timeoutS } = b.sizes.memory;
  const w = b.workers[0];
  if (!w || b.workers.length !== 1) throw new Error('memory runs with exactly one worker process');
  await runPairJobs(b, 'memw', warmupJobs, timeoutS);
  const before = await memSample(b, w);
  const m = await measured(b, workerPids(b), () => runPairJobs(b, 'mem', jobs, timeoutS));
  const after = await memSample(b, w);
  return { ...m, value: { jobs, warmupJobs, seconds: m.value, jobsPerS: jobs / m.value, before, after } };
}
