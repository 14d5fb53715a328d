import { DelayedError, type Job } from 'bullmq';
import type { AppContext } from '../context.js';
import { parseCommand, pairTypes, type Command, type CommandType } from '../commands/schemas.js';
import type { Em } from '../db/orm.js';
import { completeCommand, failCommand, loadCommand as loadCommandRow, lockCommand, startCommand } from '../db/command-progress.js';
import { handlers, type HandlerEnv, type HandlerResult } from '../commands/handlers.js';
import { enqueueMailAfterCommit } from '../jobs/enqueue.js';
import { jobIds } from '../jobs/contracts.js';
import { classify, payloadOf, PermanentError, toUnrecoverable } from './failures.js';
import { mustWait, wakeNext } from './command-order.js';
import { fanOutPairs } from './pairs.js';
import { publishSettled } from '../jobs/command-events.js';
import { insertEvents } from '../db/webhook-store.js';
import { commandEvent } from '../webhooks/events.js';

export interface LoadedCommand {
  id: string;
  partnerId: string;
  type: CommandType;
  command: Command;
  state: string;
  result: unknown;
  issuedAt: Date | null;
  seq: string;
}

/** Loads a command from the log and re-validates its payload (a forged or corrupt row fails at once). */
export async function loadCommand(em: Em, commandId: string): Promise<LoadedCommand | null> {
  const row = await loadCommandRow(em, commandId);
  if (!row) return null;
  const parsed = parseCommand(row.payload);
  if (!parsed.ok) throw new PermanentError('VALIDATION_FAILED', `stored command is invalid: ${parsed.issues.map((i) => `${i.path} ${i.message}`).join('; ')}`);
  return { id: row.id, partnerId: row.partner_id, type: row.type as CommandType, command: parsed.command, state: row.state, result: row.result, issuedAt: row.issued_at ? new Date(row.issued_at) : null, seq: String(row.seq) };
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

/**
 * The `commands` job: `{commandId}`. Idempotency key: the commandId (the log row is locked and
 * checked, so a replayed job changes nothing). A domain refusal fails the job at once with its code;
 * anything else is thrown and retried with backoff. Pair commands fan out into `pairs` jobs.
 *
 * A job that is not its command's (no row: the acceptance was taken back after its add timed out;
 * or a row accepted again since, whose own job has another id) completes doing nothing.
 */
export async function processCommandJob(ctx: AppContext, job: Pick<Job, 'id' | 'data' | 'moveToDelayed' | 'timestamp'>, token?: string): Promise<unknown> {
  const { commandId } = payloadOf('command', job.data);
  const em = ctx.orm.em.fork();
  let cmd: LoadedCommand | null;
  try {
    cmd = await loadCommand(em, commandId);
  } catch (err) {
    const f = classify(err);
    if (f.kind === 'permanent') {
      await markCommandFailed(em, commandId, f);
      await publishSettled(ctx.queues, commandId);
      throw toUnrecoverable(f);
    }
    throw err;
  }
  if (!cmd || (job.id !== undefined && job.id !== jobIds.command(cmd.id, cmd.seq))) {
    ctx.logger.info({ jobId: job.id, commandId }, 'a job of a command acceptance that was taken back; nothing to do');
    return { skipped: cmd ? 'the command was accepted again and has a job of its own' : 'the command is not in the command log (its acceptance was taken back)' };
  }
  if (cmd.state === 'completed') return cmd.result;
  // Per-partner FIFO: commands of one partner apply in the order they were accepted (a tag after
  // its partner.upsert, an assign after its client.upsert); partners proceed in parallel.
  // The finishing predecessor promotes this job (wakeNext); the delay is only a fallback.
  if (token && (await mustWait(em, cmd))) {
    const waited = Date.now() - (job.timestamp ?? Date.now());
    await job.moveToDelayed(Date.now() + Math.min(10_000, Math.max(500, waited / 2)), token);
    throw new DelayedError();
  }
  await startCommand(em, commandId);
  if (pairTypes.has(cmd.type)) return fanOutPairs(ctx, em, { id: cmd.id, type: cmd.type, command: cmd.command as { clientHubIds: string[]; employeeEmails: string[] } });
  try {
    const out = await runHandler(em, cmd, { partnerId: cmd.partnerId, commandId, issuedAt: cmd.issuedAt, now: ctx.now(), renewalAlertDays: ctx.config.renewalAlertDays });
    await enqueueMailAfterCommit(ctx, out.outboxIds);
    await wakeNext(ctx, cmd.partnerId, cmd.seq);
    await publishSettled(ctx.queues, commandId);
    return out.result;
  } catch (err) {
    const f = classify(err);
    if (f.kind === 'permanent') {
      await markCommandFailed(em, commandId, f);
      await wakeNext(ctx, cmd.partnerId, cmd.seq);
      await publishSettled(ctx.queues, commandId);
      throw toUnrecoverable(f);
    }
    throw err;
  }
}
