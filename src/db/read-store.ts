import { sql } from 'kysely';
import { rows } from './exec.js';
import { managedSharesOf } from './managed-mrr.js';
import type { Em } from './orm.js';

/**
 * The read models of contract §5 (partners, employees, clients, conflicts, the credit snapshot) and
 * the database's readiness. Timestamps and `numeric` values come as Postgres writes them (strings):
 * their row fields say so.
 */

/** Whether Postgres answers a query now (readiness). */
export async function pingDatabase(em: Em): Promise<boolean> {
  return sql`select 1`.execute(em.getKysely()).then(() => true, () => false);
}

/** Whether the partner exists. */
export async function partnerExists(em: Em, partnerId: string): Promise<boolean> {
  const row = await em.getKysely().selectFrom('partner').select('id').where('id', '=', partnerId).executeTakeFirst();
  return row !== undefined;
}

/** The states of an access that was not revoked. */
export type UnrevokedState = 'pending' | 'active' | 'declined' | 'expired';
/** A live access of an employee (not revoked). */
export interface EmployeeAccess { hubId: string; access: UnrevokedState }
/** A partner's employee with its live accesses, by client. */
export interface EmployeeRow { email: string; name: string | null; tagged: boolean; status: 'active' | 'removed'; clients: EmployeeAccess[] }

/** One page of a list ordered by a text key: the `limit` items after `after` (null: from the start). */
export interface KeyPage { after: string | null; limit: number }

/** The partner's employees (by email) with their live accesses (by client); one page of them. */
export async function listEmployeesWithAccess(em: Em, partnerId: string, page: KeyPage): Promise<EmployeeRow[]> {
  return rows(em, sql<EmployeeRow>`
    select e.email, e.name, e.tagged, e.status,
           coalesce((select json_agg(json_build_object('hubId', a.hub_id, 'access', a.state) order by a.hub_id)
                       from access a where a.partner_id = e.partner_id and a.email = e.email and a.state <> 'revoked'), '[]') as clients
      from employee e where e.partner_id = ${partnerId} ${page.after === null ? sql`` : sql`and e.email > ${page.after}`}
     order by e.email
     limit ${page.limit}::int`);
}

/** An access to a client that was not revoked (pending, active, declined or expired). */
export interface ClientAccess { email: string; access: UnrevokedState }
/**
 * A client of a partner's list: the partner's relationship (`name`, `status`), the platform's facts
 * (`mrr` is `numeric`, a string; `renewalDate` YYYY-MM-DD), and its accesses that were not revoked
 * (`employees`), or only how many there are (`employeeCount`) when the reader may not see who the
 * partner's employees are.
 */
export interface ClientRow {
  hubId: string;
  name: string;
  status: 'active' | 'terminated';
  mrr: string;
  products: string[];
  renewalDate: string | null;
  contactEmail: string | null;
  locale: string;
  info: Record<string, unknown>;
  employees?: ClientAccess[];
  employeeCount?: number;
}

const clientRows = (partnerId: string, hubId: string | null, withEmployees: boolean, page: KeyPage | null = null) => sql<ClientRow>`
  select c.hub_id as "hubId", c.name, c.status, coalesce(ca.mrr, 0) as mrr, coalesce(ca.products, '[]') as products,
         to_char(ca.renewal_date, 'YYYY-MM-DD') as "renewalDate", ca.contact_email as "contactEmail", coalesce(ca.locale, 'en') as locale, coalesce(ca.info, '{}') as info,
         ${withEmployees
    ? sql`coalesce((select json_agg(json_build_object('email', a.email, 'access', a.state) order by a.email)
                      from access a where a.partner_id = c.partner_id and a.hub_id = c.hub_id and a.state <> 'revoked'), '[]') as employees`
    : sql`(select count(*)::int from access a where a.partner_id = c.partner_id and a.hub_id = c.hub_id and a.state <> 'revoked') as "employeeCount"`}
    from client c
    left join client_account ca on ca.hub_id = c.hub_id
   where c.partner_id = ${partnerId} ${hubId === null ? sql`` : sql`and c.hub_id = ${hubId}`}
     ${page?.after == null ? sql`` : sql`and c.hub_id > ${page.after}`}
   order by c.hub_id
   ${page === null ? sql`` : sql`limit ${page.limit}::int`}`;

/** The partner's client list (by hubId) with access states (`withEmployees`) or their count; one page of it. */
export async function listClientsWithAccess(em: Em, partnerId: string, opts: { withEmployees: boolean } & KeyPage): Promise<ClientRow[]> {
  return rows(em, clientRows(partnerId, null, opts.withEmployees, opts));
}

/** One client of the partner's list, or undefined. */
export async function findClientWithAccess(em: Em, partnerId: string, hubId: string, opts: { withEmployees: boolean }): Promise<ClientRow | undefined> {
  return (await rows(em, clientRows(partnerId, hubId, opts.withEmployees)))[0];
}

/**
 * Managed MRR, live: the partner's share of each client it manages, in integer cents (see
 * {@link managedSharesOf}: split evenly among the partners that manage the client, remainder cents
 * by ascending partner id). Clients the partner does not manage are absent. With `hubId`, that
 * client only.
 *
 * The one source of the figure on read: the dashboard's `managedMrr` (its sum) and the client
 * list's `managed`/`managedMrr` both read it, so they agree with each other and with every
 * committed change of access, tag, status or MRR, without a recalculation.
 */
export async function managedMrrShares(em: Em, partnerId: string, hubId: string | null = null): Promise<Map<string, number>> {
  const found = await rows(em, sql<{ hub_id: string; cents: string }>`select s.hub_id, s.cents from ${managedSharesOf(sql`${partnerId}::text`, hubId)} s`);
  return new Map(found.map((r) => [r.hub_id, Number(r.cents)]));
}

/** How many of the partner's pairs wait for a client (`pending`). */
export async function countPendingRequests(em: Em, partnerId: string): Promise<number> {
  const r = await em.getKysely().selectFrom('access').select((eb) => eb.fn.countAll<string>().as('n'))
    .where('partner_id', '=', partnerId).where('state', '=', 'pending')
    .executeTakeFirst();
  return Number(r?.n ?? 0);
}

/** What the dashboard shows of the partner itself. */
export interface PartnerSummary { name: string; locale: string; team: Record<string, { name: string; email: string }> }

/** The partner's name, locale and team, or undefined. */
export async function findPartnerSummary(em: Em, partnerId: string): Promise<PartnerSummary | undefined> {
  return em.getKysely().selectFrom('partner').select(['name', 'locale', 'team']).where('id', '=', partnerId).executeTakeFirst();
}

/**
 * A duplicate-email conflict the partner ran into (`at` as Postgres writes it); `id` and `cursorAt`
 * (`at` to the microsecond) place it for the next page's cursor.
 */
export interface ConflictRow { id: string; email: string; hubId: string; commandId: string; at: string; cursorAt: string }

/** Where a page of conflicts starts: after this (at, id), newest first. */
export interface ConflictCursor { at: string; id: string }

/** The partner's conflicts, newest first: the `limit` after `after`. Keyset-paginated: (at, id) descending. */
export async function listConflicts(em: Em, partnerId: string, page: { after: ConflictCursor | null; limit: number }): Promise<ConflictRow[]> {
  return rows(em, sql<ConflictRow>`select id::text as id, email, hub_id as "hubId", command_id as "commandId", at, at::text as "cursorAt"
    from conflict
   where partner_id = ${partnerId}
     ${page.after === null ? sql`` : sql`and (at, id) < (${page.after.at}::timestamptz, ${page.after.id}::bigint)`}
   order by at desc, id desc
   limit ${page.limit}::int`);
}

/** The last computed credit of a partner (`numeric` values as strings). */
export interface CreditSnapshotRow {
  managedMrr: string;
  soldTierCredit: string;
  tier: string;
  nextTier: string | null;
  upcomingRenewals: number;
  calculatedAt: string;
}

/** The partner's credit snapshot, or undefined when it was never calculated. */
export async function findCreditSnapshot(em: Em, partnerId: string): Promise<CreditSnapshotRow | undefined> {
  return em.getKysely()
    .selectFrom('credit_snapshot')
    .select(['managed_mrr as managedMrr', 'sold_tier_credit as soldTierCredit', 'tier', 'next_tier as nextTier', 'upcoming_renewals as upcomingRenewals', 'calculated_at as calculatedAt'])
    .where('partner_id', '=', partnerId)
    .$castTo<CreditSnapshotRow>()
    .executeTakeFirst();
}

/** An access request waiting for a client, as `GET …/requests` lists it (timestamps as Postgres writes them). */
export interface RequestRow {
  hubId: string;
  email: string;
  state: 'pending' | 'declined' | 'expired';
  requestedAt: string;
  expiresAt: string | null;
  lastEmailAt: string | null;
  reminders: number;
  ageSeconds: number;
  /** `requestedAt` exactly (microseconds), for the next page's cursor. */
  cursorAt: string;
}

/** Where a page of requests starts: after this (requestedAt, hubId, email). */
export interface RequestCursor { requestedAt: string; hubId: string; email: string }

/**
 * The partner's access requests in `state`, oldest first (by when they were asked; a pair never
 * emailed by when it became pending), those asked at least `olderThanSecs` ago, `limit` after
 * `after`. Keyset-paginated: (requested, hub_id, email).
 */
export async function listRequests(em: Em, partnerId: string, q: { state: 'pending' | 'declined' | 'expired'; olderThanSecs: number | null; limit: number; after: RequestCursor | null }): Promise<RequestRow[]> {
  const requested = sql`coalesce(a.requested_at, a.updated_at)`;
  return rows(em, sql<RequestRow>`select a.hub_id as "hubId", a.email, a.state, ${requested} as "requestedAt", a.expires_at as "expiresAt",
         a.last_email_at as "lastEmailAt", jsonb_array_length(a.reminders_sent)::int as reminders,
         greatest(0, extract(epoch from now() - ${requested}))::float8 as "ageSeconds", ${requested}::text as "cursorAt"
    from access a
   where a.partner_id = ${partnerId} and a.state = ${q.state}
     ${q.olderThanSecs === null ? sql`` : sql`and ${requested} <= now() - make_interval(secs => ${q.olderThanSecs}::float8)`}
     ${q.after === null ? sql`` : sql`and (${requested}, a.hub_id, a.email) > (${q.after.requestedAt}::timestamptz, ${q.after.hubId}::text, ${q.after.email}::text)`}
   order by ${requested}, a.hub_id, a.email
   limit ${q.limit}::int`);
}

/** A client behind the dashboard's upcoming renewals (`renewalDate` YYYY-MM-DD). */
export interface RenewalRow { hubId: string; name: string; renewalDate: string; renewalOwner: unknown; products: string[] }

/**
 * The partner's active clients whose platform renewal date falls from `today` to `today +
 * windowDays` (UTC days, both included: the rule of `alerts.upcomingRenewals`), soonest first.
 */
export async function listUpcomingRenewals(em: Em, partnerId: string, today: string, windowDays: number): Promise<RenewalRow[]> {
  return rows(em, sql<RenewalRow>`select c.hub_id as "hubId", c.name, to_char(ca.renewal_date, 'YYYY-MM-DD') as "renewalDate",
         ca.info->'renewalOwner' as "renewalOwner", ca.products
    from client c join client_account ca on ca.hub_id = c.hub_id
   where c.partner_id = ${partnerId} and c.status = 'active'
     and ca.renewal_date between ${today}::date and ${today}::date + ${windowDays}::int
   order by ca.renewal_date, c.hub_id
   limit 10000`);
}
