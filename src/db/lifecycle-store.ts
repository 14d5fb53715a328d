import { sql, type RawBuilder } from 'kysely';
import type { Em } from './orm.js';
import type { AccessState } from '../domain/access.js';
import { firstRow, jsonb, rows, run } from './exec.js';

/**
 * The life of an access request after it was asked (contract §6): the grant link's page and
 * answer, the partner's notices, and the set-based steps of the lifecycle sweep (request expiry,
 * reminders, time-bound access ends and their notices). Every email is an outbox row, once-only by
 * its notification key, written in the transaction of the state it announces; its payload holds
 * ids and instants, never a token (the mail worker derives the link and reads names when it sends).
 */

/** One (partner, client, employee) pair. */
export interface PairRef { partnerId: string; hubId: string; email: string }

/** A grant link as its page reads it: the link, the pair's current request, and the names it shows. Timestamps as Postgres writes them. */
export interface LinkRow {
  partnerId: string;
  hubId: string;
  email: string;
  tokenSeq: number;
  usedAt: string | null;
  decided: 'granted' | 'declined' | null;
  withdrawnAt: string | null;
  tokenExpiresAt: string;
  accessState: AccessState | null;
  accessSeq: number | null;
  accessExpiresAt: string | null;
  partnerName: string;
  clientName: string;
  employeeName: string | null;
  /** The client's locale (the platform's record), as the email was written in. */
  locale: string;
}

/** What a link's page needs, read with the link (findLink, findLinksOfRequest): its columns and their sources. */
const linkColumns = sql`g.partner_id as "partnerId", g.hub_id as "hubId", g.email, g.request_seq as "tokenSeq",
         g.used_at as "usedAt", g.decided, g.withdrawn_at as "withdrawnAt", g.expires_at as "tokenExpiresAt",
         a.state as "accessState", a.request_seq as "accessSeq", a.expires_at as "accessExpiresAt",
         p.name as "partnerName", coalesce(c.name, g.hub_id) as "clientName", e.name as "employeeName", coalesce(ca.locale, 'en') as locale`;
const linkSources = sql`from grant_token g
    join partner p on p.id = g.partner_id
    left join access a on a.partner_id = g.partner_id and a.hub_id = g.hub_id and a.email = g.email
    left join client c on c.partner_id = g.partner_id and c.hub_id = g.hub_id
    left join client_account ca on ca.hub_id = g.hub_id
    left join employee e on e.partner_id = g.partner_id and e.email = g.email`;

/**
 * The grant link whose token hashes to `tokenHash`, with the pair's current request and the names
 * its page shows, or undefined. With `lock`, the link's row is locked until the transaction ends.
 */
export async function findLink(em: Em, tokenHash: string, opts: { lock?: boolean } = {}): Promise<LinkRow | undefined> {
  return firstRow(em, sql<LinkRow>`select ${linkColumns} ${linkSources}
   where g.token_hash = ${tokenHash}
   ${opts.lock === true ? sql`for update of g` : sql``}`);
}

/**
 * The grant links of every pair one command asked for at one client (a digest's "grant all"), with
 * their stored hashes, the pairs' current requests and the names the page shows, by employee.
 */
export async function findLinksOfRequest(em: Em, r: { partnerId: string; hubId: string; commandId: string }): Promise<(LinkRow & { tokenHash: string })[]> {
  return rows(em, sql<LinkRow & { tokenHash: string }>`select g.token_hash as "tokenHash", ${linkColumns} ${linkSources}
   where g.partner_id = ${r.partnerId} and g.hub_id = ${r.hubId} and g.command_id = ${r.commandId}
   order by g.email, g.request_seq`);
}

/** Marks a grant link used now, with the client's answer. */
export async function markLinkAnswered(tx: Em, tokenHash: string, decided: 'granted' | 'declined'): Promise<void> {
  await tx.getKysely().updateTable('grant_token').set({ used_at: sql`now()`, decided }).where('token_hash', '=', tokenHash).execute();
}

/**
 * The client declined the pair's request `seq`: `pending` → `declined`. Guarded by the state and
 * the sequence; returns whether the pair changed.
 */
export async function declineRequest(tx: Em, p: PairRef & { seq: number; commandId: string }): Promise<boolean> {
  const n = await run(tx, sql`update access set state = 'declined', command_id = ${p.commandId}, updated_at = now()
     where partner_id = ${p.partnerId} and hub_id = ${p.hubId} and email = ${p.email} and state = 'pending' and request_seq = ${p.seq}::int`);
  return n > 0;
}

/** What a partner is told about one pair (outbox kinds `partner.<kind>`). */
export type PartnerNoticeKind = 'granted' | 'declined' | 'expired' | 'access-ended' | 'access-ending';

/** The outbox kinds of this module, as the mail worker renders them. */
export const LIFECYCLE_OUTBOX_KINDS = ['access.reminder', 'partner.granted', 'partner.declined', 'partner.expired', 'partner.access-ended', 'partner.access-ending'] as const;
export type LifecycleOutboxKind = (typeof LIFECYCLE_OUTBOX_KINDS)[number];

/**
 * The outbox rows of partner notices: `from` is a relation with `key`, `kind`, `partner_id`,
 * `hub_id`, `email`, `request_seq` and `access_until`. Payload: ids and instants only (the mail
 * worker reads the names, the partner's notifyEmail and locale when it sends). A partner without
 * `notify_email` gets none.
 */
const partnerNoticeRows = (from: RawBuilder<unknown>) => sql`
  select x.key, x.kind, x.partner_id,
         jsonb_build_object('hubId', x.hub_id, 'email', x.email, 'seq', x.request_seq, 'accessUntil', x.access_until)
    from ${from} x
    join partner p on p.id = x.partner_id and p.notify_email is not null`;

/** The notification key of a partner notice about a request (`seq`) and the event that decided it. */
export const partnerNoticeKey = (kind: PartnerNoticeKind, p: PairRef & { seq: number }, event?: string) =>
  `partner.${kind}:${p.partnerId}:${p.hubId}:${p.email}:${p.seq}${event ? `:${event}` : ''}`;

/**
 * Writes partner notices (granted, declined) in the caller's transaction, once-only by key.
 * Returns the outbox rows written (none for a partner without notifyEmail, or a key already written).
 */
export async function insertPartnerNotices(tx: Em, notices: readonly (PairRef & { kind: 'granted' | 'declined'; seq: number; key: string })[]): Promise<string[]> {
  if (!notices.length) return [];
  const set = notices.map((n) => ({ key: n.key, kind: `partner.${n.kind}`, partner_id: n.partnerId, hub_id: n.hubId, email: n.email, request_seq: n.seq }));
  const r = await rows(tx, sql<{ id: string }>`insert into outbox (notification_key, kind, partner_id, payload)
    ${partnerNoticeRows(sql`(select t.*, a.access_until from jsonb_to_recordset(${jsonb(set)}) as t(key text, kind text, partner_id text, hub_id text, email text, request_seq int)
                               left join access a on a.partner_id = t.partner_id and a.hub_id = t.hub_id and a.email = t.email)`)}
    on conflict (notification_key) do nothing returning id`);
  return r.map((x) => String(x.id));
}

// ---- the lifecycle sweep ------------------------------------------------------------------------

/** What one sweep step did: pairs changed, the outbox rows it wrote (to enqueue after commit), and the pairs it made `expired` (for their webhook events). */
export interface SweepStep { changed: number; outboxIds: string[]; expired: PairRef[] }

/**
 * Among `cand` (a CTE of access rows locked `for update skip locked`), those whose (client, email)
 * lock is free now: the lock that every pair command takes (access-store `lockClientEmails`) is
 * tried, never waited for, so the sweep never blocks a command nor changes a pair under one; a
 * skipped pair is taken by the next sweep.
 */
const free = sql`pg_try_advisory_xact_lock(hashtextextended(cand.hub_id || chr(10) || cand.email, 0))`;

/** An instant as the notification keys spell it (UTC, milliseconds). */
const isoKey = (col: RawBuilder<unknown>) => sql`to_char(${col} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

interface StepRow { changed: number; ids: string[]; expired?: PairRef[] }
const stepResult = (r: StepRow | undefined): SweepStep => ({ changed: r?.changed ?? 0, outboxIds: (r?.ids ?? []).map(String), expired: r?.expired ?? [] });
/** The pairs of an `upd` CTE, as JSON (a step's `expired`). */
const expiredPairs = sql`coalesce((select json_agg(json_build_object('partnerId', partner_id, 'hubId', hub_id, 'email', email)) from upd), '[]') as expired`;

/**
 * Step 1: pending requests past their expiry become `expired` (their links answer "expired"), at
 * most `limit` of them, oldest first; the partner is told (`partner.expired`, once per request).
 */
export async function expireDueRequests(tx: Em, limit: number): Promise<SweepStep> {
  return stepResult(await firstRow(tx, sql<StepRow>`with cand as materialized (
       select a.partner_id, a.hub_id, a.email from access a
        where a.state = 'pending' and a.expires_at <= now()
        order by a.expires_at limit ${limit}::int
        for update of a skip locked),
     due as materialized (select * from cand where ${free}),
     upd as (update access a set state = 'expired', updated_at = now()
               from due where a.partner_id = due.partner_id and a.hub_id = due.hub_id and a.email = due.email
             returning a.partner_id, a.hub_id, a.email, a.request_seq, a.access_until, 'partner.expired' as kind,
                       'partner.expired:' || a.partner_id || ':' || a.hub_id || ':' || a.email || ':' || a.request_seq as key),
     ins as (insert into outbox (notification_key, kind, partner_id, payload) ${partnerNoticeRows(sql`upd`)}
             on conflict (notification_key) do nothing returning id)
     select (select count(*) from upd)::int as changed, coalesce((select json_agg(id::text) from ins), '[]') as ids, ${expiredPairs}`));
}

/**
 * Step 2: reminders. A pending request is reminded `day` days before its expiry, for each day of
 * `days` (GRANT_REMINDER_DAYS) at most once per request (`reminders_sent`, reset by a new request),
 * never before its email (a day longer than the request's life is skipped) and never after a
 * decision (only `pending`). Days that fell due together give one email (the nearest day's).
 */
export async function remindDueRequests(tx: Em, days: readonly number[], limit: number): Promise<SweepStep> {
  if (!days.length) return { changed: 0, outboxIds: [], expired: [] };
  const maxSecs = Math.max(...days) * 86_400;
  const dueDays = sql`select min(d.v::float8) as day, jsonb_agg(d.v) as days
                        from jsonb_array_elements(${jsonb(days)}) as d(v)
                       where a.expires_at - make_interval(secs => d.v::float8 * 86400) <= now()
                         and (a.requested_at is null or a.expires_at - make_interval(secs => d.v::float8 * 86400) > a.requested_at)
                         and not a.reminders_sent @> jsonb_build_array(d.v)`;
  return stepResult(await firstRow(tx, sql<StepRow>`with cand as materialized (
       select a.partner_id, a.hub_id, a.email, r.day, r.days from access a
        cross join lateral (${dueDays}) r
        where a.state = 'pending' and a.expires_at > now() and a.expires_at <= now() + make_interval(secs => ${maxSecs}::float8)
          and r.day is not null
        order by a.expires_at limit ${limit}::int
        for update of a skip locked),
     due as materialized (select * from cand where ${free}),
     upd as (update access a set reminders_sent = a.reminders_sent || due.days, last_email_at = now()
               from due where a.partner_id = due.partner_id and a.hub_id = due.hub_id and a.email = due.email
             returning a.partner_id, a.hub_id, a.email, a.request_seq, a.expires_at, due.day),
     ins as (insert into outbox (notification_key, kind, partner_id, payload)
             select 'access.reminder:' || u.partner_id || ':' || u.hub_id || ':' || u.email || ':' || u.request_seq || ':' || u.day,
                    'access.reminder', u.partner_id,
                    jsonb_build_object('hubId', u.hub_id, 'email', u.email, 'seq', u.request_seq, 'day', u.day, 'expiresAt', u.expires_at)
               from upd u
               join client_account ca on ca.hub_id = u.hub_id and ca.contact_email is not null
             on conflict (notification_key) do nothing returning id)
     select (select count(*) from upd)::int as changed, coalesce((select json_agg(id::text) from ins), '[]') as ids`));
}

/**
 * Step 3: time-bound accesses (pending or active) past their `access_until` become `expired`; the
 * grant's portal membership ends with the pair (a platform-reported one stays). The partner is told:
 * `partner.access-ended` for an active pair, `partner.expired` for a pending one; once per end.
 */
export async function endDueAccess(tx: Em, limit: number): Promise<SweepStep> {
  return stepResult(await firstRow(tx, sql<StepRow>`with cand as materialized (
       select a.partner_id, a.hub_id, a.email, a.state from access a
        where a.state in ('pending', 'active') and a.access_until <= now()
        order by a.access_until limit ${limit}::int
        for update of a skip locked),
     due as materialized (select * from cand where ${free}),
     upd as (update access a set state = 'expired', updated_at = now()
               from due where a.partner_id = due.partner_id and a.hub_id = due.hub_id and a.email = due.email
             returning a.partner_id, a.hub_id, a.email, a.request_seq, a.access_until,
                       case when due.state = 'active' then 'partner.access-ended' else 'partner.expired' end as kind),
     keyed as (select u.*, u.kind || ':' || u.partner_id || ':' || u.hub_id || ':' || u.email || ':' || ${isoKey(sql`u.access_until`)} as key from upd u),
     ins as (insert into outbox (notification_key, kind, partner_id, payload) ${partnerNoticeRows(sql`keyed`)}
             on conflict (notification_key) do nothing returning id)
     select (select count(*) from upd)::int as changed, coalesce((select json_agg(id::text) from ins), '[]') as ids, ${expiredPairs}`));
}

/**
 * Step 4: the partner is told `day` days before an active time-bound access ends, for each day of
 * `days` (ACCESS_END_REMINDER_DAYS) at most once per end (`end_reminders_sent`, reset when the end
 * changes). Days that fell due together give one email (the nearest day's).
 */
export async function noticeEndingAccess(tx: Em, days: readonly number[], limit: number): Promise<SweepStep> {
  if (!days.length) return { changed: 0, outboxIds: [], expired: [] };
  const maxSecs = Math.max(...days) * 86_400;
  const dueDays = sql`select min(d.v::float8) as day, jsonb_agg(d.v) as days
                        from jsonb_array_elements(${jsonb(days)}) as d(v)
                       where a.access_until - make_interval(secs => d.v::float8 * 86400) <= now()
                         and not a.end_reminders_sent @> jsonb_build_array(d.v)`;
  return stepResult(await firstRow(tx, sql<StepRow>`with cand as materialized (
       select a.partner_id, a.hub_id, a.email, r.day, r.days from access a
        cross join lateral (${dueDays}) r
        where a.state = 'active' and a.access_until > now() and a.access_until <= now() + make_interval(secs => ${maxSecs}::float8)
          and r.day is not null
        order by a.access_until limit ${limit}::int
        for update of a skip locked),
     due as materialized (select * from cand where ${free}),
     upd as (update access a set end_reminders_sent = a.end_reminders_sent || due.days
               from due where a.partner_id = due.partner_id and a.hub_id = due.hub_id and a.email = due.email
             returning a.partner_id, a.hub_id, a.email, a.request_seq, a.access_until, due.day),
     keyed as (select u.*, 'partner.access-ending' as kind,
                      'partner.access-ending:' || u.partner_id || ':' || u.hub_id || ':' || u.email || ':' || ${isoKey(sql`u.access_until`)} || ':' || u.day as key
                 from upd u),
     ins as (insert into outbox (notification_key, kind, partner_id, payload) ${partnerNoticeRows(sql`keyed`)}
             on conflict (notification_key) do nothing returning id)
     select (select count(*) from upd)::int as changed, coalesce((select json_agg(id::text) from ins), '[]') as ids`));
}

// ---- metrics ------------------------------------------------------------------------------------

/** Pairs by state (every state, 0 when none), and the age of the oldest pending request, for `/metrics`. */
export async function requestGauges(em: Em): Promise<{ states: Record<AccessState, number>; oldestPendingSeconds: number }> {
  const r = await firstRow(em, sql<{ states: Record<string, number> | null; oldest: number | null }>`select
      (select json_object_agg(state, n) from (select state, count(*)::int as n from access group by state) s) as states,
      (select extract(epoch from now() - min(coalesce(requested_at, updated_at)))::float8 from access where state = 'pending') as oldest`);
  const states: Record<AccessState, number> = { pending: 0, active: 0, declined: 0, expired: 0, revoked: 0 };
  for (const [k, n] of Object.entries(r?.states ?? {})) if (k in states) states[k as AccessState] = n;
  return { states, oldestPendingSeconds: Math.max(0, r?.oldest ?? 0) };
}
