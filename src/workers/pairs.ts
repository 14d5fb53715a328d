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
  const hubs: string[] = [];
  const emails: string[] = [];
  for (const h of c.clientHubIds) for (const e of c.employeeEmails) { hubs.push(h); emails.push(e); }
  const open = await em.transactional(async (tx) => {
    await tx.execute('select 1 from command where id = ? for update', [cmd.id]);
    await tx.execute(
      `insert into command_item (command_id, idx, hub_id, email)
       select ?, (t.ord - 1)::int, t.pair->>0, t.pair->>1 from jsonb_array_elements(?::jsonb) with ordinality as t(pair, ord)
       on conflict do nothing`,
      [cmd.id, JSON.stringify(hubs.map((h, i) => [h, emails[i]]))],
    );
    await tx.execute(`update command set items_total = ?, items_open = ? where id = ? and items_total = 0`, [hubs.length, hubs.length, cmd.id]);
    return tx.execute<{ idx: number }[]>(`select idx from command_item where command_id = ? and state in ('waiting', 'active') order by idx`, [cmd.id]);
  });
  if (open.length) {
    await ctx.queues.pairs.addBulk(open.map(({ idx }) => ({ name: cmd.type, data: { commandId: cmd.id, idx }, opts: { jobId: jobIds.pair(cmd.id, idx) } })));
  }
  return { pairs: hubs.length };
}

type ItemState = 'waiting' | 'active' | 'completed' | 'failed';

/** Moves an item to its final state and keeps the command's counters (and final state) in step, in the caller's transaction. */
async function finishItem(tx: Em, commandId: string, idx: number, from: ItemState, to: { state: 'completed'; outcome: string } | { state: 'failed'; error: { code: string; message: string } }): Promise<{ commandFinished: boolean }> {
  await tx.execute(
    `update command_item set state = ?, outcome = ?, error = ?::jsonb, attempts = attempts + 1, finished_at = now() where command_id = ? and idx = ?`,
    [to.state, to.state === 'completed' ? to.outcome : null, to.state === 'failed' ? JSON.stringify(to.error) : null, commandId, idx],
  );
  const wasOpen = from === 'waiting' || from === 'active';
  const openDelta = wasOpen ? -1 : 0;
  const failedDelta = (to.state === 'failed' ? 1 : 0) - (from === 'failed' ? 1 : 0);
  if (openDelta === 0 && failedDelta === 0) return { commandFinished: false };
  const [c] = await tx.execute<{ items_open: number }[]>(
    `update command set items_open = items_open + ?, items_failed = items_failed + ?,
       state = case when items_open + ? = 0 then (case when items_failed + ? > 0 then 'failed' else 'completed' end) else state end,
       finished_at = case when items_open + ? = 0 then now() else finished_at end
     where id = ? returning items_open`,
    [openDelta, failedDelta, openDelta, failedDelta, openDelta, commandId],
  );
  if (c?.items_open !== 0) return { commandFinished: false };
  // Finished (again): the command row carries the outcome counts and the first failure, as other commands do.
  await tx.execute(
    `update command set
       result = (select jsonb_build_object('pairs', sum(n), 'outcomes', jsonb_object_agg(k, n), 'outcome', case when count(*) = 1 then max(k) else 'mixed' end)
                   from (select case when state = 'failed' then 'failed' else coalesce(outcome, state) end as k, count(*) as n
                           from command_item where command_id = ? group by 1) s),
       error = (select error from command_item where command_id = ? and state = 'failed' order by idx limit 1)
     where id = ?`,
    [commandId, commandId, commandId],
  );
  return { commandFinished: wasOpen };
}

/** A pair job that used up its attempts on transient errors: the item fails with INTERNAL_ERROR so the command can finish. */
export async function failPairFinally(ctx: AppContext, data: unknown, message: string): Promise<void> {
  const d = data as { commandId?: string; idx?: number };
  if (typeof d.commandId !== 'string' || typeof d.idx !== 'number') return;
  const commandId = d.commandId;
  const idx = d.idx;
  const finished = await ctx.orm.em.fork().transactional(async (tx) => {
    const [item] = await tx.execute<{ state: ItemState }[]>('select state from command_item where command_id = ? and idx = ? for update', [commandId, idx]);
    if (!item || item.state === 'completed' || item.state === 'failed') return null;
    return finishItem(tx, commandId, idx, item.state, { state: 'failed', error: { code: 'INTERNAL_ERROR', message } });
  });
  if (finished?.commandFinished) await wakeAfter(ctx, commandId);
}

async function wakeAfter(ctx: AppContext, commandId: string): Promise<void> {
  const [c] = await ctx.orm.em.fork().execute<{ partner_id: string; seq: string }[]>('select partner_id, seq from command where id = ?', [commandId]);
  if (c) await wakeNext(ctx, c.partner_id, String(c.seq));
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
      const [item] = await tx.execute<{ state: ItemState; outcome: string | null }[]>('select state, outcome from command_item where command_id = ? and idx = ? for update', [commandId, idx]);
      if (!item || item.state === 'completed') return { outcome: item?.outcome ?? null, outboxIds: [] as string[] };
      const r = row.type === 'access.assign' ? await applyAssignPair(tx, pair, ctx.config.grantTtlDays) : await applyRevokePair(tx, pair);
      const fin = await finishItem(tx, commandId, idx, item.state, { state: 'completed', outcome: r.decision.outcome });
      return { outcome: r.decision.outcome, outboxIds: r.outboxIds, commandFinished: fin.commandFinished };
    });
    await enqueueMail(ctx, out.outboxIds);
    if ('commandFinished' in out && out.commandFinished) await wakeAfter(ctx, commandId);
    return { outcome: out.outcome };
  } catch (err) {
    const f = classify(err);
    if (f.kind === 'transient') throw err;
    const fin = await em.transactional(async (tx) => {
      const [item] = await tx.execute<{ state: ItemState }[]>('select state from command_item where command_id = ? and idx = ? for update', [commandId, idx]);
      if (!item || item.state === 'completed') return null;
      if (f.code === 'EMAIL_LINKED_TO_OTHER_PARTNER') {
        await tx.execute('insert into conflict (partner_id, hub_id, email, command_id) values (?, ?, ?, ?) on conflict do nothing', [pair.partnerId, pair.hubId, pair.email, commandId]);
      }
      return finishItem(tx, commandId, idx, item.state, { state: 'failed', error: { code: f.code, message: f.message } });
    });
    if (fin?.commandFinished) await wakeAfter(ctx, commandId);
    throw toUnrecoverable(f);
  }
}
