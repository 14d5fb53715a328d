import { sql } from 'kysely';
import { jsonb, preparedRows } from './exec.js';
import type { Em } from './orm.js';

/**
 * The command log (tables `command`, `command_item`): every accepted command, the source of truth
 * for its status. Timestamps are read as Postgres writes them (strings: the driver does not parse
 * them), so their row fields are `string`.
 */

export type CommandState = 'waiting' | 'active' | 'completed' | 'failed';

/** An error as stored on a command or an item: a stable code and a message. */
export interface StoredError { code: string; message: string }

// ---------------------------------------------------------------------------------------------
// Intake and reads (commands/log.ts, the HTTP layer, the ops CLI)
// ---------------------------------------------------------------------------------------------

/** A command as the intake writes it (`issuedAt` an ISO instant). */
export interface NewCommand {
  id: string;
  partnerId: string;
  type: string;
  payload: Record<string, unknown>;
  bodyHash: string;
  issuedAt: string | null;
  tokenName: string | null;
}

/** One JSON parameter holding a set of ids, as a predicate on `id`. */
const idIn = (ids: readonly string[]) => sql<boolean>`id in (select jsonb_array_elements_text(${jsonb(ids)}))`;

/**
 * The unconfirmed commands among `ids` that no transaction holds: a row a worker has locked is
 * being applied by its own job already, where a confirmation changes nothing, and waiting for that
 * worker's transaction would hold the intake's replies (the confirmations ride on the next group's
 * INSERT). A row left unconfirmed this way counts as confirmed after the grace (see loadRun).
 */
const unconfirmedIn = (ids: readonly string[]) =>
  sql<boolean>`id in (select id from command where ${idIn(ids)} and enqueued_at is null for update skip locked)`;

/** What decides whether a known commandId may be accepted again: its owner and its body. */
export interface CommandKey { id: string; partnerId: string; bodyHash: string; state: CommandState }

/**
 * How many commands the log holds, as far as this process has seen: the highest `seq` its inserts
 * returned (the log only grows), per database (keyed by the ORM's connection).
 */
const logSizes = new WeakMap<object, number>();

function sawSeq(em: Em, seq: string): void {
  const n = Number(seq);
  const key = em.getConnection();
  if (n > (logSizes.get(key) ?? 0)) logSizes.set(key, n);
}

/**
 * The name of insertCommands' named statement (preparedRows): its variant (its text) and the log's
 * size class, which changes each time the log has doubled, so that every connection plans it again.
 * Postgres keeps a named statement's generic plan until the table's statistics or definition change,
 * and the cheapest plan of the confirmation and the lookup depends on the size of `command`: while
 * it is small, a scan of the table matched against the ids; an index lookup per id once it has
 * grown. With one name, on a fresh database (as in the bench), the scan stayed: the intake's Postgres
 * CPU per command went from ~0.13 to ~2 ms within a minute. Renamed at each doubling, a plan never
 * serves a log more than twice the size it was made for. Measured against the unnamed statement
 * (planned at every group), warm, interleaved runs: Postgres CPU per command −38 % at 32
 * connections (~0.16 → ~0.10 ms), −19 % at 512; with it the API thread's CPU per command −15 % at 32
 * (no Parse, no text to send, no Kysely round of the driver).
 */
function insertName(em: Em, variant: string): string {
  return `command_insert${variant}_${Math.floor(Math.log2((logSizes.get(em.getConnection()) ?? 0) + 1))}`;
}

/**
 * Inserts commands in the order given (their `seq`, each partner's order of application, follows
 * it), the whole set as one JSON parameter; an id that is already logged is left as it is. Returns
 * the ids this call inserted, with their `seq` (a bigint, as a string), and, read by the same
 * statement, the keys of the ids that were logged before it began (so that a group written without
 * a transaction needs no second statement, whose failure would leave its new rows unanswered). An
 * id committed by another intake between this statement's start and its insert is in neither list
 * (see findCommandKeys). `confirm`: commands whose jobs are now in Redis, confirmed by the same
 * statement (see markEnqueued), which saves a round trip and a commit per group of the intake.
 * Outside a transaction it is a named statement, planned once per connection and size class of the
 * log (insertName).
 */
export async function insertCommands(em: Em, commands: readonly NewCommand[], confirm: readonly string[] = [], lookup: readonly string[] = commands.map((c) => c.id)): Promise<{ created: { id: string; seq: string }[]; known: CommandKey[] }> {
  const set = commands.map((c) => ({
    id: c.id, partner_id: c.partnerId, type: c.type, payload: c.payload, body_hash: c.bodyHash, issued_at: c.issuedAt, token_name: c.tokenName,
  }));
  // A data-modifying WITH runs to completion whether or not the query reads it; the confirmation
  // touches rows committed earlier, never the ones this statement inserts, and the final SELECT
  // sees the table as it was when the statement began (not the rows `ins` adds).
  const confirmed = confirm.length ? sql`confirmed as (update command set enqueued_at = now() where ${unconfirmedIn(confirm)}),` : sql``;
  // Only ids that may be logged already are looked up (`lookup`: the intake passes the ids its
  // callers chose; the others are fresh UUIDs): the lookup cost the intake bench ~10 % of its single
  // commands per second when every id was looked up.
  const known = lookup.length
    ? sql`union all
    select id, null, partner_id, body_hash, state from command
     where id = any(array(select jsonb_array_elements_text(${jsonb(lookup)})))`
    : sql``;
  const query = sql<{ id: string; seq: string | null; partner_id: string | null; body_hash: string | null; state: CommandState | null }>`
    with ${confirmed} ins as (
      insert into command (id, partner_id, type, payload, body_hash, issued_at, token_name)
      select t.id, t.partner_id, t.type, t.payload, t.body_hash, t.issued_at, t.token_name
        from jsonb_to_recordset(${jsonb(set)})
          as t(id text, partner_id text, type text, payload jsonb, body_hash text, issued_at timestamptz, token_name text)
      on conflict (id) do nothing
      returning id, seq::text as seq)
    select id, seq, null::text as partner_id, null::text as body_hash, null::text as state from ins
    ${known}`;
  const r = await preparedRows(em, insertName(em, `${confirm.length ? '_confirm' : ''}${lookup.length ? '_lookup' : ''}`), query);
  const out: { created: { id: string; seq: string }[]; known: CommandKey[] } = { created: [], known: [] };
  for (const x of r) {
    if (x.seq !== null) {
      out.created.push({ id: x.id, seq: x.seq });
      sawSeq(em, x.seq);
    }
    else out.known.push({ id: x.id, partnerId: x.partner_id!, bodyHash: x.body_hash!, state: x.state! });
  }
  return out;
}

/** The owner, body hash and state of the commands among `ids` that are logged (committed by now). */
export async function findCommandKeys(em: Em, ids: readonly string[]): Promise<CommandKey[]> {
  if (!ids.length) return [];
  return em.getKysely()
    .selectFrom('command')
    .select(['id', 'partner_id as partnerId', 'body_hash as bodyHash', 'state'])
    .where(idIn(ids))
    .$narrowType<{ state: CommandState }>()
    .execute();
}

/**
 * Confirms that the jobs of these commands are in Redis (`enqueued_at`): from then on the intake
 * will not take them back, so a partner's run may apply them (see `loadRun`). One statement for a
 * whole group; rows a worker holds are skipped rather than waited for (see unconfirmedIn).
 */
export async function markEnqueued(em: Em, ids: readonly string[]): Promise<void> {
  if (!ids.length) return;
  await em.getKysely().updateTable('command').set({ enqueued_at: sql`now()` }).where(unconfirmedIn(ids)).execute();
}

/**
 * Takes back commands that no worker has started (their jobs could not be enqueued). A command
 * that a worker already picked up is kept.
 */
export async function deleteWaitingCommands(em: Em, ids: readonly string[]): Promise<void> {
  if (!ids.length) return;
  await em.getKysely().deleteFrom('command').where(idIn(ids)).where('state', '=', 'waiting').execute();
}

/** A logged command. */
export interface CommandRow {
  id: string;
  partnerId: string;
  type: string;
  state: CommandState;
  attempts: number;
  payload: Record<string, unknown>;
  tokenName: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  issuedAt: string | null;
  result: unknown;
  error: StoredError | null;
}

/** One logged command, or undefined. */
export async function findCommand(em: Em, id: string): Promise<CommandRow | undefined> {
  return em.getKysely()
    .selectFrom('command')
    .select(['id', 'partner_id as partnerId', 'type', 'state', 'attempts', 'payload', 'token_name as tokenName', 'result', 'error',
      'created_at as createdAt', 'started_at as startedAt', 'finished_at as finishedAt', 'issued_at as issuedAt'])
    .where('id', '=', id)
    .$castTo<CommandRow>()
    .executeTakeFirst();
}

/** One pair of a pair command. */
export interface CommandItemRow { hubId: string; email: string; state: CommandState; outcome: string | null; error: StoredError | null }

/** The pairs of a pair command, in the command's order. */
export async function listCommandItems(em: Em, commandId: string): Promise<CommandItemRow[]> {
  return em.getKysely()
    .selectFrom('command_item')
    .select(['hub_id as hubId', 'email', 'state', 'outcome', 'error'])
    .where('command_id', '=', commandId)
    .orderBy('idx')
    .$narrowType<{ state: CommandState }>()
    .execute();
}

/** A command applied at once, outside the queue (a grant link), logged as completed. */
export interface AppliedCommand {
  id: string;
  partnerId: string;
  type: string;
  payload: Record<string, unknown>;
  bodyHash: string;
  tokenName: string;
  result: Record<string, unknown>;
}

/** Logs a command that was applied in the caller's transaction; an id already logged is left as it is. */
export async function insertAppliedCommand(em: Em, c: AppliedCommand): Promise<void> {
  await em.getKysely()
    .insertInto('command')
    .values({
      id: c.id,
      partner_id: c.partnerId,
      type: c.type,
      payload: c.payload,
      body_hash: c.bodyHash,
      token_name: c.tokenName,
      state: 'completed',
      attempts: 1,
      result: c.result,
      started_at: sql`now()`,
      finished_at: sql`now()`,
    })
    .onConflict((oc) => oc.column('id').doNothing())
    .execute();
}
