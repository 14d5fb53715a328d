import type { Em } from '../db/orm.js';
import { computeManagedMrr, computeSoldCredit, computeTier, countUpcomingRenewals, addMonths, type Churn, type Sale, type SoldCreditReport } from '../domain/credit.js';
import { defaultTierThresholds } from '../../config/tiers.js';

export const monthOf = (d: Date) => d.toISOString().slice(0, 7);
export const dayOf = (d: Date) => d.toISOString().slice(0, 10);

/** Loads a partner's sales and churns with two set-based queries. */
export async function loadCreditFacts(em: Em, partnerId: string): Promise<{ sales: Sale[]; churns: Churn[] }> {
  const [sales, churns] = await Promise.all([
    em.execute<{ sale_id: string; hub_id: string; closed_on: string; mrr: string }[]>(
      `select sale_id, hub_id, to_char(closed_on, 'YYYY-MM-DD') as closed_on, mrr from sale where partner_id = ?`, [partnerId]),
    em.execute<{ hub_id: string; on_date: string }[]>(
      `select hub_id, to_char(on_date, 'YYYY-MM-DD') as on_date from churn where partner_id = ?`, [partnerId]),
  ]);
  return {
    sales: sales.map((s) => ({ saleId: s.sale_id, clientHubId: s.hub_id, closedOn: s.closed_on, mrr: Number(s.mrr) })),
    churns: churns.map((c) => ({ clientHubId: c.hub_id, on: c.on_date })),
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
 * snapshot the dashboard reads. Running it twice, late or concurrently gives the same numbers.
 */
export async function recalculateCredit(em: Em, partnerId: string, opts: { now: Date; month?: string; renewalAlertDays: number }): Promise<CreditSnapshot> {
  const month = opts.month ?? monthOf(opts.now);
  const [clients, facts] = await Promise.all([
    em.execute<{ hub_id: string; status: 'active' | 'terminated'; mrr: string; renewal_date: string | null; managed: boolean }[]>(
      `select c.hub_id, c.status, c.mrr, to_char(c.renewal_date, 'YYYY-MM-DD') as renewal_date,
              exists (select 1 from access a join employee e on e.partner_id = a.partner_id and e.email = a.email
                       where a.partner_id = c.partner_id and a.hub_id = c.hub_id and a.state = 'active'
                         and e.tagged and e.status = 'active') as managed
         from client c where c.partner_id = ?`, [partnerId]),
    loadCreditFacts(em, partnerId),
  ]);
  const managedMrr = computeManagedMrr(clients.map((c) => ({ hubId: c.hub_id, status: c.status, mrr: Number(c.mrr), hasTaggedActiveAccess: c.managed })));
  const report = computeSoldCredit(facts.sales, facts.churns, { from: addMonths(month, 0), to: month });
  const soldTierCredit = report.months.at(-1)?.total ?? 0;
  const tier = computeTier(soldTierCredit, defaultTierThresholds);
  const upcomingRenewals = countUpcomingRenewals(clients.map((c) => ({ status: c.status, renewalDate: c.renewal_date })), dayOf(opts.now), opts.renewalAlertDays);
  // The dashboard shows the current month: a recalculation of a past month is returned, not stored.
  if (month !== monthOf(opts.now)) return { managedMrr, soldTierCredit, tier, upcomingRenewals, month };
  await em.execute(
    `insert into credit_snapshot (partner_id, managed_mrr, sold_tier_credit, tier, next_tier, upcoming_renewals, calculated_at)
     values (?, ?, ?, ?, ?, ?, ?)
     on conflict (partner_id) do update set managed_mrr = excluded.managed_mrr, sold_tier_credit = excluded.sold_tier_credit,
       tier = excluded.tier, next_tier = excluded.next_tier, upcoming_renewals = excluded.upcoming_renewals, calculated_at = excluded.calculated_at`,
    [partnerId, managedMrr, soldTierCredit, tier.current, tier.next, upcomingRenewals, opts.now.toISOString()],
  );
  return { managedMrr, soldTierCredit, tier, upcomingRenewals, month };
}
