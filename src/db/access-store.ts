import { sql, type RawBuilder } from 'kysely';
import type { Em } from './orm.js';
import type { AccessFacts, AccessState } from '../domain/access.js';
import type { PairFacts } from '../domain/pair-batch.js';
import { jsonb, rows, run } from './exec.js';

/**
 * Accesses and what guards them: `access` (one row per partner, client and email), `grant_token`
 * (the grant links), `portal_user`, `conflict` (refused pairs), and the (client, email) lock.
 * Set-based: every statement takes its rows as one JSON parameter.
 */

/** One (partner, client, employee) pair. */
export interface PairKey { partnerId: string; hubId: string; email: string }

const iso = (d: Date | null) => d?.toISOString() ?? null;

/**
 * Serialises every operation on each (client, email) across partners for the rest of the
 * transaction: one advisory lock per distinct pair, taken in a stable order (no deadlock between
 * two batches).
 */
export async function lockClientEmails(tx: Em, pairs: readonly { hubId: string; email: string }[]): Promise<void> {
  await run(tx, sql`select count(pg_advisory_xact_lock(k)) from (select distinct hashtextextended(x, 0) as k from jsonb_array_elements_text(${jsonb(pairs.map((p) => `${p.hubId}\n${p.email}`))}) as x order by 1) s`);
}

interface FactsRow {
  i: number;
  employee: { tagged: boolean; status: 'active' | 'removed' } | null;
  client: { status: 'active' | 'terminated' } | null;
  live: string[] | null;
  portal: boolean;
  access: { state: AccessState; last_issued_at: string | null } | null;
}

/**
 * Everything deciding each pair needs, in one query, one entry per pair in order: its employee and
 * client (assigns only, locked `for share`), the partners holding a live access to the client for
 * this email, whether the email is a portal user, and this partner's access row.
 */
export async function loadPairFacts(tx: Em, pairs: readonly (PairKey & { assign: boolean })[]): Promise<PairFacts[]> {
  const set = pairs.map((p, i) => ({ i, partner_id: p.partnerId, hub_id: p.hubId, email: p.email, assign: p.assign }));
  const found = await rows(tx, sql<FactsRow>`select t.i,
       case when t.assign then (select row_to_json(e) from (select tagged, status from employee where partner_id = t.partner_id and email = t.email for share) e) end as employee,
       case when t.assign then (select row_to_json(c) from (select status from client where partner_id = t.partner_id and hub_id = t.hub_id for share) c) end as client,
       (select json_agg(partner_id) from access where hub_id = t.hub_id and email = t.email and state in ('pending', 'active')) as live,
       exists (select 1 from portal_user where hub_id = t.hub_id and email = t.email) as portal,
       (select row_to_json(a) from (select state, last_issued_at from access where partner_id = t.partner_id and hub_id = t.hub_id and email = t.email) a) as access
     from jsonb_to_recordset(${jsonb(set)}) as t(i int, partner_id text, hub_id text, email text, assign boolean)`);
  const facts: PairFacts[] = new Array(pairs.length);
  for (const r of found) {
    facts[r.i] = {
      employee: r.employee,
      client: r.client,
      live: r.live ?? [],
      portal: r.portal,
      access: r.access ? { state: r.access.state, lastIssuedAt: r.access.last_issued_at ? new Date(r.access.last_issued_at) : null } : null,
    };
  }
  return facts;
}

/** This partner's access row for the pair, if any. */
export async function loadAccess(tx: Em, p: PairKey): Promise<AccessFacts | null> {
  const a = await tx.getKysely().selectFrom('access').select(['state', 'last_issued_at'])
    .where('partner_id', '=', p.partnerId).where('hub_id', '=', p.hubId).where('email', '=', p.email)
    .$castTo<{ state: AccessState; last_issued_at: string | null }>()
    .executeTakeFirst();
  return a ? { state: a.state, lastIssuedAt: a.last_issued_at ? new Date(a.last_issued_at) : null } : null;
}

/** An access state to write, by the command that decided it. */
export interface AccessWrite extends PairKey { state: AccessState; issuedAt: Date | null; commandId: string }

/**
 * Writes access states (insert or update), many pairs in one statement. The newest command seen on
 * the pair is kept (`last_issued_at` never goes back), so a late older command is superseded.
 */
export async function upsertAccess(tx: Em, writes: readonly AccessWrite[]): Promise<void> {
  const set = writes.map((w) => ({ partner_id: w.partnerId, hub_id: w.hubId, email: w.email, state: w.state, issued_at: iso(w.issuedAt), command_id: w.commandId }));
  await run(tx, sql`insert into access (partner_id, hub_id, email, state, last_issued_at, command_id)
    select t.partner_id, t.hub_id, t.email, t.state, t.issued_at, t.command_id
      from jsonb_to_recordset(${jsonb(set)}) as t(partner_id text, hub_id text, email text, state text, issued_at timestamptz, command_id text)
    on conflict (partner_id, hub_id, email) do update set
      state = excluded.state, last_issued_at = greatest(access.last_issued_at, excluded.last_issued_at),
      command_id = excluded.command_id, updated_at = now()`);
}

/** Remembers the newest command seen on pairs whose state does not change. */
export async function touchLastIssuedAt(tx: Em, touches: readonly (PairKey & { issuedAt: Date | null })[]): Promise<void> {
  const set = touches.map((w) => ({ partner_id: w.partnerId, hub_id: w.hubId, email: w.email, issued_at: iso(w.issuedAt) }));
  await run(tx, sql`update access a set last_issued_at = greatest(a.last_issued_at, t.issued_at)
      from jsonb_to_recordset(${jsonb(set)}) as t(partner_id text, hub_id text, email text, issued_at timestamptz)
     where a.partner_id = t.partner_id and a.hub_id = t.hub_id and a.email = t.email`);
}

/**
 * The one grant-link expiry: the open links of the pairs in `pairs` (a relation with `partner_id`,
 * `hub_id` and `email` columns) stop working now. A statement, or a CTE of one.
 */
const expireLinksOf = (pairs: RawBuilder<unknown>) => sql`update grant_token g set expires_at = least(g.expires_at, now())
    from ${pairs}
   where g.partner_id = t.partner_id and g.hub_id = t.hub_id and g.email = t.email and g.used_at is null and g.expires_at > now()`;

/** Grant links of revoked or granted pairs stop working (set-based). */
export async function expireGrantLinks(tx: Em, pairs: readonly PairKey[]): Promise<void> {
  const set = pairs.map((p) => ({ partner_id: p.partnerId, hub_id: p.hubId, email: p.email }));
  await run(tx, expireLinksOf(sql`jsonb_to_recordset(${jsonb(set)}) as t(partner_id text, hub_id text, email text)`));
}

/** A grant link to create, and the email that carries it. */
export interface GrantLink extends PairKey { tokenHash: string; notificationKey: string; payload: Record<string, unknown> }

/**
 * Creates grant links and their `access.pending` outbox rows, many in one statement. The outbox row
 * is once-only by its notification key (an existing key writes nothing and returns nothing). With
 * `claimSecs`, the rows are written claimed for that long (the caller sends them right after its
 * commit). Returns the outbox rows written.
 */
export async function createGrantLinks(tx: Em, links: readonly GrantLink[], ttlDays: number, claimSecs: number | null): Promise<{ id: string; notification_key: string }[]> {
  const set = links.map((l) => ({ token_hash: l.tokenHash, partner_id: l.partnerId, hub_id: l.hubId, email: l.email, key: l.notificationKey, payload: l.payload }));
  return rows(tx, sql<{ id: string; notification_key: string }>`with t as (select * from jsonb_to_recordset(${jsonb(set)}) as t(token_hash text, partner_id text, hub_id text, email text, key text, payload jsonb)),
          g as (insert into grant_token (token_hash, partner_id, hub_id, email, expires_at)
                select token_hash, partner_id, hub_id, email, now() + make_interval(days => ${ttlDays}::int) from t)
     insert into outbox (notification_key, kind, partner_id, payload, claimed_until)
     select key, 'access.pending', partner_id, payload, now() + make_interval(secs => ${claimSecs}::double precision) from t
     on conflict (notification_key) do nothing returning id, notification_key`);
}

/** Records refused pairs (EMAIL_LINKED_TO_OTHER_PARTNER) for the partner's conflict list; once per command and pair. */
export async function recordConflicts(tx: Em, pairs: readonly (PairKey & { commandId: string })[]): Promise<void> {
  const set = pairs.map((p) => ({ partner_id: p.partnerId, hub_id: p.hubId, email: p.email, command_id: p.commandId }));
  await run(tx, sql`insert into conflict (partner_id, hub_id, email, command_id)
    select partner_id, hub_id, email, command_id from jsonb_to_recordset(${jsonb(set)}) as t(partner_id text, hub_id text, email text, command_id text)
    on conflict do nothing`);
}

/** Emails become portal users of a client (already one: unchanged). */
export async function addPortalUsers(tx: Em, hubId: string, emails: readonly string[]): Promise<void> {
  await run(tx, sql`insert into portal_user (hub_id, email) select ${hubId}, jsonb_array_elements_text(${jsonb(emails)}) on conflict do nothing`);
}

/**
 * Revokes, in one statement, every live access of the partner matching the filter (an employee on
 * every client, or every employee on a client), except pairs that a newer command already touched,
 * and expires the open grant links of exactly the revoked pairs. Returns the revoked pairs.
 */
export async function revokeAllAccess(tx: Em, q: { partnerId: string; email?: string; hubId?: string; commandId: string; issuedAt: Date | null }): Promise<{ hub_id: string; email: string }[]> {
  const issuedAt = iso(q.issuedAt);
  const byEmail = q.email !== undefined ? sql`and email = ${q.email}` : sql``;
  const byHub = q.hubId !== undefined ? sql`and hub_id = ${q.hubId}` : sql``;
  const notNewer = issuedAt !== null ? sql`and (last_issued_at is null or last_issued_at <= ${issuedAt}::timestamptz)` : sql``;
  return rows(tx, sql<{ hub_id: string; email: string }>`with revoked as (
       update access set state = 'revoked', updated_at = now(), command_id = ${q.commandId},
              last_issued_at = greatest(last_issued_at, ${issuedAt}::timestamptz)
        where partner_id = ${q.partnerId} and state <> 'revoked' ${byEmail} ${byHub} ${notNewer}
        returning partner_id, hub_id, email),
     expired as (${expireLinksOf(sql`revoked t`)})
     select hub_id, email from revoked`);
}
