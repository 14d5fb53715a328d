import type { Em } from '../../db/orm.js';
import { clientInfoKeys } from '../../commands/schemas.js';
import {
  countPendingRequests, findClientWithAccess, findCreditSnapshot, findPartnerSummary, listClientsWithAccess, listConflicts as listConflictRows, listEmployeesWithAccess,
  managedMrrShares, type ClientRow,
} from '../../db/read-store.js';
import { recalculateCredit } from '../../commands/credit.js';
import { defaultTierThresholds } from '../../../config/tiers.js';

export { partnerExists } from '../../db/read-store.js';

const num = (v: string | null) => (v == null ? null : Number(v));
const fromCents = (cents: number) => cents / 100;

/** Who reads: without `employees:read`, no read names the partner's employees (contract §3). */
export interface Reader { canSeeEmployees: boolean }

/** Contract §5: the partner employee list with each employee's accesses (not revoked). */
export async function listEmployees(em: Em, partnerId: string) {
  return { employees: await listEmployeesWithAccess(em, partnerId) };
}

const clientSummary = (r: ClientRow, shares: Map<string, number>) => {
  const share = shares.get(r.hubId);
  return {
    hubId: r.hubId,
    name: r.name,
    status: r.status,
    mrr: num(r.mrr),
    products: r.products,
    renewalDate: r.renewalDate,
    managed: share !== undefined,
    managedMrr: fromCents(share ?? 0),
    ...(r.employees !== undefined ? { employees: r.employees } : { employeeCount: r.employeeCount ?? 0 }),
  };
};

/**
 * Contract §5: the client list with the platform's facts, the managed flag and this partner's
 * live managed MRR share (the dashboard's figure, from the same read), and the accesses by
 * employee (`employees`), or only their count (`employeeCount`) for a reader without `employees:read`.
 */
export async function listClients(em: Em, partnerId: string, reader: Reader) {
  const [rows, shares] = await Promise.all([
    listClientsWithAccess(em, partnerId, { withEmployees: reader.canSeeEmployees }),
    managedMrrShares(em, partnerId),
  ]);
  return { clients: rows.map((r) => clientSummary(r, shares)) };
}

/** Contract §5: one client with its client info (company, subscriptions, tiers, renewals, portal usage, engagement). */
export async function getClient(em: Em, partnerId: string, hubId: string, reader: Reader) {
  const [r, shares] = await Promise.all([
    findClientWithAccess(em, partnerId, hubId, { withEmployees: reader.canSeeEmployees }),
    managedMrrShares(em, partnerId, hubId),
  ]);
  if (!r) return null;
  const info: Record<string, unknown> = {};
  for (const k of clientInfoKeys) if (r.info[k] !== undefined) info[k] = r.info[k];
  return {
    ...clientSummary(r, shares),
    contactEmail: r.contactEmail,
    locale: r.locale,
    clientInfo: {
      companyInfo: info.companyInfo ?? null,
      subscriptions: info.subscriptions ?? [],
      contactTier: info.contactTier ?? null,
      emailTier: info.emailTier ?? null,
    },
    renewals: {
      renewalOwner: info.renewalOwner ?? null,
      renewalRep: info.renewalRep ?? null,
      currentSubscription: info.currentSubscription ?? null,
      renewalSubscription: info.renewalSubscription ?? null,
      renewalDate: r.renewalDate,
    },
    portalUsage: info.portalUsage ?? null,
    platformEngagementScore: info.platformEngagementScore ?? null,
  };
}

/** Contract §5: the duplicate-email conflicts this partner ran into (never naming the other partner). */
export async function listConflicts(em: Em, partnerId: string) {
  const rows = await listConflictRows(em, partnerId);
  return { conflicts: rows.map((r) => ({ email: r.email, clientHubId: r.hubId, commandId: r.commandId, at: new Date(r.at).toISOString() })) };
}

/** The sold tier credit still missing to the next tier (null at the top), to the cent. */
export function creditToNext(soldTierCredit: number, next: string | null): number | null {
  const threshold = defaultTierThresholds.find((t) => t.name === next);
  if (!threshold) return null;
  return Math.max(0, Math.round(threshold.minCredit * 100) - Math.round(soldTierCredit * 100)) / 100;
}

/**
 * Contract §5: the dashboard. Sold tier credit, tier and upcoming renewals come from the last
 * calculation (computed now when there was none); `managedMrr` and `alerts.pendingRequests` are
 * live, `managedMrr` from the same read as the client list's `managedMrr`.
 */
export async function getDashboard(em: Em, partnerId: string, opts: { now: Date; renewalAlertDays: number }) {
  const [snap, shares, pendingRequests, partner] = await Promise.all([
    findCreditSnapshot(em, partnerId), managedMrrShares(em, partnerId), countPendingRequests(em, partnerId), findPartnerSummary(em, partnerId),
  ]);
  let credit: { soldTierCredit: number; tier: { current: string; next: string | null }; upcomingRenewals: number; calculatedAt: string };
  if (snap) {
    credit = { soldTierCredit: Number(snap.soldTierCredit), tier: { current: snap.tier, next: snap.nextTier }, upcomingRenewals: snap.upcomingRenewals, calculatedAt: new Date(snap.calculatedAt).toISOString() };
  } else {
    // Never calculated yet: compute it now from the facts (the same function the scheduler runs).
    const s = await em.transactional((tx) => recalculateCredit(tx, partnerId, { now: opts.now, renewalAlertDays: opts.renewalAlertDays }));
    credit = { soldTierCredit: s.soldTierCredit, tier: s.tier, upcomingRenewals: s.upcomingRenewals, calculatedAt: opts.now.toISOString() };
  }
  const managedCents = [...shares.values()].reduce((a, b) => a + b, 0);
  return {
    alerts: { upcomingRenewals: credit.upcomingRenewals, pendingRequests },
    managedMrr: fromCents(managedCents),
    soldTierCredit: credit.soldTierCredit,
    tier: { ...credit.tier, creditToNext: creditToNext(credit.soldTierCredit, credit.tier.next) },
    team: partner?.team ?? {},
    partner: { name: partner?.name ?? null, locale: partner?.locale ?? 'en' },
    calculatedAt: credit.calculatedAt,
  };
}
