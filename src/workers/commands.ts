import { DelayedError, type Job } from 'bullmq';
import type { AppContext } from '../context.js';
import { parseCommand, pairTypes, type Command, type CommandType } from '../commands/schemas.js';
import type { Em } from '../db/orm.js';
import type { StoredError } from '../db/command-log.js';
import { completeCommand, failCommand, loadCommand as loadCommandRow, loadRun, lockCommand, startCommand, type CommandRow } from '../db/command-progress.js';
import { handlers, type HandlerEnv, type HandlerResult } from '../commands/handlers.js';
import { applyRun, runRole, type RunMember, type RunResult } from '../commands/apply-run.js';
import { DomainError } from '../domain/errors.js';
import { enqueueMailAfterCommit, enqueuePairs } from '../jobs/enqueue.js';
import { jobIds } from '../jobs/contracts.js';
import { classify, isTransientDatabaseError, payloadOf, PermanentError, toUnrecoverable } from './failures.js';
import { mustWait, wakeNext, type PartnerTurns, type SettledHere } from './command-order.js';
import { fanOutPairs } from './pairs.js';
import { publishSettled } from '../jobs/command-events.js';
import { insertEvents } from '../db/webhook-store.js';
import { commandEvent } from '../webhooks/events.js';
import { INLINE_CLAIM_MS, inlineStartDeadlineMs, type InlineMail } from './inline-mail.js';
import { releasePartnerClaims } from '../db/outbox-store.js';

/** At most this many commands in one run (one transaction). */
export const MAX_RUN = 200;

export interface LoadedCommand {
  id: string;
  partnerId: string;
  type: CommandType;
  command: Command;
  state: string;
  result: unknown;
  error: StoredError | null;
  issuedAt: Date | null;
  seq: string;
  /** A pair command's pair count once its items are written (0: none yet). */
  itemsTotal: number;
}

/** A stored command, validated; a payload that does not fit is returned as its refusal. */
function validated(row: CommandRow): LoadedCommand | PermanentError {
  const parsed = parseCommand(row.payload);
  if (!parsed.ok) return new PermanentError('VALIDATION_FAILED', `stored command is invalid: ${parsed.issues.map((i) => `${i.path} ${i.message}`).join('; ')}`);
  return {
    id: row.id, partnerId: row.partner_id, type: row.type as CommandType, command: parsed.command, state: row.state, result: row.result, error: row.error,
    issuedAt: row.issued_at ? new Date(row.issued_at) : null, seq: String(row.seq), itemsTotal: row.items_total,
  };
}

/** Loads a command from the log and re-validates its payload (a forged or corrupt row fails at once). */
export async function loadCommand(em: Em, commandId: string): Promise<LoadedCommand | null> {
  const row = await loadCommandRow(em, commandId);
  if (!row) return null;
  const cmd = validated(row);
  if (cmd instanceof PermanentError) throw cmd;
  return cmd;
}

/** Runs one non-pair handler in one transaction with the command row locked; marks it completed. Exported for the run-twice tests. */
export async function runHandler(em: Em, cmd: LoadedCommand, env: HandlerEnv): Promise<HandlerResult & { replayed: boolean }> {
  return em.transactional(async (tx) => {
    const locked = await lockCommand(tx, cmd.id);
    if (locked?.state === 'completed') return { result: locked.result, outboxIds: [], replayed: true };
    const handler = handlers[cmd.type as keyof typeof handlers] as (tx: Em, c: Command, env: HandlerEnv) => Promise<HandlerResult>;
    const out = await handler(tx, cmd.command, env);
    await completeCommand(tx, cmd.id, out.result);
    await insertEvents(tx, [commandEvent(cmd.partnerId, { commandId: cmd.id, commandType: cmd.type, state: 'completed', result: out.result })]);
    return { ...out, replayed: false };
  });
}

/**
 * Marks a command failed with its code (kept on the log for GET /v1/commands/{id}) and, when that
 * settles it now, writes its `command.failed` webhook event in the same transaction.
 */
export async function markCommandFailed(em: Em, commandId: string, error: { code: string; message: string }): Promise<void> {
  await em.transactional(async (tx) => {
    const before = await lockCommand(tx, commandId);
    if (!(await failCommand(tx, commandId, error)) || before?.state === 'failed') return;
    const row = await loadCommandRow(tx, commandId);
    if (row) await insertEvents(tx, [commandEvent(row.partner_id, { commandId, commandType: row.type, state: 'failed', error })]);
  });
}

/** What a command job runs with besides the context (the worker process gives both). */
export interface CommandJobDeps {
  /** Sends the grant emails a run committed right after its commit (else: one mail job each). */
  mail?: InlineMail;
  /** This process's per-partner turns and the commands its runs settled. */
  turns?: PartnerTurns;
}

type CommandJob = Pick<Job, 'id' | 'data' | 'moveToDelayed' | 'timestamp'> & { attemptsMade?: number; stalledCounter?: number };

/**
 * A job taken over from a worker that lost it (died, or its lock lapsed), or retried after a
 * failure. (Not `attemptsStarted`: a job that waited for its turn as a delayed job starts again
 * without having been lost.)
 */
const isRetaken = (job: CommandJob) => (job.stalledCounter ?? 0) > 0 || (job.attemptsMade ?? 0) > 0;

/**
 * A job taken over finds its command settled: the run that settled it may have died before it sent
 * its emails. The partner's emails claimed past their inline start deadline go to mail jobs now,
 * rather than when their claim runs out.
 */
async function releaseRunClaims(ctx: AppContext, em: Em, partnerId: string): Promise<void> {
  const ids = await releasePartnerClaims(em, partnerId, (INLINE_CLAIM_MS - inlineStartDeadlineMs(ctx.config.jobLockMs)) / 1000);
  await enqueueMailAfterCommit(ctx, ids);
}

/** What a job answers for a command already settled: its result; a refusal of a non-pair command fails the job with its code. */
function answerSettled(s: { type: string; state: string; result: unknown; error: StoredError | null }): unknown {
  if (s.state === 'failed' && !pairTypes.has(s.type as CommandType) && s.error) throw toUnrecoverable(s.error);
  return s.result;
}

/** What processing a command in its partner's turn gives: the job's answer, and work that may follow the turn (sending the run's emails). */
interface TurnOutcome { value?: unknown; failure?: Error; after?: () => Promise<void> }

/**
 * The `commands` job: `{commandId}`. Idempotency key: the commandId (the log row is locked and
 * checked, so a replayed job changes nothing). A domain refusal fails the job at once with its code;
 * anything else is thrown and retried with backoff.
 *
 * Per-partner order: the job whose command is the partner's oldest unfinished one has the turn and
 * takes the run of the partner's waiting commands after it (see src/commands/apply-run.ts), up to
 * MAX_RUN, applied in order in one transaction; the other commands' jobs then find their command
 * settled and finish at once (a refused non-pair command's job fails with its code; a refused pair
 * gets a `pairs` job of its own that fails with its code). A job whose command must wait is
 * delayed; the job that settles its predecessor promotes it. Pair commands of several pairs fan out
 * into `pairs` jobs, as does a single pair that a run could not take.
 *
 * A job that is not its command's (no row: the acceptance was taken back after its add timed out;
 * or a row accepted again since, whose own job has another id) completes doing nothing.
 */
export async function processCommandJob(ctx: AppContext, job: CommandJob, token?: string, deps: CommandJobDeps = {}): Promise<unknown> {
  const { commandId } = payloadOf('command', job.data);
  const first = (job.attemptsMade ?? 0) === 0;
  const ours = (seq: string) => job.id === undefined || job.id === jobIds.command(commandId, seq);
  const { turns } = deps;
  const known = turns?.settled(commandId);
  if (known && first && ours(known.seq)) return answerSettled(known);
  const em = ctx.orm.em.fork();
  const loaded = await loadOrRefuse(ctx, em, commandId);
  if (!loaded || !ours(loaded.seq)) {
    ctx.logger.info({ jobId: job.id, commandId }, 'a job of a command acceptance that was taken back; nothing to do');
    return { skipped: loaded ? 'the command was accepted again and has a job of its own' : 'the command is not in the command log (its acceptance was taken back)' };
  }
  const inTurn = async (waited: boolean): Promise<TurnOutcome> => {
    const settledHere = turns?.settled(commandId);
    if (settledHere && first && ours(settledHere.seq)) return { value: answerSettled(settledHere) };
    const cmd = waited ? await loadOrRefuse(ctx, em, commandId) : loaded;
    if (!cmd || !ours(cmd.seq)) return { value: { skipped: 'the command is not in the command log (its acceptance was taken back)' } };
    return processInTurn(ctx, em, job, token, cmd, deps);
  };
  const out = turns ? await turns.inTurn(loaded.partnerId, inTurn) : await inTurn(false);
  await out.after?.();
  if (out.failure) throw out.failure;
  return out.value;
}

/** Loads the command; a stored payload that does not fit fails the command (and the job) at once. */
async function loadOrRefuse(ctx: AppContext, em: Em, commandId: string): Promise<LoadedCommand | null> {
  try {
    return await loadCommand(em, commandId);
  } catch (err) {
    const f = classify(err);
    if (f.kind === 'permanent') {
      await markCommandFailed(em, commandId, f);
      await wakeNextAfterFailure(ctx, em, commandId);
      await publishSettled(ctx.queues, commandId);
      throw toUnrecoverable(f);
    }
    throw err;
  }
}

/** A command that could not even be read failed: the partner's next one may go. */
async function wakeNextAfterFailure(ctx: AppContext, em: Em, commandId: string): Promise<void> {
  const row = await loadCommandRow(em, commandId);
  if (row) await wakeNext(ctx, row.partner_id, String(row.seq));
}

async function processInTurn(ctx: AppContext, em: Em, job: CommandJob, token: string | undefined, cmd: LoadedCommand, deps: CommandJobDeps): Promise<TurnOutcome> {
  const first = (job.attemptsMade ?? 0) === 0;
  if ((cmd.state === 'completed' || cmd.state === 'failed') && isRetaken(job)) await releaseRunClaims(ctx, em, cmd.partnerId);
  if (cmd.state === 'completed') return { value: cmd.result };
  // Settled failed while this job waited (a run refused it): the job fails with its code. An
  // operator's retry of the failed job (attemptsMade > 0) applies the command again, on its own.
  if (cmd.state === 'failed' && (first || pairTypes.has(cmd.type))) {
    try {
      return { value: answerSettled(cmd) };
    } catch (err) {
      return { failure: err as Error };
    }
  }
  // Per-partner FIFO: commands of one partner apply in the order they were accepted (a tag after
  // its partner.upsert, an assign after its client.upsert); partners proceed in parallel.
  // The job that settles the predecessor promotes this job (wakeNext); the delay is only a fallback.
  if (token && (await mustWait(em, cmd))) {
    const waited = Date.now() - (job.timestamp ?? Date.now());
    await job.moveToDelayed(Date.now() + Math.min(10_000, Math.max(500, waited / 2)), token);
    throw new DelayedError();
  }
  await startCommand(em, cmd.id);
  if (cmd.state !== 'failed' && runRole(cmd.type, cmd.command, cmd.itemsTotal) !== null) return runFrom(ctx, em, cmd, deps);
  return processAlone(ctx, em, cmd);
}

/** The command on its own, as before runs: a pair command fans out into `pairs` jobs; a non-pair command runs its handler in a transaction. */
async function processAlone(ctx: AppContext, em: Em, cmd: LoadedCommand): Promise<TurnOutcome> {
  if (pairTypes.has(cmd.type)) return { value: await fanOutPairs(ctx, em, { id: cmd.id, type: cmd.type, command: cmd.command as { clientHubIds: string[]; employeeEmails: string[] } }) };
  try {
    const out = await runHandler(em, cmd, { partnerId: cmd.partnerId, commandId: cmd.id, issuedAt: cmd.issuedAt, now: ctx.now(), renewalAlertDays: ctx.config.renewalAlertDays });
    await enqueueMailAfterCommit(ctx, out.outboxIds);
    await wakeNext(ctx, cmd.partnerId, cmd.seq);
    await publishSettled(ctx.queues, cmd.id);
    return { value: out.result };
  } catch (err) {
    const f = classify(err);
    if (f.kind === 'permanent') {
      await markCommandFailed(em, cmd.id, f);
      await wakeNext(ctx, cmd.partnerId, cmd.seq);
      await publishSettled(ctx.queues, cmd.id);
      return { failure: toUnrecoverable(f) };
    }
    throw err;
  }
}

/**
 * The partner's run from `head` on: its waiting commands after it, in order, as long as each can
 * take part (see runRole) and the run holds fewer than MAX_RUN.
 */
async function runMembers(em: Em, head: LoadedCommand): Promise<RunMember[]> {
  const rows = await loadRun(em, head.partnerId, head.seq, MAX_RUN);
  const members: RunMember[] = [head];
  for (const row of rows) {
    if (row.id === head.id) continue;
    // Not confirmed: the intake may still take it back (503); it waits for its own job.
    if (row.state !== 'waiting' || !row.confirmed) break;
    const c = validated(row);
    if (c instanceof PermanentError || runRole(c.type, c.command, c.itemsTotal) === null) break;
    members.push(c);
  }
  return members;
}

/**
 * Applies the run that starts at `head` in one transaction (see applyRun). A refused non-pair
 * command makes the first try throw: the run is applied again one command at a time (savepoints).
 * A transient database error is thrown (the job retries); any other error (a race at a unique
 * index) makes the head go alone, the old way, and leaves the others to their own jobs. After the
 * commit: refused pairs get their failed `pairs` jobs, emails are sent (after the turn), the
 * partner's next command is promoted, and waiters on each command are told.
 */
async function runFrom(ctx: AppContext, em: Em, head: LoadedCommand, deps: CommandJobDeps): Promise<TurnOutcome> {
  const members = await runMembers(em, head);
  const inline = deps.mail?.active ? deps.mail : null;
  const attempt = (oneByOne: boolean) => em.transactional((tx) => applyRun(tx, members, {
    now: ctx.now(), renewalAlertDays: ctx.config.renewalAlertDays, settings: ctx.config, mailClaimMs: inline ? INLINE_CLAIM_MS : null, headId: head.id, oneByOne,
  }));
  let run: RunResult;
  try {
    try {
      run = await attempt(false);
    } catch (err) {
      if (!(err instanceof DomainError)) throw err;
      run = await attempt(true);
    }
  } catch (err) {
    if (isTransientDatabaseError(err)) throw err;
    ctx.logger.warn({ err, commandId: head.id, run: members.length }, 'a run could not commit; its first command goes alone');
    return processAlone(ctx, em, head);
  }
  const committedAt = Date.now();
  const settled = run.settled;
  deps.turns?.settledNow(settled.map((s): SettledHere & { id: string } => ({ id: s.id, seq: s.seq, type: s.type, state: s.state, result: s.result, error: s.error, refusedPair: s.refusedPair })));
  const refused = settled.filter((s) => s.refusedPair);
  for (const type of new Set(refused.map((s) => s.type))) {
    await enqueuePairs(ctx.queues, type, refused.filter((s) => s.type === type).map((s) => ({ commandId: s.id, idx: 0 })))
      .catch((err: unknown) => ctx.logger.warn({ err }, 'the failed pair jobs of refused pairs were not added; the command log has the failures'));
  }
  await enqueueMailAfterCommit(ctx, run.mailIds);
  const last = members[members.length - 1]!;
  await wakeNext(ctx, head.partnerId, last.seq);
  await Promise.all(settled.map((s) => publishSettled(ctx.queues, s.id)));
  const after = inline && run.claimedMailIds.length ? () => inline.deliver(run.claimedMailIds, committedAt) : undefined;
  const mine = settled.find((s) => s.id === head.id);
  if (!mine) {
    // Settled by another run meanwhile: answer what the log says.
    const now = await loadCommand(em, head.id);
    return { value: now?.result ?? null, ...(after ? { after } : {}) };
  }
  try {
    return { value: answerSettled(mine), ...(after ? { after } : {}) };
  } catch (err) {
    return { failure: err as Error, ...(after ? { after } : {}) };
  }
}
