import type { Em } from '../db/orm.js';
import { computeManagedMrr, computeSoldCredit, computeTier, countUpcomingRenewals, type Churn, type Sale, type SoldCreditReport } from '../domain/credit.js';
import { defaultTierThresholds } from '../../config/tiers.js';

export const monthOf = (d: Date) => d.toISOString().slice(0, 7);
export const dayOf = (d: Date) => d.toISOString().slice(0, 10);

interface ClientFacts { hubId: string; status: 'active' | 'terminated'; mrr: number; renewalDate: string | null; managed: boolean }

/** Every fact a partner's credit is computed from. */
export interface CreditFacts { clients: ClientFacts[]; sales: Sale[]; churns: Churn[] }

type Column<T> = T[] | null;
interface FactsRow {
  id: string;
  /** Column arrays (null for a partner without any): hubId, status, mrr, renewalDate, managed. */
  clients: [Column<string>, Column<ClientFacts['status']>, Column<number>, Column<string | null>, Column<boolean>];
  /** saleId, hubId, closedOn, mrr; in the domain's order (closedOn, then saleId), which only spares the worker's sort some work. */
  sales: [Column<string>, Column<string>, Column<string>, Column<number>];
  /** hubId, on. */
  churns: [Column<string>, Column<string>];
}

/**
 * One row per partner id of the array parameter, its facts aggregated in Postgres as column arrays
 * (`json_agg` of plain columns: dates come out as `YYYY-MM-DD`, numerics as JSON numbers, both read
 * exactly as `::text` + `Number()` would). Every aggregate of one subquery reads the same rows in
 * the same order, so the columns line up. A client is managed when a tagged, active employee of the
 * partner has active access to it.
 *
 * The ids are a constant array literal (not JSON to unpack), so the planner knows how many partners
 * the query is for: with an unknown count it assumes 100, and the estimated cost of a group of 25
 * crossed `jit_above_cost`, spending about 20 ms per query on JIT compilation.
 */
const FACTS_SQL = `select p.id,
   (select json_build_array(json_agg(c.hub_id), json_agg(c.status), json_agg(c.mrr), json_agg(c.renewal_date), json_agg(m.hub_id is not null))
      from client c
      left join (select distinct a.hub_id from access a join employee e on e.partner_id = a.partner_id and e.email = a.email
                  where a.partner_id = p.id and a.state = 'active' and e.tagged and e.status = 'active') m on m.hub_id = c.hub_id
     where c.partner_id = p.id) as clients,
   (select json_build_array(json_agg(s.sale_id), json_agg(s.hub_id), json_agg(s.closed_on), json_agg(s.mrr))
      from (select sale_id, hub_id, closed_on, mrr from sale where partner_id = p.id order by closed_on, sale_id collate "C") s) as sales,
   (select json_build_array(json_agg(hub_id), json_agg(on_date)) from churn where partner_id = p.id) as churns
  from unnest(array[?]::text[]) as p(id)`;

function factsOf(row: FactsRow): CreditFacts {
  const [cHub, cStatus, cMrr, cRenewal, cManaged] = row.clients;
  const [sId, sHub, sClosed, sMrr] = row.sales;
  const [kHub, kOn] = row.churns;
  return {
    clients: (cHub ?? []).map((hubId, i) => ({ hubId, status: cStatus![i]!, mrr: Number(cMrr![i]), renewalDate: cRenewal![i] ?? null, managed: cManaged![i]! })),
    sales: (sId ?? []).map((saleId, i) => ({ saleId, clientHubId: sHub![i]!, closedOn: sClosed![i]!, mrr: Number(sMrr![i]) })),
    churns: (kHub ?? []).map((clientHubId, i) => ({ clientHubId, on: kOn![i]! })),
  };
}

/**
 * Loads every fact of many partners' credit in one set-based query (aggregated in Postgres per
 * partner, no per-row ORM loading): their clients (with whether a tagged employee has active
 * access), sales and churns. Every requested partner is in the map (an unknown one with no facts).
 */
export async function loadCreditFactsMany(em: Em, partnerIds: readonly string[]): Promise<Map<string, CreditFacts>> {
  const facts = new Map<string, CreditFacts>();
  if (partnerIds.length === 0) return facts;
  const rows = await em.execute<FactsRow[]>(FACTS_SQL, [[...partnerIds]]);
  for (const row of rows) facts.set(row.id, factsOf(row));
  return facts;
}

/** Loads every fact of one partner's credit (the same query as for many). */
export async function loadCreditFacts(em: Em, partnerId: string): Promise<CreditFacts> {
  return (await loadCreditFactsMany(em, [partnerId])).get(partnerId) ?? { clients: [], sales: [], churns: [] };
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

/** A partner's credit and tier for `month` (at `now`), from its facts: pure, no I/O. */
export function computeCreditSnapshot(facts: CreditFacts, opts: { now: Date; month: string; renewalAlertDays: number }): CreditSnapshot {
  const { clients, sales, churns } = facts;
  const managedMrr = computeManagedMrr(clients.map((c) => ({ hubId: c.hubId, status: c.status, mrr: c.mrr, hasTaggedActiveAccess: c.managed })));
  const report = computeSoldCredit(sales, churns, { from: opts.month, to: opts.month });
  const soldTierCredit = report.months.at(-1)?.total ?? 0;
  const tier = computeTier(soldTierCredit, defaultTierThresholds);
  const upcomingRenewals = countUpcomingRenewals(clients, dayOf(opts.now), opts.renewalAlertDays);
  return { managedMrr, soldTierCredit, tier, upcomingRenewals, month: opts.month };
}

/**
 * Recomputes a partner's credit and tier from source facts (never incremented) and stores the
 * snapshot the dashboard reads: one read, one write. Running it twice, late or concurrently gives
 * the same numbers. A month other than the current one is computed and returned, not stored.
 */
export async function recalculateCredit(em: Em, partnerId: string, opts: { now: Date; month?: string; renewalAlertDays: number }): Promise<CreditSnapshot> {
  const month = opts.month ?? monthOf(opts.now);
  const snapshot = computeCreditSnapshot(await loadCreditFacts(em, partnerId), { now: opts.now, month, renewalAlertDays: opts.renewalAlertDays });
  if (month !== monthOf(opts.now)) return snapshot;
  const row = { partnerId, snapshot, calculatedAt: opts.now };
  await storeSnapshots(em, [row]);
  return snapshot;
}

/**
 * The same for many partners (current month): one read for all of them, then one write of every
 * snapshot computed. A partner whose numbers cannot be computed (its facts break a domain rule) is
 * returned in `failed` and left out of the write; the others are stored. A failing read or write
 * throws, and then nothing was stored.
 */
export async function recalculateCredits(em: Em, partnerIds: readonly string[], opts: { now: Date; renewalAlertDays: number }): Promise<{ stored: string[]; failed: { partnerId: string; error: Error }[] }> {
  const month = monthOf(opts.now);
  const facts = await loadCreditFactsMany(em, partnerIds);
  const rows: SnapshotRow[] = [];
  const failed: { partnerId: string; error: Error }[] = [];
  for (const partnerId of new Set(partnerIds)) {
    try {
      const snapshot = computeCreditSnapshot(facts.get(partnerId) ?? { clients: [], sales: [], churns: [] }, { now: opts.now, month, renewalAlertDays: opts.renewalAlertDays });
      rows.push({ partnerId, snapshot, calculatedAt: opts.now });
    } catch (err) {
      failed.push({ partnerId, error: err instanceof Error ? err : new Error(String(err)) });
    }
  }
  if (rows.length) await storeSnapshots(em, rows);
  return { stored: rows.map((r) => r.partnerId), failed };
}

export interface SnapshotRow { partnerId: string; snapshot: CreditSnapshot; calculatedAt: Date }

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
