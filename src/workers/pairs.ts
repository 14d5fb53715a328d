import { UnrecoverableError } from 'bullmq';
import type { AppContext } from '../context.js';
import type { Em } from '../db/orm.js';
import { jobIds } from '../queues/index.js';
import { DomainError } from '../domain/errors.js';
import { applyPairBatch, PENDING_KEY_SQL, type BatchPair } from './pair-batch.js';
import { wakeNext, type LoadedCommand } from './commands.js';
import { isTransientDatabaseError, toUnrecoverable } from './failures.js';
import { enqueueMail } from './outbox.js';
import { Batcher } from '../lib/batcher.js';
import { INLINE_CLAIM_MS, inlineStartDeadlineMs, type InlineMail } from './mail.js';

/** The range of `size` pairs (of a command of `total`) that holds pair `idx`: `[from, to)`. */
export function rangeOf(idx: number, total: number, size: number): { from: number; to: number } {
  const from = idx - (idx % size);
  return { from, to: Math.min(from + size, total) };
}

/**
 * Writes the command's items (client × employee, in order) once, then enqueues one `pairs` job per
 * range of PAIR_BATCH_SIZE items (the size stored on the command) that still has open ones.
 * Idempotent: items are inserted with ON CONFLICT DO NOTHING and job ids are deterministic, so a
 * replay (or the reconciler) only re-adds what is missing.
 */
export async function fanOutPairs(ctx: AppContext, em: Em, cmd: LoadedCommand): Promise<{ pairs: number }> {
  const c = cmd.command as { clientHubIds: string[]; employeeEmails: string[] };
  const pairs = c.clientHubIds.flatMap((h) => c.employeeEmails.map((e) => [h, e]));
  const { open, size } = await em.transactional(async (tx) => {
    await tx.execute('select 1 from command where id = ? for update', [cmd.id]);
    await tx.execute(
      `insert into command_item (command_id, idx, hub_id, email)
       select ?, (t.ord - 1)::int, t.pair->>0, t.pair->>1 from jsonb_array_elements(?::jsonb) with ordinality as t(pair, ord)
       on conflict do nothing`,
      [cmd.id, JSON.stringify(pairs)],
    );
    // The range size is fixed at the first fan-out: a replay, or the reconciler, finds the same range jobs.
    const [c] = await tx.execute<{ range_size: number }[]>(
      `update command set items_total = case when items_total = 0 then ? else items_total end,
              range_size = case when range_size = 0 then ? else range_size end
        where id = ? returning range_size`,
      [pairs.length, ctx.config.pairBatchSize, cmd.id],
    );
    const items = await tx.execute<{ idx: number }[]>(`select idx from command_item where command_id = ? and state in ('waiting', 'active') order by idx`, [cmd.id]);
    return { open: items, size: c!.range_size };
  });
  const ranges = new Map(open.map(({ idx }) => { const r = rangeOf(idx, pairs.length, size); return [r.from, r] as const; }));
  if (ranges.size) {
    await ctx.queues.pairs.addBulk([...ranges.values()].map(({ from, to }) => ({ name: cmd.type, data: { commandId: cmd.id, from, to }, opts: { jobId: jobIds.pairRange(cmd.id, from, to) } })));
  }
  return { pairs: pairs.length };
}

/** Enqueues one `pairs` job per pair: each is applied, and fails, on its own. */
async function enqueueAlone(ctx: AppContext, type: string, refs: PairJobRef[]): Promise<void> {
  if (!refs.length) return;
  await ctx.queues.pairs.addBulk(refs.map((r) => ({ name: type, data: { commandId: r.commandId, idx: r.idx }, opts: { jobId: jobIds.pair(r.commandId, r.idx) } })));
}

async function openItems(ctx: AppContext, commandId: string, from: number, to: number): Promise<PairJobRef[]> {
  const rows = await ctx.orm.em.fork().execute<{ idx: number }[]>(
    `select idx from command_item where command_id = ? and idx >= ? and idx < ? and state in ('waiting', 'active') order by idx`,
    [commandId, from, to],
  );
  return rows.map(({ idx }) => ({ commandId, idx }));
}

/**
 * A range job: its open pairs are applied in one transaction. A pair that is refused (or every pair,
 * when the batch cannot commit because of one of its rows) is not recorded here: it gets its own
 * pair job, which decides it again and fails with its code, so every refused pair is one failed job
 * on the dashboard. A transient database error fails the range job, which retries whole.
 */
export async function processPairRange(ctx: AppContext, type: string, d: { commandId: string; from: number; to: number }, mail?: InlineMail, retaken = false): Promise<unknown> {
  if (retaken) await releaseClaims(ctx, d);
  const refs = await openItems(ctx, d.commandId, d.from, d.to);
  if (!refs.length) {
    await finalizeIfDone(ctx, d.commandId);
    return { pairs: 0 };
  }
  const results = await processPairs(ctx, refs, { defer: true, ...(mail ? { mail } : {}) });
  const alone = refs.filter((_, k) => !results[k]!.ok);
  await enqueueAlone(ctx, type, alone);
  return { pairs: refs.length, applied: refs.length - alone.length, alone: alone.length };
}

/**
 * A range job taken over from a worker that died (its lock lapsed) or retried: the emails that
 * worker committed and claimed but did not send go to mail jobs now rather than when their claim
 * runs out. Only rows whose inline start deadline has passed: that worker starts no send for them
 * any more, even if it is alive and merely lost its lock.
 */
async function releaseClaims(ctx: AppContext, d: { commandId: string; from: number; to: number }): Promise<void> {
  const rows = await ctx.orm.em.fork().execute<{ id: string }[]>(
    `update outbox o set claimed_until = null
       from command_item i
      where i.command_id = ? and i.idx >= ? and i.idx < ? and i.state = 'completed'
        and o.notification_key = ${PENDING_KEY_SQL} and o.state = 'pending'
        and o.claimed_until < now() + make_interval(secs => ?)
      returning o.id`,
    [d.commandId, d.from, d.to, (INLINE_CLAIM_MS - inlineStartDeadlineMs(ctx.config.jobLockMs)) / 1000],
  );
  await enqueueMail(ctx, rows.map((r) => String(r.id)));
}

/** A range job that used up its attempts: its open pairs go on one job each (and fail, if they must, on their own). */
export async function splitPairRange(ctx: AppContext, type: string, data: unknown): Promise<void> {
  const d = data as { commandId?: unknown; from?: unknown; to?: unknown };
  if (typeof d.commandId !== 'string' || !Number.isInteger(d.from) || !Number.isInteger(d.to)) return;
  await enqueueAlone(ctx, type, await openItems(ctx, d.commandId, d.from as number, d.to as number));
}

type ItemState = 'waiting' | 'active' | 'completed' | 'failed';

/**
 * When no item of the command is open any more, settles the command (state, outcome counts, first
 * failure) from its items and, if that finished it now, lets the partner's next command go. Safe to
 * run concurrently and repeatedly: the result is computed from the items, not incremented.
 */
export async function finalizeIfDone(ctx: Pick<AppContext, 'orm' | 'queues'>, commandId: string): Promise<void> {
  const em = ctx.orm.em.fork();
  const [open] = await em.execute<{ open: boolean }[]>(
    `select exists (select 1 from command_item where command_id = ? and state in ('waiting', 'active')) as open`,
    [commandId],
  );
  if (open?.open !== false) return;
  const [r] = await em.execute<{ before: string; partner_id: string; seq: string }[]>(
    `with before as (select state from command where id = ?),
          k as (select case when state = 'failed' then 'failed' else coalesce(outcome, state) end as k, count(*) as n
                  from command_item where command_id = ? group by 1)
     update command set
       state = case when exists (select 1 from k where k.k = 'failed') then 'failed' else 'completed' end,
       finished_at = now(),
       result = (select jsonb_build_object('pairs', sum(n), 'outcomes', jsonb_object_agg(k, n), 'outcome', case when count(*) = 1 then max(k) else 'mixed' end) from k),
       error = (select error from command_item where command_id = ? and state = 'failed' order by idx limit 1)
     where id = ? and items_total > 0
     returning (select state from before) as before, partner_id, seq`,
    [commandId, commandId, commandId, commandId],
  );
  if (r && r.before !== 'completed' && r.before !== 'failed') await wakeNext(ctx, r.partner_id, String(r.seq));
}

/** A pair job that used up its attempts on transient errors: the item fails with INTERNAL_ERROR so the command can finish. */
export async function failPairFinally(ctx: Pick<AppContext, 'orm' | 'queues'>, data: unknown, message: string): Promise<void> {
  const d = data as { commandId?: string; idx?: number };
  if (typeof d.commandId !== 'string' || typeof d.idx !== 'number') return;
  const commandId = d.commandId;
  const idx = d.idx;
  await ctx.orm.em.fork().execute(
    `update command_item set state = 'failed', error = ?::jsonb, finished_at = now() where command_id = ? and idx = ? and state in ('waiting', 'active')`,
    [JSON.stringify({ code: 'INTERNAL_ERROR', message }), commandId, idx],
  );
  await finalizeIfDone(ctx, commandId);
}

export interface PairJobRef { commandId: string; idx: number }
export type PairJobResult = { ok: true; outcome: string | null } | { ok: false; error: Error };
export interface ProcessPairsOptions {
  /** A refused pair (or a batch that cannot commit) is returned as failed but not recorded: the range job gives it its own job. */
  defer?: boolean;
  /** Sends the batch's emails right after the commit (else: one mail job per email). */
  mail?: InlineMail;
}

interface ItemWrite { command_id: string; idx: number; state: ItemState; outcome: string | null; error: unknown }
interface ItemRow { command_id: string; idx: number; partner_id: string; type: string; issued_at: string | null; hub_id: string; email: string; state: ItemState; outcome: string | null }

const isLinkViolation = (err: unknown) =>
  (err as { code?: string }).code === '23505' && /access_one_partner_per_email/.test(String((err as { constraint?: string }).constraint ?? (err as Error).message));

/**
 * Applies a batch of `pairs` jobs in one transaction (one job is a batch of one). Idempotency key:
 * (commandId, idx): a completed item is not applied again, and an item another run completed in
 * the meantime keeps its outcome. Refused pairs (conflict, unknown or untagged employee, unknown or
 * terminated client) are failed items whose jobs fail at once with their code; an operator retry
 * re-decides them. If the batch transaction fails, its pairs are retried one by one, so one bad pair
 * never holds the others back (with `defer`, a range's pairs are returned unrecorded instead).
 */
export async function processPairs(ctx: AppContext, refs: PairJobRef[], opts: ProcessPairsOptions = {}): Promise<PairJobResult[]> {
  const em = ctx.orm.em.fork();
  const rows = await em.execute<ItemRow[]>(
    `select i.command_id, i.idx, c.partner_id, c.type, c.issued_at, i.hub_id, i.email, i.state, i.outcome
       from jsonb_to_recordset(?::jsonb) as t(command_id text, idx int)
       join command_item i on i.command_id = t.command_id and i.idx = t.idx
       join command c on c.id = i.command_id`,
    [JSON.stringify(refs.map((r) => ({ command_id: r.commandId, idx: r.idx })))],
  );
  const byRef = new Map(rows.map((r) => [`${r.command_id}#${r.idx}`, r]));
  const results: (PairJobResult | undefined)[] = refs.map((r) => {
    const row = byRef.get(`${r.commandId}#${r.idx}`);
    if (!row) return { ok: false, error: new UnrecoverableError(`NOT_FOUND: no item ${r.idx} of command ${r.commandId}`) };
    if (row.state === 'completed') return { ok: true, outcome: row.outcome };
    return undefined;
  });
  const todo = refs.map((_, i) => i).filter((i) => results[i] === undefined);
  if (!todo.length) {
    // A replay after a crash between commit and settling: settle the command now.
    for (const commandId of new Set(rows.map((r) => r.command_id))) await finalizeIfDone(ctx, commandId);
    return results as PairJobResult[];
  }
  const batch: BatchPair[] = todo.map((i) => {
    const row = byRef.get(`${refs[i]!.commandId}#${refs[i]!.idx}`)!;
    return { partnerId: row.partner_id, hubId: row.hub_id, email: row.email, commandId: row.command_id, idx: row.idx, issuedAt: row.issued_at ? new Date(row.issued_at) : null, type: row.type as BatchPair['type'] };
  });
  let applied: { outcomes: Awaited<ReturnType<typeof applyPairBatch>>; finished: Set<string> };
  const inline = opts.mail?.active ? opts.mail : null;
  try {
    applied = await em.transactional(async (tx) => {
      const outcomes = await applyPairBatch(tx, batch, ctx.config.grantTtlDays, inline ? INLINE_CLAIM_MS : null);
      const done = await tx.execute<{ command_id: string; idx: number }[]>(
        `update command_item i set state = t.state, outcome = t.outcome, error = t.error, attempts = i.attempts + 1, finished_at = now()
           from jsonb_to_recordset(?::jsonb) as t(command_id text, idx int, state text, outcome text, error jsonb)
          where i.command_id = t.command_id and i.idx = t.idx and i.state <> 'completed'
          returning i.command_id, i.idx`,
        [JSON.stringify(batch.flatMap((p, k): ItemWrite[] => {
          const o = outcomes[k]!;
          if (!o.ok && opts.defer) return [];
          return o.ok
            ? [{ command_id: p.commandId, idx: p.idx, state: 'completed', outcome: o.decision.outcome, error: null }]
            : [{ command_id: p.commandId, idx: p.idx, state: 'failed', outcome: null, error: o.error.toJSON() }];
        }))],
      );
      return { outcomes, finished: new Set(done.map((d) => `${d.command_id}#${d.idx}`)) };
    });
  } catch (err) {
    if (opts.defer) {
      if (isTransientDatabaseError(err)) throw err; // the range job retries whole, with backoff
      todo.forEach((i) => { results[i] = { ok: false, error: err as Error }; });
      return results as PairJobResult[];
    }
    if (batch.length > 1) {
      // Retry pair by pair: only the pairs that really fail, fail.
      const single = await Promise.all(todo.map((i) => processPairs(ctx, [refs[i]!], opts).then((r) => r[0]!, (e: unknown): PairJobResult => ({ ok: false, error: e as Error }))));
      todo.forEach((i, k) => { results[i] = single[k]; });
      return results as PairJobResult[];
    }
    if (!isLinkViolation(err)) throw err; // transient: the job retries with backoff
    // A rival won the race at the unique index: this pair is refused like any conflict.
    const p = batch[0]!;
    const error = new DomainError('EMAIL_LINKED_TO_OTHER_PARTNER', undefined, { cause: err });
    await em.transactional(async (tx) => {
      await tx.execute('insert into conflict (partner_id, hub_id, email, command_id) values (?, ?, ?, ?) on conflict do nothing', [p.partnerId, p.hubId, p.email, p.commandId]);
      await tx.execute(`update command_item set state = 'failed', error = ?::jsonb, attempts = attempts + 1, finished_at = now() where command_id = ? and idx = ? and state <> 'completed'`, [JSON.stringify(error.toJSON()), p.commandId, p.idx]);
    });
    applied = { outcomes: [{ ok: false, error }], finished: new Set([`${p.commandId}#${p.idx}`]) };
  }
  const committedAt = Date.now();
  const outboxIds = applied.outcomes.flatMap((o) => (o.ok && o.outboxId ? [o.outboxId] : []));
  if (!inline) await enqueueMail(ctx, outboxIds);
  for (const commandId of new Set(batch.map((p) => p.commandId))) await finalizeIfDone(ctx, commandId);
  if (inline) await inline.deliver(outboxIds, committedAt);
  for (const [k, i] of todo.entries()) {
    const p = batch[k]!;
    const o = applied.outcomes[k]!;
    if (!o.ok && opts.defer) results[i] = { ok: false, error: o.error };
    else if (!applied.finished.has(`${p.commandId}#${p.idx}`)) results[i] = { ok: true, outcome: await storedOutcome(em, p.commandId, p.idx) };
    else results[i] = o.ok ? { ok: true, outcome: o.decision.outcome } : { ok: false, error: toUnrecoverable(o.error) };
  }
  return results as PairJobResult[];
}

/** Pair jobs that arrive together commit in one transaction; each job still succeeds or fails on its own. */
export const pairBatcher = (ctx: AppContext, max: number, mail?: InlineMail) => new Batcher<PairJobRef, PairJobResult>((refs) => processPairs(ctx, refs, mail ? { mail } : {}), max);

/** What a `pairs` job is processed with. */
export interface PairJobEnv {
  /** The job's name: the command type, given to the pairs' own jobs a range hands over. */
  type: string;
  /** Single pair jobs that arrive together share a transaction through it. */
  batcher?: Batcher<PairJobRef, PairJobResult>;
  /** Sends the committed grant emails right away (else: mail jobs). */
  mail?: InlineMail;
  /** The job was taken over or retried (see releaseClaims). */
  retaken?: boolean;
}

/** A `pairs` job: a range `{commandId, from, to}` (see processPairRange) or one pair `{commandId, idx}` (see processPairs). */
export async function processPairJob(ctx: AppContext, data: unknown, env: PairJobEnv): Promise<unknown> {
  const { type, batcher, mail, retaken = false } = env;
  const d = data as { commandId?: unknown; idx?: unknown; from?: unknown; to?: unknown } | null;
  if (typeof d?.commandId === 'string' && Number.isInteger(d.from) && Number.isInteger(d.to)) {
    return processPairRange(ctx, type, { commandId: d.commandId, from: d.from as number, to: d.to as number }, mail, retaken);
  }
  if (typeof d?.commandId !== 'string' || !Number.isInteger(d.idx)) throw new UnrecoverableError('VALIDATION_FAILED: job data needs commandId and idx');
  const ref = { commandId: d.commandId, idx: d.idx as number };
  const r = batcher ? await batcher.submit(ref) : (await processPairs(ctx, [ref]))[0]!;
  if (!r.ok) throw r.error;
  return { outcome: r.outcome };
}

async function storedOutcome(em: Em, commandId: string, idx: number): Promise<string | null> {
  const [i] = await em.execute<{ outcome: string | null }[]>('select outcome from command_item where command_id = ? and idx = ?', [commandId, idx]);
  return i?.outcome ?? null;
}

