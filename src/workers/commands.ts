import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import type { AppContext } from '../context.js';
import { parseCommand, pairTypes, type Command, type CommandType } from '../commands/schemas.js';
import type { Em } from '../db/orm.js';
import { classify, PermanentError, toUnrecoverable } from './failures.js';
import { handlers, type HandlerEnv, type HandlerResult } from './handlers.js';
import { enqueueMail } from './outbox.js';
import { jobIds } from '../queues/index.js';
import { fanOutPairs } from './pairs.js';

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
  const [row] = await em.execute<{ id: string; partner_id: string; type: CommandType; payload: unknown; state: string; result: unknown; issued_at: string | null; seq: string }[]>(
    'select id, seq, partner_id, type, payload, state, result, issued_at from command where id = ?',
    [commandId],
  );
  if (!row) return null;
  const parsed = parseCommand(row.payload);
  if (!parsed.ok) throw new PermanentError('VALIDATION_FAILED', `stored command is invalid: ${parsed.issues.map((i) => `${i.path} ${i.message}`).join('; ')}`);
  return { id: row.id, partnerId: row.partner_id, type: row.type, command: parsed.command, state: row.state, result: row.result, issuedAt: row.issued_at ? new Date(row.issued_at) : null, seq: String(row.seq) };
}

/** Runs one non-pair handler in one transaction with the command row locked; marks it completed. Exported for the run-twice tests. */
export async function runHandler(em: Em, cmd: LoadedCommand, env: HandlerEnv): Promise<HandlerResult & { replayed: boolean }> {
  return em.transactional(async (tx) => {
    const [locked] = await tx.execute<{ state: string; result: Record<string, unknown> }[]>('select state, result from command where id = ? for update', [cmd.id]);
    if (locked?.state === 'completed') return { result: locked.result, outboxIds: [], replayed: true };
    const handler = handlers[cmd.type as keyof typeof handlers] as (tx: Em, c: Command, env: HandlerEnv) => Promise<HandlerResult>;
    const out = await handler(tx, cmd.command, env);
    await tx.execute(`update command set state = 'completed', result = ?::jsonb, error = null, finished_at = now() where id = ?`, [JSON.stringify(out.result), cmd.id]);
    return { ...out, replayed: false };
  });
}

async function hasEarlierUnfinished(em: Em, cmd: LoadedCommand): Promise<boolean> {
  const rows = await em.execute(`select 1 from command where partner_id = ? and seq < ? and state in ('waiting', 'active') limit 1`, [cmd.partnerId, cmd.seq]);
  return rows.length > 0;
}

/** Marks a command failed with its code (kept on the log for GET /v1/commands/{id}). */
export async function markCommandFailed(em: Em, commandId: string, error: { code: string; message: string }): Promise<void> {
  await em.execute(`update command set state = 'failed', error = ?::jsonb, finished_at = now() where id = ? and state <> 'completed' and items_total = 0`, [JSON.stringify(error), commandId]);
}

/**
 * The `commands` job: `{commandId}`. Idempotency key: the commandId (the log row is locked and
 * checked, so a replayed job changes nothing). A domain refusal fails the job at once with its code;
 * anything else is thrown and retried with backoff. Pair commands fan out into `pairs` jobs.
 */
export async function processCommandJob(ctx: AppContext, job: Pick<Job, 'data' | 'moveToDelayed' | 'timestamp'>, token?: string): Promise<unknown> {
  const commandId = (job.data as { commandId?: unknown } | null)?.commandId;
  if (typeof commandId !== 'string') throw new UnrecoverableError('VALIDATION_FAILED: job data has no commandId');
  const em = ctx.orm.em.fork();
  let cmd: LoadedCommand | null;
  try {
    cmd = await loadCommand(em, commandId);
  } catch (err) {
    const f = classify(err);
    if (f.kind === 'permanent') {
      await markCommandFailed(em, commandId, f);
      throw toUnrecoverable(f);
    }
    throw err;
  }
  if (!cmd) throw new UnrecoverableError(`NOT_FOUND: command ${commandId} is not in the command log`);
  if (cmd.state === 'completed') return cmd.result;
  // Per-partner FIFO: commands of one partner apply in the order they were accepted (a tag after
  // its partner.upsert, an assign after its client.upsert); partners proceed in parallel.
  // The finishing predecessor promotes this job (wakeNext); the delay is only a fallback.
  if (token && (await hasEarlierUnfinished(em, cmd))) {
    const waited = Date.now() - (job.timestamp ?? Date.now());
    await job.moveToDelayed(Date.now() + Math.min(10_000, Math.max(500, waited / 2)), token);
    throw new DelayedError();
  }
  await em.execute(
    `update command set state = case when state = 'waiting' then 'active' else state end, attempts = attempts + 1, started_at = coalesce(started_at, now())
      where id = ? and state <> 'completed'`,
    [commandId],
  );
  if (pairTypes.has(cmd.type)) return fanOutPairs(ctx, em, cmd);
  try {
    const out = await runHandler(em, cmd, { partnerId: cmd.partnerId, commandId, issuedAt: cmd.issuedAt, now: ctx.now(), renewalAlertDays: ctx.config.renewalAlertDays });
    await enqueueMail(ctx, out.outboxIds);
    await wakeNext(ctx, cmd.partnerId, cmd.seq);
    return out.result;
  } catch (err) {
    const f = classify(err);
    if (f.kind === 'permanent') {
      await markCommandFailed(em, commandId, f);
      await wakeNext(ctx, cmd.partnerId, cmd.seq);
      throw toUnrecoverable(f);
    }
    throw err;
  }
}

/**
 * A command of the partner finished: promote the partner's next waiting command, whose job is
 * delayed while it waits for its turn. Best effort: the delayed job wakes up by itself anyway.
 */
export async function wakeNext(ctx: Pick<AppContext, 'orm' | 'queues'>, partnerId: string, seq: string): Promise<void> {
  try {
    const [next] = await ctx.orm.em.fork().execute<{ id: string }[]>(
      `select id from command where partner_id = ? and seq > ? and state in ('waiting', 'active') order by seq limit 1`,
      [partnerId, seq],
    );
    if (!next) return;
    const job = await ctx.queues.commands.getJob(jobIds.command(next.id));
    if (job && (await job.isDelayed())) await job.promote();
  } catch {
    /* the job is not delayed (any more), or Redis blinked: its fallback delay wakes it */
  }
}
