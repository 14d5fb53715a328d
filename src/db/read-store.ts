import { sql } from 'kysely';
import { rows } from './exec.js';
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

/** A live access of an employee (not revoked). */
export interface EmployeeAccess { hubId: string; access: string }
/** A partner's employee with its live accesses, by client. */
export interface EmployeeRow { email: string; name: string | null; tagged: boolean; status: string; clients: EmployeeAccess[] }

/** The partner's employees (by email) with their live accesses (by client). */
export async function listEmployeesWithAccess(em: Em, partnerId: string): Promise<EmployeeRow[]> {
  return rows(em, sql<EmployeeRow>`
    select e.email, e.name, e.tagged, e.status,
           coalesce((select json_agg(json_build_object('hubId', a.hub_id, 'access', a.state) order by a.hub_id)
                       from access a where a.partner_id = e.partner_id and a.email = e.email and a.state <> 'revoked'), '[]') as clients
      from employee e where e.partner_id = ${partnerId} order by e.email`);
}

/** A live access to a client (not revoked). */
export interface ClientAccess { email: string; access: string }
/**
 * A client of a partner's list with its live accesses; `managed` when a tagged, active employee of
 * the partner has active access to it. `mrr` is `numeric` (a string); `renewalDate` YYYY-MM-DD.
 */
export interface ClientRow {
  hubId: string;
  name: string;
  status: string;
  mrr: string;
  products: string[];
  renewalDate: string | null;
  contactEmail: string;
  locale: string;
  info: Record<string, unknown>;
  managed: boolean;
  employees: ClientAccess[];
}

const clientRows = (partnerId: string, hubId: string | null) => sql<ClientRow>`
  select c.hub_id as "hubId", c.name, c.status, c.mrr, c.products, to_char(c.renewal_date, 'YYYY-MM-DD') as "renewalDate",
         c.contact_email as "contactEmail", c.locale, c.info,
         exists (select 1 from access a join employee e on e.partner_id = a.partner_id and e.email = a.email
                  where a.partner_id = c.partner_id and a.hub_id = c.hub_id and a.state = 'active' and e.tagged and e.status = 'active') as managed,
         coalesce((select json_agg(json_build_object('email', a.email, 'access', a.state) order by a.email)
                     from access a where a.partner_id = c.partner_id and a.hub_id = c.hub_id and a.state <> 'revoked'), '[]') as employees
    from client c
   where c.partner_id = ${partnerId} ${hubId === null ? sql`` : sql`and c.hub_id = ${hubId}`}
   order by c.hub_id`;

/** The partner's client list (by hubId) with access states and the managed flag. */
export async function listClientsWithAccess(em: Em, partnerId: string): Promise<ClientRow[]> {
  return rows(em, clientRows(partnerId, null));
}

/** One client of the partner's list, or undefined. */
export async function findClientWithAccess(em: Em, partnerId: string, hubId: string): Promise<ClientRow | undefined> {
  return (await rows(em, clientRows(partnerId, hubId)))[0];
}

/** A duplicate-email conflict the partner ran into (`at` as Postgres writes it). */
export interface ConflictRow { email: string; hubId: string; commandId: string; at: string }

/** The partner's latest 1000 conflicts, newest first. */
export async function listConflicts(em: Em, partnerId: string): Promise<ConflictRow[]> {
  return em.getKysely()
    .selectFrom('conflict')
    .select(['email', 'hub_id as hubId', 'command_id as commandId', 'at'])
    .where('partner_id', '=', partnerId)
    .orderBy('at', 'desc')
    .orderBy('id', 'desc')
    .limit(1000)
    .$castTo<ConflictRow>()
    .execute();
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
