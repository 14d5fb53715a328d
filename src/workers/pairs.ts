import type { AppContext } from '../context.js';
import type { Em } from '../db/orm.js';
import { DomainError } from '../domain/errors.js';
import { applyPairBatch, recordConflictsWithEvents, type BatchPair, type PairOutcomeOrError } from '../commands/apply-pairs.js';
import {
  failedItemError, failOpenItem, hasOpenItems, itemOutcome, loadItems, lockCommand, openItems, recordItemResults, settleFromItems, writeItems, type ItemResult,
} from '../db/command-progress.js';
import { insertEvents } from '../db/webhook-store.js';
import { commandEvent } from '../webhooks/events.js';
import { releaseClaims as releaseClaimsOf } from '../db/outbox-store.js';
import { parsePayload } from '../jobs/contracts.js';
import { enqueueMailAfterCommit, enqueuePairRanges, enqueuePairs } from '../jobs/enqueue.js';
import { Batcher } from '../lib/batcher.js';
import { isTransientDatabaseError, isUniqueViolation, payloadOf, toUnrecoverable } from './failures.js';
import { wakeNext } from './command-order.js';
import { publishSettled } from '../jobs/command-events.js';
import { INLINE_CLAIM_MS, inlineStartDeadlineMs, type InlineMail } from './inline-mail.js';

/** The range of `size` pairs (of a command of `total`) that holds pair `idx`: `[from, to)`. */
export function rangeOf(idx: number, total: number, size: number): { from: number; to: number } {
  const from = idx - (idx % size);
  return { from, to: Math.min(from + size, total) };
}

/** A pair command, as its fan-out needs it. */
export interface PairCommand { id: string; type: string; command: { clientHubIds: string[]; employeeEmails: string[] } }

/**
 * The range size of a command: about PAIR_RANGE_SIZE pairs, a whole number of clients, so a range
 * never splits one client's pairs (items are client × employee, client first): each client's
 * request email is one digest, written by one range.
 */
export function rangeSizeFor(employees: number, pairRangeSize: number): number {
  const e = Math.max(1, employees);
  return e >= pairRangeSize ? e : Math.floor(pairRangeSize / e) * e;
}

/**
 * Writes the command's items (client × employee, in order) once, then enqueues one `pairs` job per
 * range (its size stored on the command, see rangeSizeFor) that still has open ones.
 * Idempotent: items are inserted with ON CONFLICT DO NOTHING and job ids are deterministic, so a
 * replay (or the reconciler) only re-adds what is missing.
 */
export async function fanOutPairs(ctx: AppContext, em: Em, cmd: PairCommand): Promise<{ pairs: number }> {
  const c = cmd.command;
  const pairs = c.clientHubIds.flatMap((h) => c.employeeEmails.map((e) => [h, e] as const));
  const { open, rangeSize } = await em.transactional((tx) => writeItems(tx, cmd.id, pairs, rangeSizeFor(c.employeeEmails.length, ctx.config.pairRangeSize)));
  const ranges = new Map(open.map((idx) => { const r = rangeOf(idx, pairs.length, rangeSize); return [r.from, r] as const; }));
  await enqueuePairRanges(ctx.queues, cmd.type, [...ranges.values()].map(({ from, to }) => ({ commandId: cmd.id, from, to })));
  return { pairs: pairs.length };
}

async function openItemsOf(ctx: AppContext, commandId: string, from: number, to: number): Promise<PairJobRef[]> {
  const open = await openItems(ctx.orm.em.fork(), commandId, { from, to });
  return open.map((idx) => ({ commandId, idx }));
}

/**
 * A range job: its open pairs are applied in one transaction. A pair that is refused (or every pair,
 * when the batch cannot commit because of one of its rows) is not recorded here: it gets its own
 * pair job, which decides it again and fails with its code, so every refused pair is one failed job
 * on the dashboard. A transient database error fails the range job, which retries whole.
 */
export async function processPairRange(ctx: AppContext, type: string, d: { commandId: string; from: number; to: number }, mail?: InlineMail, retaken = false): Promise<unknown> {
  if (retaken) await releaseClaims(ctx, d);
  const refs = await openItemsOf(ctx, d.commandId, d.from, d.to);
  if (!refs.length) {
    await finalizeIfDone(ctx, d.commandId);
    return { pairs: 0 };
  }
  const results = await processPairs(ctx, refs, { defer: true, ...(mail ? { mail } : {}) });
  const alone = refs.filter((_, k) => !results[k]!.ok);
  await enqueuePairs(ctx.queues, type, alone);
  return { pairs: refs.length, applied: refs.length - alone.length, alone: alone.length };
}

/**
 * A range job taken over from a worker that died (its lock lapsed) or retried: the emails that
 * worker committed and claimed but did not send go to mail jobs now rather than when their claim
 * runs out. Only rows whose inline start deadline has passed: that worker starts no send for them
 * any more, even if it is alive and merely lost its lock.
 */
async function releaseClaims(ctx: AppContext, d: { commandId: string; from: number; to: number }): Promise<void> {
  const ids = await releaseClaimsOf(ctx.orm.em.fork(), d, (INLINE_CLAIM_MS - inlineStartDeadlineMs(ctx.config.jobLockMs)) / 1000);
  await enqueueMailAfterCommit(ctx, ids);
}

/** A range job that used up its attempts: its open pairs go on one job each (and fail, if they must, on their own). */
export async function splitPairRange(ctx: AppContext, type: string, data: unknown): Promise<void> {
  const d = parsePayload('pairRange', data);
  if (!d.ok) return;
  await enqueuePairs(ctx.queues, type, await openItemsOf(ctx, d.data.commandId, d.data.from, d.data.to));
}

/**
 * When no item of the command is open any more, settles the command (state, outcome counts, first
 * failure) from its items and, if that finished it now, lets the partner's next command go. Safe to
 * run concurrently and repeatedly: the result is computed from the items, not incremented. A
 * settling that changes the command's state writes its `command.completed` / `command.failed`
 * webhook event in the same transaction (the row lock makes that once per change).
 */
export async function finalizeIfDone(ctx: Pick<AppContext, 'orm' | 'queues'>, commandId: string): Promise<void> {
  const em = ctx.orm.em.fork();
  if (await hasOpenItems(em, commandId)) return;
  const r = await em.transactional(async (tx) => {
    await lockCommand(tx, commandId);
    const s = await settleFromItems(tx, commandId);
    if (s && s.state !== s.before && (s.state === 'completed' || s.state === 'failed')) {
      await insertEvents(tx, [commandEvent(s.partner_id, { commandId, commandType: s.type, state: s.state, result: s.result, error: s.error })]);
    }
    return s;
  });
  if (r && r.before !== 'completed' && r.before !== 'failed') {
    await wakeNext(ctx, r.partner_id, String(r.seq));
    await publishSettled(ctx.queues, commandId);
  }
}

/** A pair job that used up its attempts on transient errors: the item fails with INTERNAL_ERROR so the command can finish. */
export async function failPairFinally(ctx: Pick<AppContext, 'orm' | 'queues'>, data: unknown, message: string): Promise<void> {
  const d = parsePayload('pair', data);
  if (!d.ok) return;
  await failOpenItem(ctx.orm.em.fork(), d.data.commandId, d.data.idx, { code: 'INTERNAL_ERROR', message });
  await finalizeIfDone(ctx, d.data.commandId);
}

export interface PairJobRef { commandId: string; idx: number }
export type PairJobResult = { ok: true; outcome: string | null } | { ok: false; error: Error };
export interface ProcessPairsOptions {
  /** A refused pair (or a batch that cannot commit) is returned as failed but not recorded: the range job gives it its own job. */
  defer?: boolean;
  /** Sends the batch's emails right after the commit (else: one mail job per email). */
  mail?: InlineMail;
}

/** The unique index that keeps an email linked to one partner per client. */
const ONE_PARTNER_PER_EMAIL = 'access_one_partner_per_email';

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
  const rows = await loadItems(em, refs);
  const byRef = new Map(rows.map((r) => [`${r.command_id}#${r.idx}`, r]));
  const results: (PairJobResult | undefined)[] = refs.map((r) => {
    const row = byRef.get(`${r.commandId}#${r.idx}`);
    if (!row) return { ok: false, error: toUnrecoverable({ code: 'NOT_FOUND', message: `no item ${r.idx} of command ${r.commandId}` }) };
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
  let applied: { outcomes: PairOutcomeOrError[]; finished: Set<string> };
  const inline = opts.mail?.active ? opts.mail : null;
  try {
    applied = await em.transactional(async (tx) => {
      const outcomes = await applyPairBatch(tx, batch, ctx.config, inline ? INLINE_CLAIM_MS : null, ctx.now());
      const done = await recordItemResults(tx, batch.flatMap((p, k): ItemResult[] => {
        const o = outcomes[k]!;
        if (!o.ok && opts.defer) return [];
        return o.ok
          ? [{ commandId: p.commandId, idx: p.idx, state: 'completed', outcome: o.decision.outcome, error: null }]
          : [{ commandId: p.commandId, idx: p.idx, state: 'failed', outcome: null, error: o.error.toJSON() }];
      }));
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
    if (!isUniqueViolation(err, ONE_PARTNER_PER_EMAIL)) throw err; // transient: the job retries with backoff
    // A rival won the race at the unique index: this pair is refused like any conflict.
    const p = batch[0]!;
    const error = new DomainError('EMAIL_LINKED_TO_OTHER_PARTNER', undefined, { cause: err });
    await em.transactional(async (tx) => {
      await recordConflictsWithEvents(tx, [p]);
      await recordItemResults(tx, [{ commandId: p.commandId, idx: p.idx, state: 'failed', outcome: null, error: error.toJSON() }]);
    });
    applied = { outcomes: [{ ok: false, error }], finished: new Set([`${p.commandId}#${p.idx}`]) };
  }
  const committedAt = Date.now();
  const outboxIds = applied.outcomes.flatMap((o) => (o.ok && o.outboxId ? [o.outboxId] : []));
  if (!inline) await enqueueMailAfterCommit(ctx, outboxIds);
  for (const commandId of new Set(batch.map((p) => p.commandId))) await finalizeIfDone(ctx, commandId);
  if (inline) await inline.deliver(outboxIds, committedAt);
  for (const [k, i] of todo.entries()) {
    const p = batch[k]!;
    const o = applied.outcomes[k]!;
    if (!o.ok && opts.defer) results[i] = { ok: false, error: o.error };
    else if (!applied.finished.has(`${p.commandId}#${p.idx}`)) results[i] = { ok: true, outcome: await itemOutcome(em, p.commandId, p.idx) };
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
  /**
   * The job's first attempt: a pair a run already refused (its item failed) fails at once with the
   * stored code, so the refusal shows on the dashboard; an operator's retry decides it again.
   */
  firstAttempt?: boolean;
}

const isRange = (data: unknown) => typeof data === 'object' && data !== null && 'from' in data;

/** A `pairs` job: a range `{commandId, from, to}` (see processPairRange) or one pair `{commandId, idx}` (see processPairs). */
export async function processPairJob(ctx: AppContext, data: unknown, env: PairJobEnv): Promise<unknown> {
  const { type, batcher, mail, retaken = false } = env;
  if (isRange(data)) return processPairRange(ctx, type, payloadOf('pairRange', data), mail, retaken);
  const ref = payloadOf('pair', data);
  if (env.firstAttempt) {
    const refused = await failedItemError(ctx.orm.em.fork(), ref.commandId, ref.idx);
    if (refused) throw toUnrecoverable(refused);
  }
  const r = batcher ? await batcher.submit(ref) : (await processPairs(ctx, [ref]))[0]!;
  if (!r.ok) throw r.error;
  return { outcome: r.outcome };
}
