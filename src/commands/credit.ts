import type { Em } from '../db/orm.js';
import { computeManagedMrr, computeSoldCredit, computeTier, countUpcomingRenewals, firstMonthAffectingTotal, type SoldCreditReport } from '../domain/credit.js';
import { defaultTierThresholds } from '../../config/tiers.js';
import { loadCreditFacts, storeSnapshots, type CreditFacts, type SnapshotRow, type SnapshotScope } from '../db/credit-store.js';
import { insertEvents } from '../db/webhook-store.js';
import type { NewEvent } from '../webhooks/events.js';

export const monthOf = (d: Date) => d.toISOString().slice(0, 7);
export const dayOf = (d: Date) => d.toISOString().slice(0, 10);

const noFacts = (): CreditFacts => ({ clients: [], sales: [], churns: [] });

/** The monthly sold tier credit report of a partner over a range of months. */
export async function creditReport(em: Em, partnerId: string, range: { from: string; to: string }): Promise<SoldCreditReport> {
  const { sales, churns } = (await loadCreditFacts(em, [partnerId])).get(partnerId) ?? noFacts();
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

/** The facts a snapshot of `month` at `now` can depend on (see SnapshotScope): only those are read. */
const scopeOf = (opts: { now: Date; renewalAlertDays: number }, month: string): SnapshotScope =>
  ({ factsFrom: `${firstMonthAffectingTotal(month)}-01`, today: dayOf(opts.now), renewalWindowDays: opts.renewalAlertDays });

const snapshotRow = (partnerId: string, s: CreditSnapshot, calculatedAt: Date): SnapshotRow => ({
  partnerId, managedMrr: s.managedMrr, soldTierCredit: s.soldTierCredit, tier: s.tier.current, nextTier: s.tier.next, upcomingRenewals: s.upcomingRenewals, calculatedAt,
});

/** The `credit.recalculated` webhook event of a stored snapshot (`commandId`: the `credit.recalculate` command; null: the schedule or a first read). */
const recalculatedEvent = (r: SnapshotRow, month: string, commandId: string | null): NewEvent => ({
  type: 'credit.recalculated',
  partnerId: r.partnerId,
  data: { month, managedMrr: r.managedMrr, soldTierCredit: r.soldTierCredit, tier: r.tier, nextTier: r.nextTier, upcomingRenewals: r.upcomingRenewals, calculatedAt: r.calculatedAt.toISOString(), commandId },
});

/** Stores snapshots and their `credit.recalculated` events in one transaction (the caller's, if it is in one). */
async function storeWithEvents(em: Em, snapshots: readonly SnapshotRow[], month: string, commandId: string | null): Promise<void> {
  await em.transactional(async (tx) => {
    await storeSnapshots(tx, snapshots);
    await insertEvents(tx, snapshots.map((r) => recalculatedEvent(r, month, commandId)));
  }, { propagation: 'required' });
}

/**
 * Recomputes a partner's credit and tier from source facts (never incremented) and stores the
 * snapshot the dashboard reads: one read, one write. Running it twice, late or concurrently gives
 * the same numbers. A month other than the current one is computed and returned, not stored.
 */
export async function recalculateCredit(em: Em, partnerId: string, opts: { now: Date; month?: string; renewalAlertDays: number; commandId?: string }): Promise<CreditSnapshot> {
  const month = opts.month ?? monthOf(opts.now);
  const facts = (await loadCreditFacts(em, [partnerId], scopeOf(opts, month))).get(partnerId) ?? noFacts();
  const snapshot = computeCreditSnapshot(facts, { now: opts.now, month, renewalAlertDays: opts.renewalAlertDays });
  if (month !== monthOf(opts.now)) return snapshot;
  await storeWithEvents(em, [snapshotRow(partnerId, snapshot, opts.now)], month, opts.commandId ?? null);
  return snapshot;
}

/**
 * The same for many partners (current month): one read for all of them, then one write of every
 * snapshot computed. A partner whose numbers cannot be computed (its facts break a domain rule) is
 * returned in `failed` and left out of the write; the others are stored. A failing read or write
 * throws, and then nothing was stored. `readSlot`, if given, runs the read (the caller's limit on
 * how many such reads run at once).
 */
export async function recalculateCredits(
  em: Em,
  partnerIds: readonly string[],
  opts: { now: Date; renewalAlertDays: number; readSlot?: <T>(read: () => Promise<T>) => Promise<T> },
): Promise<{ stored: string[]; failed: { partnerId: string; error: Error }[] }> {
  const month = monthOf(opts.now);
  const read = () => loadCreditFacts(em, partnerIds, scopeOf(opts, month));
  const facts = await (opts.readSlot ? opts.readSlot(read) : read());
  const snapshots: SnapshotRow[] = [];
  const failed: { partnerId: string; error: Error }[] = [];
  for (const partnerId of new Set(partnerIds)) {
    try {
      const snapshot = computeCreditSnapshot(facts.get(partnerId) ?? noFacts(), { now: opts.now, month, renewalAlertDays: opts.renewalAlertDays });
      snapshots.push(snapshotRow(partnerId, snapshot, opts.now));
    } catch (err) {
      failed.push({ partnerId, error: err instanceof Error ? err : new Error(String(err)) });
    }
  }
  if (snapshots.length) await storeWithEvents(em, snapshots, month, null);
  return { stored: snapshots.map((r) => r.partnerId), failed };
}
