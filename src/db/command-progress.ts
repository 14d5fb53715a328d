import { sql } from 'kysely';
import type { Em } from './orm.js';
import { firstRow, jsonb, rows, run } from './exec.js';
import type { CommandState, StoredError } from './command-log.js';

/**
 * The worker side of the command log: a command's progress (`command`: state, attempts, result,
 * error; `command_item`: one row per pair of an access.assign / access.revoke) and the per-partner
 * order of commands. The intake and status reads are in `command-log.ts`.
 *
 * Value types as Postgres sends them: `seq` (bigint) is a string, timestamps are strings.
 */

/** A command as stored: its payload is not validated here (see the command worker). */
export interface CommandRow {
  id: string;
  seq: string;
  partner_id: string;
  type: string;
  payload: unknown;
  state: CommandState;
  result: unknown;
  error: StoredError | null;
  issued_at: string | null;
  /** A pair command's pair count once its items are written (0: none written). */
  items_total: number;
}

/** Loads one command of the log. */
export async function loadCommand(em: Em, commandId: string): Promise<CommandRow | undefined> {
  return em.getKysely().selectFrom('command')
    .select(['id', 'seq', 'partner_id', 'type', 'payload', 'state', 'result', 'error', 'issued_at', 'items_total'])
    .where('id', '=', commandId)
    .$castTo<CommandRow>()
    .executeTakeFirst();
}

/** Locks the command row for the rest of the transaction; returns its state and result. */
export async function lockCommand(tx: Em, commandId: string): Promise<{ state: CommandState; result: Record<string, unknown> } | undefined> {
  return tx.getKysely().selectFrom('command').select(['state', 'result']).where('id', '=', commandId).forUpdate()
    .$castTo<{ state: CommandState; result: Record<string, unknown> }>()
    .executeTakeFirst();
}

/** The command's job started: waiting → active, one attempt more (a completed command is left alone). */
export async function startCommand(em: Em, commandId: string): Promise<void> {
  await run(em, sql`update command set state = case when state = 'waiting' then 'active' else state end, attempts = attempts + 1, started_at = coalesce(started_at, now())
    where id = ${commandId} and state <> 'completed'`);
}

/** A non-pair command completed with its result. */
export async function completeCommand(tx: Em, commandId: string, result: Record<string, unknown>): Promise<void> {
  await tx.getKysely().updateTable('command')
    .set({ state: 'completed', result: jsonb(result), error: null, finished_at: sql`now()` })
    .where('id', '=', commandId)
    .execute();
}

/** A non-pair command failed with its code (a pair command is settled from its items instead); returns whether the row changed. */
export async function failCommand(em: Em, commandId: string, error: StoredError): Promise<boolean> {
  const r = await em.getKysely().updateTable('command')
    .set({ state: 'failed', error: jsonb(error), finished_at: sql`now()` })
    .where('id', '=', commandId).where('state', '<>', 'completed').where('items_total', '=', 0)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

// ---- per-partner order --------------------------------------------------------------------------

/** Where the command stands in its partner's order. */
export async function commandOrder(em: Em, commandId: string): Promise<{ partner_id: string; seq: string } | undefined> {
  return em.getKysely().selectFrom('command').select(['partner_id', 'seq']).where('id', '=', commandId).executeTakeFirst();
}

/** Unfinished, written as the partial indexes' predicate (`command_unfinished_by_partner`, `command_item_open`) so the planner matches them. */
const isUnfinished = sql<boolean>`state in ('waiting', 'active')`;

/** Whether an earlier command of the partner is still unfinished. */
export async function hasEarlierUnfinished(em: Em, partnerId: string, seq: string): Promise<boolean> {
  const r = await em.getKysely().selectFrom('command').select(sql<number>`1`.as('one'))
    .where('partner_id', '=', partnerId).where('seq', '<', seq).where(isUnfinished)
    .limit(1)
    .executeTakeFirst();
  return r !== undefined;
}

/** The partner's next unfinished command after `seq`, if any: its id and `seq`. */
export async function nextUnfinished(em: Em, partnerId: string, seq: string): Promise<{ id: string; seq: string } | undefined> {
  return em.getKysely().selectFrom('command').select(['id', 'seq'])
    .where('partner_id', '=', partnerId).where('seq', '>', seq).where(isUnfinished)
    .orderBy('seq').limit(1)
    .$castTo<{ id: string; seq: string }>()
    .executeTakeFirst();
}

// ---- runs: a partner's consecutive waiting commands, applied in one transaction -----------------

/**
 * A command whose job the intake has not confirmed in Redis (`enqueued_at` null) may still be taken
 * back (503) when the add fails or times out; a run does not apply it, unless it is older than this
 * (the intake then crashed, or failed to write the confirmation: the reconciler enqueues it anyway).
 */
export const CONFIRMATION_GRACE_SECONDS = 10;

/**
 * The partner's unfinished commands from `seq` on (that command first), in order, at most `limit`:
 * the candidates of a run (see src/commands/apply-run.ts).
 */
export async function loadRun(em: Em, partnerId: string, seq: string, limit: number): Promise<(CommandRow & { confirmed: boolean })[]> {
  return em.getKysely().selectFrom('command')
    .select(['id', 'seq', 'partner_id', 'type', 'payload', 'state', 'result', 'error', 'issued_at', 'items_total'])
    .select(sql<boolean>`enqueued_at is not null or created_at < now() - make_interval(secs => ${CONFIRMATION_GRACE_SECONDS})`.as('confirmed'))
    .where('partner_id', '=', partnerId).where('seq', '>=', seq).where(isUnfinished)
    .orderBy('seq').limit(limit)
    .$castTo<CommandRow & { confirmed: boolean }>()
    .execute();
}

/**
 * Locks the commands of a run in their order for the rest of the transaction; returns the ids of
 * those still unfinished (a command settled meanwhile, by a run that got there first, is left out).
 */
export async function lockRun(tx: Em, commandIds: readonly string[]): Promise<string[]> {
  const r = await rows(tx, sql<{ id: string }>`select id from command
     where id in (select jsonb_array_elements_text(${jsonb(commandIds)})) and state in ('waiting', 'active')
     order by seq for update`);
  return r.map((x) => x.id);
}

/** An item decided by a run: written with its result (its command has no items yet). */
export interface DecidedItem { commandId: string; idx: number; hubId: string; email: string; state: 'completed' | 'failed'; outcome: string | null; error: StoredError | null }

/** Writes the items of a run's pair commands with their results, in one statement (a completed item is left alone). */
export async function insertDecidedItems(tx: Em, items: readonly DecidedItem[]): Promise<void> {
  if (!items.length) return;
  const set = items.map((i) => ({ command_id: i.commandId, idx: i.idx, hub_id: i.hubId, email: i.email, state: i.state, outcome: i.outcome, error: i.error }));
  await run(tx, sql`insert into command_item (command_id, idx, hub_id, email, state, outcome, error, attempts, finished_at)
    select t.command_id, t.idx, t.hub_id, t.email, t.state, t.outcome, t.error, 1, now()
      from jsonb_to_recordset(${jsonb(set)}) as t(command_id text, idx int, hub_id text, email text, state text, outcome text, error jsonb)
    on conflict (command_id, idx) do update set state = excluded.state, outcome = excluded.outcome, error = excluded.error,
       attempts = command_item.attempts + 1, finished_at = now()
     where command_item.state <> 'completed'`);
}

/** A command as a run settles it. `counted`: its attempt was already counted (startCommand); `itemsTotal`: a pair command's pairs. */
export interface RunSettlement { id: string; state: 'completed' | 'failed'; result: Record<string, unknown> | null; error: StoredError | null; itemsTotal: number; counted: boolean }

/**
 * Settles the commands of a run (state, result, error, attempt, start and finish; a pair command
 * also its item count and range size), in one statement.
 */
export async function settleRun(tx: Em, settled: readonly RunSettlement[]): Promise<void> {
  if (!settled.length) return;
  const set = settled.map((c) => ({ id: c.id, state: c.state, result: c.result, error: c.error, items_total: c.itemsTotal, counted: c.counted }));
  await run(tx, sql`update command c set state = t.state, result = t.result, error = t.error, finished_at = now(), started_at = coalesce(c.started_at, now()),
       attempts = c.attempts + case when t.counted then 0 else 1 end,
       items_total = case when t.items_total > 0 then t.items_total else c.items_total end,
       range_size = case when t.items_total > 0 and c.range_size = 0 then t.items_total else c.range_size end
      from jsonb_to_recordset(${jsonb(set)}) as t(id text, state text, result jsonb, error jsonb, items_total int, counted boolean)
     where c.id = t.id`);
}

/**
 * A savepoint of a run that applies its commands one by one: a command refused after it wrote
 * something is rolled back alone (`rollbackToCommandSavepoint`), the others stay.
 */
export async function commandSavepoint(tx: Em): Promise<void> {
  await run(tx, sql`savepoint run_command`);
}

/** The command applied: its savepoint is released. */
export async function releaseCommandSavepoint(tx: Em): Promise<void> {
  await run(tx, sql`release savepoint run_command`);
}

/** The command was refused: what it wrote is undone, the transaction goes on. */
export async function rollbackToCommandSavepoint(tx: Em): Promise<void> {
  await run(tx, sql`rollback to savepoint run_command`);
}

// ---- pair commands: fan-out ---------------------------------------------------------------------

/**
 * Writes a command's items once (client × employee, in order: `idx` is the position in `pairs`),
 * fixes its item count and range size at the first fan-out, and returns the range size and the
 * open items. Runs in the caller's transaction, with the command row locked first.
 */
export async function writeItems(tx: Em, commandId: string, pairs: readonly (readonly [hubId: string, email: string])[], rangeSize: number): Promise<{ rangeSize: number; open: number[] }> {
  await run(tx, sql`select 1 from command where id = ${commandId} for update`);
  await run(tx, sql`insert into command_item (command_id, idx, hub_id, email)
    select ${commandId}, (t.ord - 1)::int, t.pair->>0, t.pair->>1 from jsonb_array_elements(${jsonb(pairs)}) with ordinality as t(pair, ord)
    on conflict do nothing`);
  // The range size is fixed at the first fan-out: a replay, or the reconciler, finds the same range jobs.
  const c = await firstRow(tx, sql<{ range_size: number }>`update command set items_total = case when items_total = 0 then ${pairs.length}::int else items_total end,
      range_size = case when range_size = 0 then ${rangeSize}::int else range_size end
    where id = ${commandId} returning range_size`);
  const open = await openItems(tx, commandId);
  return { rangeSize: c!.range_size, open };
}

/** The open (waiting or active) items of a command, optionally only those of `[from, to)`, by idx. */
export async function openItems(em: Em, commandId: string, range?: { from: number; to: number }): Promise<number[]> {
  const r = await em.getKysely().selectFrom('command_item').select('idx')
    .where('command_id', '=', commandId)
    .$if(range !== undefined, (q) => q.where('idx', '>=', range!.from).where('idx', '<', range!.to))
    .where(isUnfinished)
    .orderBy('idx')
    .execute();
  return r.map((i) => i.idx);
}

// ---- pair commands: applying items -------------------------------------------------------------

/** An item with what applying it needs from its command. */
export interface ItemRow {
  command_id: string;
  idx: number;
  partner_id: string;
  type: string;
  issued_at: string | null;
  hub_id: string;
  email: string;
  state: CommandState;
  outcome: string | null;
}

/** Loads many items (of any commands) in one query. */
export async function loadItems(em: Em, refs: readonly { commandId: string; idx: number }[]): Promise<ItemRow[]> {
  return rows(em, sql<ItemRow>`select i.command_id, i.idx, c.partner_id, c.type, c.issued_at, i.hub_id, i.email, i.state, i.outcome
      from jsonb_to_recordset(${jsonb(refs.map((r) => ({ command_id: r.commandId, idx: r.idx })))}) as t(command_id text, idx int)
      join command_item i on i.command_id = t.command_id and i.idx = t.idx
      join command c on c.id = i.command_id`);
}

export interface ItemResult { commandId: string; idx: number; state: 'completed' | 'failed'; outcome: string | null; error: StoredError | null }

/** Records the results of many items in one statement (a completed item is left alone); returns the items it recorded. */
export async function recordItemResults(tx: Em, results: readonly ItemResult[]): Promise<{ command_id: string; idx: number }[]> {
  const set = results.map((r) => ({ command_id: r.commandId, idx: r.idx, state: r.state, outcome: r.outcome, error: r.error }));
  return rows(tx, sql<{ command_id: string; idx: number }>`update command_item i set state = t.state, outcome = t.outcome, error = t.error, attempts = i.attempts + 1, finished_at = now()
      from jsonb_to_recordset(${jsonb(set)}) as t(command_id text, idx int, state text, outcome text, error jsonb)
     where i.command_id = t.command_id and i.idx = t.idx and i.state <> 'completed'
     returning i.command_id, i.idx`);
}

/** An open item failed after its job used up its attempts (no attempt is counted: none was recorded). */
export async function failOpenItem(em: Em, commandId: string, idx: number, error: StoredError): Promise<void> {
  await em.getKysely().updateTable('command_item')
    .set({ state: 'failed', error: jsonb(error), finished_at: sql`now()` })
    .where('command_id', '=', commandId).where('idx', '=', idx).where(isUnfinished)
    .execute();
}

/** The outcome stored on an item. */
export async function itemOutcome(em: Em, commandId: string, idx: number): Promise<string | null> {
  const r = await em.getKysely().selectFrom('command_item').select('outcome').where('command_id', '=', commandId).where('idx', '=', idx).executeTakeFirst();
  return r?.outcome ?? null;
}

/** The error of an item that is settled failed (null: it is not). */
export async function failedItemError(em: Em, commandId: string, idx: number): Promise<StoredError | null> {
  const r = await em.getKysely().selectFrom('command_item').select('error').where('command_id', '=', commandId).where('idx', '=', idx).where('state', '=', 'failed')
    .$castTo<{ error: StoredError | null }>()
    .executeTakeFirst();
  return r?.error ?? null;
}

/** Whether any item of the command is still open. */
export async function hasOpenItems(em: Em, commandId: string): Promise<boolean> {
  const r = await firstRow(em, sql<{ open: boolean }>`select exists (select 1 from command_item where command_id = ${commandId} and state in ('waiting', 'active')) as open`);
  return r?.open !== false;
}

/** A pair command as {@link settleFromItems} leaves it: the state it had before, its place in the partner's order, and what it is now. */
export interface SettledCommand { before: CommandState; partner_id: string; seq: string; state: CommandState; type: string; result: unknown; error: StoredError | null }

/**
 * Settles a pair command from its items (state, outcome counts, first failure), computed, not
 * incremented: safe to run concurrently and repeatedly. Returns the state the command had before,
 * its place in the partner's order and its settled state (`before` is exact when the caller holds
 * the command's row lock, see lockCommand).
 */
export async function settleFromItems(em: Em, commandId: string): Promise<SettledCommand | undefined> {
  return firstRow(em, sql<SettledCommand>`with before as (select state from command where id = ${commandId}),
        k as (select case when state = 'failed' then 'failed' else coalesce(outcome, state) end as k, count(*) as n
                from command_item where command_id = ${commandId} group by 1)
   update command set
     state = case when exists (select 1 from k where k.k = 'failed') then 'failed' else 'completed' end,
     finished_at = now(),
     result = (select jsonb_build_object('pairs', sum(n), 'outcomes', jsonb_object_agg(k, n), 'outcome', case when count(*) = 1 then max(k) else 'mixed' end) from k),
     error = (select error from command_item where command_id = ${commandId} and state = 'failed' order by idx limit 1)
   where id = ${commandId} and items_total > 0
   returning (select state from before) as before, partner_id, seq, state, type, result, error`);
}

// ---- the reconciler ----------------------------------------------------------------------------

/** Unfinished commands accepted more than `graceSec` ago, oldest first. */
export async function unfinishedCommands(em: Em, graceSec: number, limit: number): Promise<{ id: string; seq: string; type: string; items_total: number }[]> {
  return rows(em, sql<{ id: string; seq: string; type: string; items_total: number }>`select id, seq::text as seq, type, items_total from command
    where state in ('waiting', 'active') and created_at < now() - make_interval(secs => ${graceSec}::double precision) order by created_at limit ${limit}::int`);
}

/** The open items of these commands, with what their jobs are named and ranged by. */
export async function openItemsOf(em: Em, commandIds: readonly string[], limit: number): Promise<{ command_id: string; idx: number; type: string; items_total: number; range_size: number }[]> {
  return rows(em, sql<{ command_id: string; idx: number; type: string; items_total: number; range_size: number }>`select i.command_id, i.idx, c.type, c.items_total, c.range_size
      from command_item i join command c on c.id = i.command_id
     where i.command_id in (select jsonb_array_elements_text(${jsonb(commandIds)})) and i.state in ('waiting', 'active') limit ${limit}::int`);
}
