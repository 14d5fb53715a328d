import { sql } from 'kysely';
import type { Em } from './orm.js';
import { jsonb, rows, run } from './exec.js';
import type { StoredError } from './command-log.js';

/**
 * The outbox: one row per email to send, written in the transaction that decided it, once-only by
 * its notification key; sent (or failed) by the mail worker. `id` is a bigint: a string here.
 */

export type { StoredError } from './command-log.js';

/** The notification key of a pair's grant email: once per command and pair. */
export const grantEmailKey = (p: { commandId: string; hubId: string; email: string }) => `access.pending:${p.commandId}:${p.hubId}:${p.email}`;
/** {@link grantEmailKey} over a `command_item` row aliased `i`, in SQL. */
const grantEmailKeyOfItem = sql`'access.pending:' || i.command_id || ':' || i.hub_id || ':' || i.email`;

/**
 * Writes an outbox row in the caller's transaction. The notification key makes it once-only:
 * writing the same key again returns null and sends nothing.
 */
export async function insertOutbox(tx: Em, row: { key: string; kind: string; partnerId: string; payload: Record<string, unknown> }): Promise<string | null> {
  const r = await tx.getKysely().insertInto('outbox')
    .values({ notification_key: row.key, kind: row.kind, partner_id: row.partnerId, payload: jsonb(row.payload) })
    .onConflict((oc) => oc.column('notification_key').doNothing())
    .returning('id')
    .executeTakeFirst();
  return r ? String(r.id) : null;
}

/** An outbox row with everything its email names. */
export interface OutboxRow {
  id: string;
  notification_key: string;
  kind: string;
  partner_id: string;
  payload: Record<string, string>;
  state: 'pending' | 'sent' | 'failed';
  error: StoredError | null;
  partner_name: string | null;
  team: Record<string, { name: string; email: string }> | null;
  client_name: string | null;
  contact_email: string | null;
  locale: string | null;
  employee_name: string | null;
}

/** Outbox rows (any order; unknown ids are left out) with their partner, client and employee, in one query. */
export async function loadOutbox(em: Em, ids: readonly string[]): Promise<OutboxRow[]> {
  return rows(em, sql<OutboxRow>`select o.id, o.notification_key, o.kind, o.partner_id, o.payload, o.state, o.error,
         p.name as partner_name, p.team, c.name as client_name, c.contact_email, c.locale, e.name as employee_name
    from outbox o
    left join partner p on p.id = o.partner_id
    left join client c on o.kind = 'access.pending' and c.partner_id = o.partner_id and c.hub_id = o.payload->>'hubId'
    left join employee e on o.kind = 'access.pending' and e.partner_id = o.partner_id and e.email = o.payload->>'email'
   where o.id in (select jsonb_array_elements_text(${jsonb(ids)})::bigint)`);
}

/** Marks rows sent with their Message-ID, many in one statement. */
export async function markSent(em: Em, sent: readonly { id: string; messageId: string }[]): Promise<void> {
  if (!sent.length) return;
  await run(em, sql`update outbox o set state = 'sent', sent_at = now(), message_id = t.message_id, error = null, attempts = o.attempts + 1
      from jsonb_to_recordset(${jsonb(sent.map((r) => ({ id: r.id, message_id: r.messageId })))}) as t(id bigint, message_id text) where o.id = t.id`);
}

/** A send attempt failed: the error is kept; with `failed`, the row is failed for good. */
export async function recordSendFailure(em: Em, id: string, error: StoredError, failed: boolean): Promise<void> {
  await em.getKysely().updateTable('outbox')
    .set((eb) => ({ error: jsonb(error), attempts: eb('attempts', '+', 1), ...(failed ? { state: 'failed' } : {}) }))
    .where('id', '=', id)
    .execute();
}

/** A pending row fails for good without another attempt (its job used up its attempts). */
export async function failPending(em: Em, id: string, error: StoredError): Promise<void> {
  await em.getKysely().updateTable('outbox').set({ state: 'failed', error: jsonb(error) })
    .where('id', '=', id).where('state', '=', 'pending')
    .execute();
}

/**
 * Rows an inline sender did not send, handed to mail jobs in one statement: their claim is
 * dropped, the attempts they had counted, and a failure (and its error) recorded. Rows no longer
 * pending are left alone.
 */
export async function handOver(em: Em, rowsToHand: readonly { id: string; state: 'pending' | 'failed'; error: StoredError | null; tried: number }[]): Promise<void> {
  await run(em, sql`update outbox o set state = t.state, error = coalesce(t.error, o.error), attempts = o.attempts + t.tried, claimed_until = null
      from jsonb_to_recordset(${jsonb(rowsToHand)}) as t(id bigint, state text, error jsonb, tried int) where o.id = t.id and o.state = 'pending'`);
}

/**
 * Releases the claims on the unsent grant emails of the completed items `[from, to)` of a command
 * whose claim runs out within `endingWithinSecs`; returns the released rows.
 */
export async function releaseClaims(em: Em, range: { commandId: string; from: number; to: number }, endingWithinSecs: number): Promise<string[]> {
  const r = await rows(em, sql<{ id: string }>`update outbox o set claimed_until = null
      from command_item i
     where i.command_id = ${range.commandId} and i.idx >= ${range.from}::int and i.idx < ${range.to}::int and i.state = 'completed'
       and o.notification_key = ${grantEmailKeyOfItem} and o.state = 'pending'
       and o.claimed_until < now() + make_interval(secs => ${endingWithinSecs}::double precision)
     returning o.id`);
  return r.map((x) => String(x.id));
}

/** Pending rows older than `graceSec` that nobody has claimed (or whose claim ran out), oldest first. */
export async function unsentRows(em: Em, graceSec: number, limit: number): Promise<string[]> {
  const r = await rows(em, sql<{ id: string }>`select id from outbox where state = 'pending' and created_at < now() - make_interval(secs => ${graceSec}::double precision)
      and (claimed_until is null or claimed_until < now()) order by id limit ${limit}::int`);
  return r.map((x) => String(x.id));
}
