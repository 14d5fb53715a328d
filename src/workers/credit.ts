import type { Em } from '../db/orm.js';
import { computeManagedMrr, computeSoldCredit, computeTier, countUpcomingRenewals, type Churn, type Sale, type SoldCreditReport } from '../domain/credit.js';
import { defaultTierThresholds } from '../../config/tiers.js';

export const monthOf = (d: Date) => d.toISOString().slice(0, 7);
export const dayOf = (d: Date) => d.toISOString().slice(0, 10);

interface ClientFacts { hubId: string; status: 'active' | 'terminated'; mrr: number; renewalDate: string | null; managed: boolean }

/**
 * Loads every fact of a partner's credit in one set-based query (aggregated in Postgres, no
 * per-row ORM loading): its clients (with whether a tagged employee has active access), sales and churns.
 */
export async function loadCreditFacts(em: Em, partnerId: string): Promise<{ clients: ClientFacts[]; sales: Sale[]; churns: Churn[] }> {
  const [row] = await em.execute<{ clients: [string, ClientFacts['status'], string, string | null, boolean][]; sales: [string, string, string, string][]; churns: [string, string][] }[]>(
    `select
       (select coalesce(json_agg(json_build_array(c.hub_id, c.status, c.mrr::text, c.renewal_date::text, m.hub_id is not null)), '[]')
          from client c
          left join (select distinct a.hub_id from access a join employee e on e.partner_id = a.partner_id and e.email = a.email
                      where a.partner_id = ? and a.state = 'active' and e.tagged and e.status = 'active') m on m.hub_id = c.hub_id
         where c.partner_id = ?) as clients,
       (select coalesce(json_agg(json_build_array(sale_id, hub_id, closed_on::text, mrr::text)), '[]') from sale where partner_id = ?) as sales,
       (select coalesce(json_agg(json_build_array(hub_id, on_date::text)), '[]') from churn where partner_id = ?) as churns`,
    [partnerId, partnerId, partnerId, partnerId],
  );
  return {
    clients: (row?.clients ?? []).map(([hubId, status, mrr, renewalDate, managed]) => ({ hubId, status, mrr: Number(mrr), renewalDate, managed })),
    sales: (row?.sales ?? []).map(([saleId, clientHubId, closedOn, mrr]) => ({ saleId, clientHubId, closedOn, mrr: Number(mrr) })),
    churns: (row?.churns ?? []).map(([clientHubId, on]) => ({ clientHubId, on })),
  };
}

/** The monthly sold tier credit report of a partner over a range of months. */
export async function creditReport(em: Em, partnerId: string, range: { from: string; to: string }): Promise<SoldCreditReport> {
  const { sales, churns } = await loadCreditFacts(em, partnerId);
  return computeSoldCredit(sales, churns, range);
}

export interface CreditSnapshot {
  managedMrr: number;
  soldTierCredit: number;
  tier: { current: string; next: string | null };
  upcomingRenewals: number;
  month: string;
}

/**
 * Recomputes a partner's credit and tier from source facts (never incremented) and stores the
 * snapshot the dashboard reads: one read, one write. Running it twice, late or concurrently gives
 * the same numbers. A month other than the current one is computed and returned, not stored.
 */
export async function recalculateCredit(em: Em, partnerId: string, opts: { now: Date; month?: string; renewalAlertDays: number; store?: SnapshotStore }): Promise<CreditSnapshot> {
  const month = opts.month ?? monthOf(opts.now);
  const { clients, sales, churns } = await loadCreditFacts(em, partnerId);
  const managedMrr = computeManagedMrr(clients.map((c) => ({ hubId: c.hubId, status: c.status, mrr: c.mrr, hasTaggedActiveAccess: c.managed })));
  const report = computeSoldCredit(sales, churns, { from: month, to: month });
  const soldTierCredit = report.months.at(-1)?.total ?? 0;
  const tier = computeTier(soldTierCredit, defaultTierThresholds);
  const upcomingRenewals = countUpcomingRenewals(clients, dayOf(opts.now), opts.renewalAlertDays);
  const snapshot = { managedMrr, soldTierCredit, tier, upcomingRenewals, month };
  if (month !== monthOf(opts.now)) return snapshot;
  const row = { partnerId, snapshot, calculatedAt: opts.now };
  await (opts.store ? opts.store(row) : storeSnapshots(em, [row]));
  return snapshot;
}

export interface SnapshotRow { partnerId: string; snapshot: CreditSnapshot; calculatedAt: Date }
export type SnapshotStore = (row: SnapshotRow) => Promise<void>;

/** Writes dashboard snapshots, many partners in one statement. */
export async function storeSnapshots(em: Em, rows: SnapshotRow[]): Promise<void> {
  await em.execute(
    `insert into credit_snapshot (partner_id, managed_mrr, sold_tier_credit, tier, next_tier, upcoming_renewals, calculated_at)
     select t.partner_id, t.managed_mrr, t.sold_tier_credit, t.tier, t.next_tier, t.upcoming_renewals, t.calculated_at
       from jsonb_to_recordset(?::jsonb) as t(partner_id text, managed_mrr numeric, sold_tier_credit numeric, tier text, next_tier text, upcoming_renewals int, calculated_at timestamptz)
     on conflict (partner_id) do update set managed_mrr = excluded.managed_mrr, sold_tier_credit = excluded.sold_tier_credit,
       tier = excluded.tier, next_tier = excluded.next_tier, upcoming_renewals = excluded.upcoming_renewals, calculated_at = excluded.calculated_at`,
    [JSON.stringify(rows.map(({ partnerId, snapshot: s, calculatedAt }) => ({
      partner_id: partnerId, managed_mrr: s.managedMrr, sold_tier_credit: s.soldTierCredit, tier: s.tier.current, next_tier: s.tier.next,
      upcoming_renewals: s.upcomingRenewals, calculated_at: calculatedAt.toISOString(),
    })))],
  );
}
