import { sql } from 'kysely';
import type { Em } from './orm.js';
import type { Churn, ClientStatus, Sale } from '../domain/credit.js';
import { jsonb, rows, run } from './exec.js';
import { managedSharesOf } from './managed-mrr.js';

/**
 * Partner credit: the facts it is computed from (`client`, `client_account`, `access`, `employee`, `sale`, `churn`),
 * read set-based for many partners at once, and the snapshots the dashboard reads (`credit_snapshot`).
 */

/**
 * A client as credit sees it: `managed` when the partner manages it (see `managedSharesOf`); `mrr`
 * is then the partner's share of the client's platform MRR, else the whole platform MRR.
 */
export interface CreditClient { hubId: string; status: ClientStatus; mrr: number; renewalDate: string | null; managed: boolean }

/** Every fact a partner's credit is computed from. */
export interface CreditFacts { clients: CreditClient[]; sales: Sale[]; churns: Churn[] }

type Column<T> = T[] | null;
interface FactsRow {
  id: string;
  /** Column arrays (null for a partner without any): hubId, status, mrr, renewalDate, managed. */
  clients: [Column<string>, Column<ClientStatus>, Column<number>, Column<string | null>, Column<boolean>];
  /** saleId, hubId, closedOn, mrr; in the domain's order (closedOn, then saleId), which only spares the worker's sort some work. */
  sales: [Column<string>, Column<string>, Column<string>, Column<number>];
  /** hubId, on. */
  churns: [Column<string>, Column<string>];
}

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
 * partner, no per-row loading): their clients (with whether a tagged employee has active access),
 * sales and churns. Every requested partner is in the map (an unknown one with no facts).
 *
 * One row per partner id, its facts as column arrays (`json_agg` of plain columns: dates come out
 * as `YYYY-MM-DD`, numerics as JSON numbers, both read exactly as `::text` + `Number()` would).
 * Every aggregate of one subquery reads the same rows in the same order, so the columns line up.
 *
 * The ids are one `text[]` parameter (not JSON to unpack), so the planner knows how many partners
 * the query is for: with an unknown count it assumes 100, and the estimated cost of a group of 25
 * crossed `jit_above_cost`, spending about 20 ms per query on JIT compilation.
 */
export async function loadCreditFacts(em: Em, partnerIds: readonly string[]): Promise<Map<string, CreditFacts>> {
  const facts = new Map<string, CreditFacts>();
  if (partnerIds.length === 0) return facts;
  const found = await rows(em, sql<FactsRow>`select p.id,
     (select json_build_array(json_agg(c.hub_id), json_agg(c.status), json_agg(coalesce(m.cents / 100.0, ca.mrr, 0)), json_agg(ca.renewal_date), json_agg(m.hub_id is not null))
        from client c
        left join client_account ca on ca.hub_id = c.hub_id
        left join ${managedSharesOf(sql`p.id`)} m on m.hub_id = c.hub_id
       where c.partner_id = p.id) as clients,
     (select json_build_array(json_agg(s.sale_id), json_agg(s.hub_id), json_agg(s.closed_on), json_agg(s.mrr))
        from (select sale_id, hub_id, closed_on, mrr from sale where partner_id = p.id order by closed_on, sale_id collate "C") s) as sales,
     (select json_build_array(json_agg(hub_id), json_agg(on_date)) from churn where partner_id = p.id) as churns
    from unnest(${[...partnerIds]}::text[]) as p(id)`);
  for (const row of found) facts.set(row.id, factsOf(row));
  return facts;
}

/** A partner's credit and tier as the dashboard shows it. */
export interface SnapshotRow {
  partnerId: string;
  managedMrr: number;
  soldTierCredit: number;
  tier: string;
  nextTier: string | null;
  upcomingRenewals: number;
  calculatedAt: Date;
}

/** Writes dashboard snapshots, many partners in one statement. */
export async function storeSnapshots(em: Em, snapshots: readonly SnapshotRow[]): Promise<void> {
  const set = snapshots.map((s) => ({
    partner_id: s.partnerId, managed_mrr: s.managedMrr, sold_tier_credit: s.soldTierCredit, tier: s.tier, next_tier: s.nextTier,
    upcoming_renewals: s.upcomingRenewals, calculated_at: s.calculatedAt.toISOString(),
  }));
  await run(em, sql`insert into credit_snapshot (partner_id, managed_mrr, sold_tier_credit, tier, next_tier, upcoming_renewals, calculated_at)
    select t.partner_id, t.managed_mrr, t.sold_tier_credit, t.tier, t.next_tier, t.upcoming_renewals, t.calculated_at
      from jsonb_to_recordset(${jsonb(set)}) as t(partner_id text, managed_mrr numeric, sold_tier_credit numeric, tier text, next_tier text, upcoming_renewals int, calculated_at timestamptz)
    on conflict (partner_id) do update set managed_mrr = excluded.managed_mrr, sold_tier_credit = excluded.sold_tier_credit,
      tier = excluded.tier, next_tier = excluded.next_tier, upcoming_renewals = excluded.upcoming_renewals, calculated_at = excluded.calculated_at`);
}
