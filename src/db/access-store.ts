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
  access: { state: AccessState; last_issued_at: string | null; request_seq: number; last_email_at: string | null; access_until: string | null } | null;
  manual: boolean | null;
  has_contact: boolean | null;
  access_until: string | null;
}

/** `accessUntil` of a command: an ISO instant, or YYYY-MM-DD meaning 00:00 UTC that day. */
const instantOf = (v: string | null): Date | null => (v === null ? null : new Date(/^\d{4}-\d{2}-\d{2}$/.test(v) ? `${v}T00:00:00Z` : v));

/**
 * Everything deciding each pair needs, in one query, one entry per pair in order: its employee and
 * client (assigns only, locked `for share` unless `lock: false`, as a read-only transaction such as
 * the dry run's must read them), the partners holding a live access to the client for
 * this email, whether the email is a portal user as the platform reports them, this partner's
 * access row, and (assigns only) the partner's request mode, whether the platform knows the
 * client's contact, and the end the pair's command asks for.
 */
export async function loadPairFacts(tx: Em, pairs: readonly (PairKey & { assign: boolean; commandId?: string })[], opts: { lock?: boolean } = {}): Promise<PairFacts[]> {
  const set = pairs.map((p, i) => ({ i, partner_id: p.partnerId, hub_id: p.hubId, email: p.email, assign: p.assign, command_id: p.commandId ?? null }));
  const forShare = opts.lock === false ? sql`` : sql`for share`;
  const found = await rows(tx, sql<FactsRow>`select t.i,
       case when t.assign then (select row_to_json(e) from (select tagged, status from employee where partner_id = t.partner_id and email = t.email ${forShare}) e) end as employee,
       case when t.assign then (select row_to_json(c) from (select status from client where partner_id = t.partner_id and hub_id = t.hub_id ${forShare}) c) end as client,
       (select json_agg(partner_id) from access where hub_id = t.hub_id and email = t.email and state in ('pending', 'active')) as live,
       exists (select 1 from portal_user where hub_id = t.hub_id and email = t.email) as portal,
       (select row_to_json(a) from (select state, last_issued_at, request_seq, last_email_at, access_until from access where partner_id = t.partner_id and hub_id = t.hub_id and email = t.email) a) as access,
       case when t.assign then (select access_requests = 'manual' from partner where id = t.partner_id) end as manual,
       case when t.assign then (select contact_email is not null from client_account where hub_id = t.hub_id) end as has_contact,
       case when t.assign then (select payload->>'accessUntil' from command where id = t.command_id) end as access_until
     from jsonb_to_recordset(${jsonb(set)}) as t(i int, partner_id text, hub_id text, email text, assign boolean, command_id text)`);
  const facts: PairFacts[] = new Array(pairs.length);
  for (const r of found) {
    facts[r.i] = {
      employee: r.employee,
      client: r.client,
      live: r.live ?? [],
      portal: r.portal,
      access: r.access ? {
        state: r.access.state, lastIssuedAt: r.access.last_issued_at ? new Date(r.access.last_issued_at) : null,
        requestSeq: r.access.request_seq, lastEmailAt: r.access.last_email_at ? new Date(r.access.last_email_at) : null,
        accessUntil: r.access.access_until ? new Date(r.access.access_until) : null,
      } : null,
      manualRequests: r.manual === true,
      clientHasContact: r.has_contact === true,
      accessUntil: instantOf(r.access_until),
    };
  }
  return facts;
}

/** This partner's access row for the pair, if any. */
export async function loadAccess(tx: Em, p: PairKey): Promise<AccessFacts | null> {
  const a = await tx.getKysely().selectFrom('access').select(['state', 'last_issued_at', 'request_seq', 'last_email_at'])
    .where('partner_id', '=', p.partnerId).where('hub_id', '=', p.hubId).where('email', '=', p.email)
    .$castTo<{ state: AccessState; last_issued_at: string | null; request_seq: number; last_email_at: string | null }>()
    .executeTakeFirst();
  return a ? { state: a.state, lastIssuedAt: a.last_issued_at ? new Date(a.last_issued_at) : null, requestSeq: a.request_seq, lastEmailAt: a.last_email_at ? new Date(a.last_email_at) : null } : null;
}

/** An access state to write, by the command that decided it. */
export interface AccessWrite extends PairKey {
  state: AccessState;
  issuedAt: Date | null;
  commandId: string;
  /**
   * A state newly decided by an assignment: the pair's request and end start over. `requestSeq`
   * (not null: the client is emailed request `requestSeq` now, expiring in `ttlDays`), `accessUntil`
   * (null: no end). A pending pair without `requestSeq` waits without an email (manual mode).
   */
  fresh?: { requestSeq: number | null; accessUntil: Date | null; ttlDays: number };
  /** The client granted the pair now (`granted_at`: the pair is the employee's portal membership). */
  granted?: boolean;
  /** A new end without a new request (`access.extend`; null: no end): its ending notices start over. */
  until?: { accessUntil: Date | null };
}

/**
 * Writes access states (insert or update), many pairs in one statement. The newest command seen on
 * the pair is kept (`last_issued_at` never goes back), so a late older command is superseded.
 * Without `fresh`, only the state moves (a revoke keeps the request's history); `until` sets a
 * new end; `granted` stamps `granted_at`, a fresh state clears it. Callers hold the pairs'
 * (client, email) locks.
 */
export async function upsertAccess(tx: Em, writes: readonly AccessWrite[]): Promise<void> {
  const set = writes.map((w) => ({
    partner_id: w.partnerId, hub_id: w.hubId, email: w.email, state: w.state, issued_at: iso(w.issuedAt), command_id: w.commandId,
    fresh: w.fresh !== undefined, request_seq: w.fresh?.requestSeq ?? null, ttl_secs: (w.fresh?.ttlDays ?? 0) * 86_400,
    access_until: iso(w.fresh?.accessUntil ?? w.until?.accessUntil ?? null), granted: w.granted === true, set_until: w.until !== undefined,
  }));
  await run(tx, sql`with t as (select * from jsonb_to_recordset(${jsonb(set)}) as t(partner_id text, hub_id text, email text, state text, issued_at timestamptz, command_id text,
                                   fresh boolean, request_seq int, ttl_secs double precision, access_until timestamptz, granted boolean, set_until boolean)),
     u as (update access a set state = t.state, last_issued_at = greatest(a.last_issued_at, t.issued_at), command_id = t.command_id, updated_at = now(),
                  request_seq = coalesce(t.request_seq, a.request_seq),
                  requested_at = case when t.fresh then (case when t.state = 'pending' then now() end) else a.requested_at end,
                  expires_at = case when t.fresh then (case when t.request_seq is not null then now() + make_interval(secs => t.ttl_secs) end) else a.expires_at end,
                  last_email_at = case when t.request_seq is not null then now() else a.last_email_at end,
                  reminders_sent = case when t.request_seq is not null then '[]'::jsonb else a.reminders_sent end,
                  access_until = case when t.fresh or t.set_until then t.access_until else a.access_until end,
                  end_reminders_sent = case when t.fresh or t.set_until then '[]'::jsonb else a.end_reminders_sent end,
                  granted_at = case when t.granted then now() when t.fresh then null else a.granted_at end
             from t where a.partner_id = t.partner_id and a.hub_id = t.hub_id and a.email = t.email
           returning a.partner_id, a.hub_id, a.email)
     insert into access (partner_id, hub_id, email, state, last_issued_at, command_id, request_seq, requested_at, expires_at, last_email_at, access_until, granted_at)
     select t.partner_id, t.hub_id, t.email, t.state, t.issued_at, t.command_id, coalesce(t.request_seq, 0),
            case when t.state = 'pending' then now() end,
            case when t.request_seq is not null then now() + make_interval(secs => t.ttl_secs) end,
            case when t.request_seq is not null then now() end,
            t.access_until, case when t.granted then now() end
       from t where not exists (select 1 from u where u.partner_id = t.partner_id and u.hub_id = t.hub_id and u.email = t.email)`);
}

/** Remembers the newest command seen on pairs whose state does not change. */
export async function touchLastIssuedAt(tx: Em, touches: readonly (PairKey & { issuedAt: Date | null })[]): Promise<void> {
  const set = touches.map((w) => ({ partner_id: w.partnerId, hub_id: w.hubId, email: w.email, issued_at: iso(w.issuedAt) }));
  await run(tx, sql`update access a set last_issued_at = greatest(a.last_issued_at, t.issued_at)
      from jsonb_to_recordset(${jsonb(set)}) as t(partner_id text, hub_id text, email text, issued_at timestamptz)
     where a.partner_id = t.partner_id and a.hub_id = t.hub_id and a.email = t.email`);
}

/**
 * The one grant-link withdrawal: the open links of the pairs in `pairs` (a relation with
 * `partner_id`, `hub_id` and `email` columns) stop working now (`withdrawn_at`, and `expires_at`
 * no later than now). A statement, or a CTE of one.
 */
const withdrawLinksOf = (pairs: RawBuilder<unknown>) => sql`update grant_token g set withdrawn_at = now(), expires_at = least(g.expires_at, now())
    from ${pairs} cross join lateral (${openLinksOfPair(sql`true`)}) o
   where g.token_hash = o.token_hash`;

/**
 * The open links of the pair of the row `t` (with `partner_id`, `hub_id` and `email`), matching
 * `extra` too: a lateral subquery, one probe of `grant_token_by_pair` per pair. `offset 0` keeps the
 * planner from flattening it into a join, which it would run as a scan of the whole table when its
 * statistics say there are few open links (a table that grew since it was last analysed).
 */
const openLinksOfPair = (extra: RawBuilder<unknown>) => sql`select x.token_hash from grant_token x
   where x.partner_id = t.partner_id and x.hub_id = t.hub_id and x.email = t.email and x.used_at is null and x.withdrawn_at is null and ${extra} offset 0`;

/** Grant links of revoked or granted pairs stop working (set-based). */
export async function expireGrantLinks(tx: Em, pairs: readonly PairKey[]): Promise<void> {
  const set = pairs.map((p) => ({ partner_id: p.partnerId, hub_id: p.hubId, email: p.email }));
  await run(tx, withdrawLinksOf(sql`jsonb_to_recordset(${jsonb(set)}) as t(partner_id text, hub_id text, email text)`));
}

/** A new request of one pair: its grant link's stored hash (see `grantTokenHash`) for request `seq`. */
export interface RequestLink extends PairKey { seq: number; tokenHash: string; commandId: string }

/**
 * The email of new requests: one outbox row (its payload names pairs and sequences, never a token).
 * `fallbackKey`: its key when a row with `notificationKey` exists already.
 */
export interface RequestEmail { notificationKey: string; fallbackKey: string; kind: string; partnerId: string; payload: Record<string, unknown> }

/**
 * Creates the grant links of new requests and the emails that carry them, in one statement: the
 * pairs' earlier unused links are withdrawn (a new request kills the old link), one `grant_token`
 * row per request (its hash only; expiring in `ttlDays`), and the outbox rows, once-only by their
 * notification key; an email whose key exists already is written under its fallback key, once-only
 * too (an existing one writes nothing and returns nothing). With `claimSecs`, the
 * rows are written claimed for that long (the caller sends them right after its commit). Returns
 * the outbox rows written.
 */
export async function createRequests(tx: Em, links: readonly RequestLink[], emails: readonly RequestEmail[], ttlDays: number, claimSecs: number | null): Promise<{ id: string; notification_key: string }[]> {
  const set = links.map((l) => ({ token_hash: l.tokenHash, partner_id: l.partnerId, hub_id: l.hubId, email: l.email, seq: l.seq, command_id: l.commandId }));
  const mails = emails.map((e) => ({ key: e.notificationKey, fallback_key: e.fallbackKey, kind: e.kind, partner_id: e.partnerId, payload: e.payload }));
  return rows(tx, sql<{ id: string; notification_key: string }>`with t as (select * from jsonb_to_recordset(${jsonb(set)}) as t(token_hash text, partner_id text, hub_id text, email text, seq int, command_id text)),
          w as (update grant_token g set withdrawn_at = now(), expires_at = least(g.expires_at, now())
                  from t cross join lateral (${openLinksOfPair(sql`x.request_seq < t.seq`)}) o where g.token_hash = o.token_hash),
          g as (insert into grant_token (token_hash, partner_id, hub_id, email, expires_at, request_seq, command_id)
                select token_hash, partner_id, hub_id, email, now() + make_interval(secs => ${ttlDays * 86_400}::double precision), seq, command_id from t
                on conflict (token_hash) do nothing),
          m as (select * from jsonb_to_recordset(${jsonb(mails)}) as m(key text, fallback_key text, kind text, partner_id text, payload jsonb)),
          o as (insert into outbox (notification_key, kind, partner_id, payload, claimed_until)
                select m.key, m.kind, m.partner_id, m.payload, now() + make_interval(secs => ${claimSecs}::double precision) from m
                on conflict (notification_key) do nothing returning id, notification_key),
          later as (insert into outbox (notification_key, kind, partner_id, payload, claimed_until)
                select m.fallback_key, m.kind, m.partner_id, m.payload, now() + make_interval(secs => ${claimSecs}::double precision) from m
                 where not exists (select 1 from o where o.notification_key = m.key)
                on conflict (notification_key) do nothing returning id, notification_key)
     select id, notification_key from o union all select id, notification_key from later`);
}

/**
 * Records refused pairs (EMAIL_LINKED_TO_OTHER_PARTNER) for the partner's conflict list; once per
 * command and pair. Returns the pairs recorded now (not those recorded before).
 */
export async function recordConflicts(tx: Em, pairs: readonly (PairKey & { commandId: string })[]): Promise<(PairKey & { commandId: string })[]> {
  const set = pairs.map((p) => ({ partner_id: p.partnerId, hub_id: p.hubId, email: p.email, command_id: p.commandId }));
  return rows(tx, sql<PairKey & { commandId: string }>`insert into conflict (partner_id, hub_id, email, command_id)
    select partner_id, hub_id, email, command_id from jsonb_to_recordset(${jsonb(set)}) as t(partner_id text, hub_id text, email text, command_id text)
    on conflict do nothing
    returning partner_id as "partnerId", hub_id as "hubId", email, command_id as "commandId"`);
}

/** Emails become portal users of a client (already one: unchanged). */
export async function addPortalUsers(tx: Em, hubId: string, emails: readonly string[]): Promise<void> {
  await run(tx, sql`insert into portal_user (hub_id, email) select ${hubId}, jsonb_array_elements_text(${jsonb(emails)}) on conflict do nothing`);
}

/**
 * The platform reports a client's portal users: `emails` replaces the stored set of that client
 * (the ones not listed are deleted, new ones inserted), in one statement.
 */
export async function replacePortalUsers(tx: Em, hubId: string, emails: readonly string[]): Promise<void> {
  await run(tx, sql`with given as (select distinct jsonb_array_elements_text(${jsonb(emails)}) as email),
       gone as (delete from portal_user p where p.hub_id = ${hubId} and not exists (select 1 from given g where g.email = p.email))
    insert into portal_user (hub_id, email) select ${hubId}, email from given on conflict do nothing`);
}

/**
 * A client's portal users as the platform now reports them include employees whose pair waits in
 * manual mode (`accessRequests: manual`): those pending pairs become `active`, set-based, by the
 * command that reported them. Returns the activated pairs.
 */
export async function activateManualRequests(tx: Em, hubId: string, commandId: string): Promise<PairKey[]> {
  const r = await rows(tx, sql<{ partner_id: string; hub_id: string; email: string }>`update access a set state = 'active', updated_at = now(), command_id = ${commandId}, expires_at = null, granted_at = null
      from partner p
     where a.hub_id = ${hubId} and a.state = 'pending' and p.id = a.partner_id and p.access_requests = 'manual'
       and exists (select 1 from portal_user u where u.hub_id = a.hub_id and u.email = a.email)
     returning a.partner_id, a.hub_id, a.email`);
  return r.map((x) => ({ partnerId: x.partner_id, hubId: x.hub_id, email: x.email }));
}

/**
 * Revokes, in one statement, every live (pending or active) access of the partner matching the
 * filter (an employee on every client, or every employee on a client), except pairs that a newer
 * command already touched, and withdraws the open grant links of exactly the revoked pairs. A
 * granted pair's portal membership ends with it. Returns the revoked pairs.
 */
export async function revokeAllAccess(tx: Em, q: { partnerId: string; email?: string; hubId?: string; commandId: string; issuedAt: Date | null }): Promise<{ hub_id: string; email: string }[]> {
  const issuedAt = iso(q.issuedAt);
  const byEmail = q.email !== undefined ? sql`and email = ${q.email}` : sql``;
  const byHub = q.hubId !== undefined ? sql`and hub_id = ${q.hubId}` : sql``;
  const notNewer = issuedAt !== null ? sql`and (last_issued_at is null or last_issued_at <= ${issuedAt}::timestamptz)` : sql``;
  return rows(tx, sql<{ hub_id: string; email: string }>`with revoked as (
       update access set state = 'revoked', updated_at = now(), command_id = ${q.commandId},
              last_issued_at = greatest(last_issued_at, ${issuedAt}::timestamptz)
        where partner_id = ${q.partnerId} and state in ('pending', 'active') ${byEmail} ${byHub} ${notNewer}
        returning partner_id, hub_id, email),
     expired as (${withdrawLinksOf(sql`revoked t`)})
     select hub_id, email from revoked`);
}
