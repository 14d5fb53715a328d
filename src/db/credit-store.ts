import { sql, type RawBuilder } from 'kysely';
import type { Em } from './orm.js';
import type { Churn, ClientStatus, Sale } from '../domain/credit.js';
import { jsonb, rows, run } from './exec.js';
import { managerRanksOfMany, shareCents } from './managed-mrr.js';

/**
 * Partner credit: the facts it is computed from (`client`, `client_account`, `access`, `employee`, `sale`, `churn`),
 * read set-based for many partners at once, and the snapshots the dashboard reads (`credit_snapshot`).
 */

/**
 * A client as credit sees it: `managed` when the partner manages it (see `managedSharesOfMany`); `mrr`
 * is then the partner's share of the client's platform MRR, else the whole platform MRR.
 */
export interface CreditClient { hubId: string; status: ClientStatus; mrr: number; renewalDate: string | null; managed: boolean }

/** Every fact a partner's credit is computed from. */
export interface CreditFacts { clients: CreditClient[]; sales: Sale[]; churns: Churn[] }

interface FactsRow {
  id: string;
  /** JSON arrays of text (null for a partner without any), one element per fact; see {@link loadCreditFacts}. */
  sales: string | null;
  clients: string | null;
  churns: string | null;
}

/**
 * Reads the fields of one fact (see {@link loadCreditFacts}) from the left: the comma-separated
 * fixed-format fields one by one, then the rest. No array per fact: 150,000 sales a run.
 */
class FactReader {
  private at = 0;
  constructor(private readonly s: string) {}
  field(): string {
    const comma = this.s.indexOf(',', this.at);
    if (comma < 0) throw new Error(`malformed credit fact ${JSON.stringify(this.s.slice(0, 200))}`);
    const value = this.s.slice(this.at, comma);
    this.at = comma + 1;
    return value;
  }
  rest(): string {
    return this.s.slice(this.at);
  }
}

const SURROGATE = /[\uD800-\uDFFF]/;

/** `s` cut after `codePoints` code points (Postgres' `length`): a UTF-16 offset unless `s` has characters beyond the BMP. */
function cutAt(s: string, codePoints: number): [string, string] {
  if (!SURROGATE.test(s)) return [s.slice(0, codePoints), s.slice(codePoints)];
  const chars = Array.from(s);
  return [chars.slice(0, codePoints).join(''), chars.slice(codePoints).join('')];
}

const parseList = (json: string | null): string[] => (json === null ? [] : (JSON.parse(json) as string[]));

const DAY_MS = 86_400_000;

/**
 * Days as the read sends them, the day number since 1970-01-01 (Postgres' `date - date`), read as
 * `YYYY-MM-DD`, each number converted once per read: a group's facts fall on a few hundred days.
 * Cheaper in Postgres than `to_char(…, 'YYYY-MM-DD')` (about 6 of the 20 ms of a group's sales),
 * and the same day: both calendars are the proleptic Gregorian one, and the dates are days of
 * years 0001–9999 (Migration20261203000001_credit_date_checks), which `toISOString` writes with
 * four digits as `to_char` does.
 */
class Days {
  private readonly seen = new Map<string, string>();
  of(dayNumber: string): string {
    let day = this.seen.get(dayNumber);
    if (day === undefined) {
      day = new Date(Number(dayNumber) * DAY_MS).toISOString().slice(0, 10);
      this.seen.set(dayNumber, day);
    }
    return day;
  }
}

function factsOf(row: FactsRow, days: Days): CreditFacts {
  return {
    clients: parseList(row.clients).map((f) => {
      const r = new FactReader(f);
      const status = r.field() as ClientStatus;
      const mrr = Number(r.field());
      const renewal = r.field();
      const managed = r.field() === 't';
      return { hubId: r.rest(), status, mrr, renewalDate: renewal === '' ? null : days.of(renewal), managed };
    }),
    sales: parseList(row.sales).map((f) => {
      const r = new FactReader(f);
      const closedOn = days.of(r.field());
      const mrr = Number(r.field());
      const hubLength = Number(r.field());
      const [clientHubId, saleId] = cutAt(r.rest(), hubLength);
      return { saleId, clientHubId, closedOn, mrr };
    }),
    churns: parseList(row.churns).map((f) => {
      const r = new FactReader(f);
      const on = days.of(r.field());
      return { clientHubId: r.rest(), on };
    }),
  };
}

/**
 * What a snapshot can depend on: sales and churns from `factsFrom` (`YYYY-MM-DD`, the first day of
 * `firstMonthAffectingTotal(month)`, domain/credit.ts), and the active clients that are either
 * managed (managed MRR) or renew from `today` to `today + renewalWindowDays` (upcoming renewals,
 * the rule of `countUpcomingRenewals`). Every other fact adds nothing to any of its numbers; the
 * domain still computes them from the facts that are left, with the same results.
 */
export interface SnapshotScope { factsFrom: string; today: string; renewalWindowDays: number }

/** A date column as its day number since 1970-01-01 (text), whatever the session's DateStyle: see {@link Days}. */
const day = (col: RawBuilder<unknown>) => sql<string>`(${col} - date '1970-01-01')::text`;

/**
 * Loads every fact of many partners' credit in one set-based statement: their clients (with
 * whether the partner manages them, see `managedSharesOfMany`, and then its share of the MRR,
 * from `managerRanksOfMany` and `shareCents` on the `client_account` row the read joins anyway),
 * sales and churns. Every requested partner is in the map (an unknown one with no facts).
 *
 * One row per partner id; each kind of fact is grouped per partner (`group by`, each table read
 * once for all the partners, no subquery per partner) into a JSON array of text, one element per
 * fact: its fixed-format fields (dates as day numbers, see {@link Days}; numerics as `::text`,
 * which `Number()` reads exactly; `t`/`f`; the status) joined by commas, then the free text (which may hold commas:
 * everything after the last fixed field is its): `hub_id`, and for a sale `hub_id` then `sale_id`
 * with the length of `hub_id` as a fixed field. Measured on the bench's data (1,000 partners, 100
 * clients and 300 sales each), in groups of 100, with the scope below: about 0.45 s of Postgres
 * CPU for all of them (0.5 s with `to_char` dates and `managedSharesOfMany` joined whole) and 0.1 s
 * of the worker to parse. The previous form (a correlated subquery per
 * partner, `json_agg` of each typed column) cost Postgres about 3 ms a partner and the worker
 * 0.8 s to parse; plain rows (one per fact) cost the worker 0.55 s to parse the sales alone.
 * Facts come in no particular order: the domain orders them itself.
 *
 * With `scope`, only the facts that can count in a snapshot (see {@link SnapshotScope}), which
 * halves what the bench's recalculation reads, transfers and computes.
 *
 * The ids are one `text[]` parameter (not JSON to unpack), so the planner knows how many partners
 * the query is for (with an unknown count it assumes 100, and misjudges the cost).
 */
export async function loadCreditFacts(em: Em, partnerIds: readonly string[], scope?: SnapshotScope): Promise<Map<string, CreditFacts>> {
  const facts = new Map<string, CreditFacts>();
  if (partnerIds.length === 0) return facts;
  const ids = sql`${[...partnerIds]}::text[]`;
  // A sale whose amount is not a number stays in however old, so that it fails the partner as before.
  const salesScope = scope ? sql`and (closed_on >= ${scope.factsFrom}::date or mrr = 'NaN')` : sql``;
  const churnScope = scope ? sql`and on_date >= ${scope.factsFrom}::date` : sql``;
  const clientScope = scope
    ? sql`and c.status = 'active' and (m.hub_id is not null or ca.renewal_date between ${scope.today}::date and ${scope.today}::date + ${scope.renewalWindowDays}::int)`
    : sql``;
  const found = await rows(em, sql<FactsRow>`select p.id, s.sales, c.clients, k.churns
    from unnest(${ids}) as p(id)
    left join (
      select partner_id, json_agg(${day(sql`closed_on`)} || ',' || mrr::text || ',' || length(hub_id) || ',' || hub_id || sale_id)::text as sales
        from sale where partner_id = any(${ids}) ${salesScope} group by partner_id) s on s.partner_id = p.id
    left join (
      select c.partner_id,
             json_agg(c.status || ',' || coalesce(${shareCents(sql`ca.mrr`, sql`m.rank`, sql`m.n`)} / 100.0, ca.mrr, 0)::text || ',' || coalesce(${day(sql`ca.renewal_date`)}, '')
                      || ',' || case when m.hub_id is null then 'f' else 't' end || ',' || c.hub_id)::text as clients
        from client c
        left join client_account ca on ca.hub_id = c.hub_id
        left join ${managerRanksOfMany(ids)} m on m.partner_id = c.partner_id and m.hub_id = c.hub_id
       where c.partner_id = any(${ids}) ${clientScope}
       group by c.partner_id) c on c.partner_id = p.id
    left join (
      select partner_id, json_agg(${day(sql`on_date`)} || ',' || hub_id)::text as churns
        from churn where partner_id = any(${ids}) ${churnScope} group by partner_id) k on k.partner_id = p.id`);
  const days = new Days();
  for (const row of found) facts.set(row.id, factsOf(row, days));
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
