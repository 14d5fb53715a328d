import { sql } from 'kysely';
import type { Em } from './orm.js';
import { jsonb, rows, run } from './exec.js';
import type { StoredError } from './command-log.js';

/**
 * The outbox: one row per email to send, written in the transaction that decided it, once-only by
 * its notification key; sent (or failed) by the mail worker. `id` is a bigint: a string here.
 */

export type { StoredError } from './command-log.js';

/** The outbox kind of an access-request email (payload: `{partnerId, hubId, pairs: [{email, seq}]}`, never a token). */
export const REQUEST_EMAIL_KIND = 'access.request';
/**
 * The notification key of an access-request email: once per command and client (the digest of
 * every pair that command newly asks for at that client). A command's pairs of one client are
 * decided together (one range, or one run), so this is the only key in the ordinary case; see
 * {@link laterRequestEmailKey} for the others.
 */
export const requestEmailKey = (p: { commandId: string; hubId: string }) => `${REQUEST_EMAIL_KIND}:${p.commandId}:${p.hubId}`;
/**
 * The key of a later email of the same command and client: pairs decided after that client's
 * digest was written (a pair refused at first and applied by its own job or an operator's retry, a
 * range split pair by pair). `idx`: the item of the first pair it names.
 */
export const laterRequestEmailKey = (p: { commandId: string; hubId: string; idx: number }) => `${requestEmailKey(p)}:${p.idx}`;
/** Whether a request email of the `command_item` row aliased `i` has the key of the outbox row aliased `o` (either form), in SQL. */
const isRequestEmailOfItem = sql`o.notification_key in ('access.request:' || i.command_id || ':' || i.hub_id, 'access.request:' || i.command_id || ':' || i.hub_id || ':' || i.idx)`;

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

/**
 * An outbox row with everything its email names: the partner (name, team, where and in which
 * language it is told), and for a row whose payload names a client (`hubId`) that client as the
 * partner lists it and as the platform knows it (its contact and locale), and the names of the
 * employees the payload names (`email`, or `pairs[].email`).
 */
export interface OutboxRow {
  id: string;
  notification_key: string;
  kind: string;
  partner_id: string;
  payload: Record<string, unknown>;
  state: 'pending' | 'sent' | 'failed';
  error: StoredError | null;
  partner_name: string | null;
  team: Record<string, { name: string; email: string }> | null;
  notify_email: string | null;
  partner_locale: string | null;
  client_name: string | null;
  /** The platform's contact of the client (null: none known, or no client named). */
  contact_email: string | null;
  /** The client's locale as the platform knows it. */
  locale: string | null;
  /** Employee email → name, for the employees the payload names that have a name. */
  employee_names: Record<string, string> | null;
}

/** Outbox rows (any order; unknown ids are left out) with their partner, client and employees, in one query. */
export async function loadOutbox(em: Em, ids: readonly string[]): Promise<OutboxRow[]> {
  return rows(em, sql<OutboxRow>`select o.id, o.notification_key, o.kind, o.partner_id, o.payload, o.state, o.error,
         p.name as partner_name, p.team, p.notify_email, p.locale as partner_locale,
         c.name as client_name, ca.contact_email, ca.locale,
         (select json_object_agg(e.email, e.name) from employee e
           where e.partner_id = o.partner_id and e.name is not null
             and e.email in (select x->>'email' from jsonb_array_elements(case when jsonb_typeof(o.payload->'pairs') = 'array' then o.payload->'pairs' else '[]'::jsonb end) x
                             union all select o.payload->>'email')) as employee_names
    from outbox o
    left join partner p on p.id = o.partner_id
    left join client c on c.partner_id = o.partner_id and c.hub_id = o.payload->>'hubId'
    left join client_account ca on ca.hub_id = o.payload->>'hubId'
   where o.id in (select jsonb_array_elements_text(${jsonb(ids)})::bigint)`);
}

/** Marks rows sent with their Message-ID, many in one statement. */
export async function markSent(em: Em, sent: readonly { id: string; messageId: string }[]): Promise<void> {
  if (!sent.length) return;
  // `- 'token'`: a row written before grant tokens were derived at render held its link's token; once sent, it is erased.
  await run(em, sql`update outbox o set state = 'sent', sent_at = now(), message_id = t.message_id, error = null, attempts = o.attempts + 1, payload = o.payload - 'token'
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
       and ${isRequestEmailOfItem} and o.state = 'pending'
       and o.claimed_until < now() + make_interval(secs => ${endingWithinSecs}::double precision)
     returning o.id`);
  return r.map((x) => String(x.id));
}

/**
 * Releases the claims on the partner's unsent emails whose claim runs out within
 * `endingWithinSecs` (their sender's inline start deadline has passed, so it starts no send for
 * them any more): the run that claimed them was taken over. Returns the released rows.
 */
export async function releasePartnerClaims(em: Em, partnerId: string, endingWithinSecs: number): Promise<string[]> {
  const r = await rows(em, sql<{ id: string }>`update outbox o set claimed_until = null
     where o.state = 'pending' and o.partner_id = ${partnerId} and o.claimed_until is not null
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
