import { UnrecoverableError } from 'bullmq';
import type { AppContext } from '../context.js';
import type { Em } from '../db/orm.js';
import { jobIds } from '../queues/index.js';
import { applyAssignPair, applyRevokePair } from './access.js';
import { wakeNext, type LoadedCommand } from './commands.js';
import { classify, toUnrecoverable } from './failures.js';
import { enqueueMail } from './outbox.js';

/**
 * Writes the command's items (client × employee, in order) once, then enqueues one `pairs` job per
 * open item. Idempotent: items are inserted with ON CONFLICT DO NOTHING and job ids are
 * deterministic, so a replay (or the reconciler) only re-adds what is missing.
 */
export async function fanOutPairs(ctx: AppContext, em: Em, cmd: LoadedCommand): Promise<{ pairs: number }> {
  const c = cmd.command as { clientHubIds: string[]; employeeEmails: string[] };
  const pairs = c.clientHubIds.flatMap((h) => c.employeeEmails.map((e) => [h, e]));
  const open = await em.transactional(async (tx) => {
    await tx.execute('select 1 from command where id = ? for update', [cmd.id]);
    await tx.execute(
      `insert into command_item (command_id, idx, hub_id, email)
       select ?, (t.ord - 1)::int, t.pair->>0, t.pair->>1 from jsonb_array_elements(?::jsonb) with ordinality as t(pair, ord)
       on conflict do nothing`,
      [cmd.id, JSON.stringify(pairs)],
    );
    await tx.execute(`update command set items_total = ? where id = ? and items_total = 0`, [pairs.length, cmd.id]);
    return tx.execute<{ idx: number }[]>(`select idx from command_item where command_id = ? and state in ('waiting', 'active') order by idx`, [cmd.id]);
  });
  if (open.length) {
    await ctx.queues.pairs.addBulk(open.map(({ idx }) => ({ name: cmd.type, data: { commandId: cmd.id, idx }, opts: { jobId: jobIds.pair(cmd.id, idx) } })));
  }
  return { pairs: pairs.length };
}

type ItemState = 'waiting' | 'active' | 'completed' | 'failed';
type ItemEnd = { state: 'completed'; outcome: string } | { state: 'failed'; error: { code: string; message: string } };

/** The item was finished by a concurrent run of the same pair job: this run's writes are rolled back. */
class AlreadyFinished extends Error {}

/**
 * Finishes an item in the caller's transaction, unless it is already completed (a concurrent
 * duplicate run got there first). The command row is not touched here: pairs of one command run in
 * parallel without contending on it; `finalizeIfDone` settles the command after commit.
 */
async function finishItem(tx: Em, commandId: string, idx: number, end: ItemEnd): Promise<void> {
  const rows = await tx.execute(
    `update command_item set state = ?, outcome = ?, error = ?::jsonb, attempts = attempts + 1, finished_at = now()
      where command_id = ? and idx = ? and state <> 'completed' returning 1`,
    [end.state, end.state === 'completed' ? end.outcome : null, end.state === 'failed' ? JSON.stringify(end.error) : null, commandId, idx],
  );
  if (!rows.length) throw new AlreadyFinished();
}

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
export async function failPairFinally(ctx: AppContext, data: unknown, message: string): Promise<void> {
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

async function storedOutcome(em: Em, commandId: string, idx: number): Promise<string | null> {
  const [i] = await em.execute<{ outcome: string | null }[]>('select outcome from command_item where command_id = ? and idx = ?', [commandId, idx]);
  return i?.outcome ?? null;
}

/**
 * The `pairs` job: `{commandId, idx}`, one (client, employee) pair. Idempotency key: (commandId,
 * idx): a completed item is not applied again. A refusal (conflict, unknown or untagged employee,
 * unknown or terminated client) marks the item failed and fails the job at once with its code; an
 * operator retry re-decides it (a conflict succeeds once the other partner revoked).
 */
export async function processPairJob(ctx: AppContext, data: unknown): Promise<unknown> {
  const d = data as { commandId?: unknown; idx?: unknown } | null;
  if (typeof d?.commandId !== 'string' || !Number.isInteger(d.idx)) throw new UnrecoverableError('VALIDATION_FAILED: job data needs commandId and idx');
  const commandId = d.commandId;
  const idx = d.idx as number;
  const em = ctx.orm.em.fork();
  const [row] = await em.execute<{ partner_id: string; type: string; issued_at: string | null; hub_id: string; email: string; state: ItemState; outcome: string | null }[]>(
    `select c.partner_id, c.type, c.issued_at, i.hub_id, i.email, i.state, i.outcome
       from command_item i join command c on c.id = i.command_id where i.command_id = ? and i.idx = ?`,
    [commandId, idx],
  );
  if (!row) throw new UnrecoverableError(`NOT_FOUND: no item ${idx} of command ${commandId}`);
  if (row.state === 'completed') return { outcome: row.outcome };
  const pair = { partnerId: row.partner_id, hubId: row.hub_id, email: row.email, commandId, issuedAt: row.issued_at ? new Date(row.issued_at) : null };
  try {
    const out = await em.transactional(async (tx) => {
      const r = row.type === 'access.assign' ? await applyAssignPair(tx, pair, ctx.config.grantTtlDays) : await applyRevokePair(tx, pair);
      await finishItem(tx, commandId, idx, { state: 'completed', outcome: r.decision.outcome });
      return { outcome: r.decision.outcome, outboxIds: r.outboxIds };
    });
    await enqueueMail(ctx, out.outboxIds);
    await finalizeIfDone(ctx, commandId);
    return { outcome: out.outcome };
  } catch (err) {
    if (err instanceof AlreadyFinished) return { outcome: await storedOutcome(em, commandId, idx) };
    const f = classify(err);
    if (f.kind === 'transient') throw err;
    await em.transactional(async (tx) => {
      if (f.code === 'EMAIL_LINKED_TO_OTHER_PARTNER') {
        await tx.execute('insert into conflict (partner_id, hub_id, email, command_id) values (?, ?, ?, ?) on conflict do nothing', [pair.partnerId, pair.hubId, pair.email, commandId]);
      }
      await finishItem(tx, commandId, idx, { state: 'failed', error: { code: f.code, message: f.message } });
    }).catch((e: unknown) => {
      if (!(e instanceof AlreadyFinished)) throw e;
    });
    await finalizeIfDone(ctx, commandId);
    throw toUnrecoverable(f);
  }
}
