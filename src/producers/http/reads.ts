import type { Em } from '../../db/orm.js';
import type { z } from 'zod';
import type { ClientDetail } from './api-schemas.js';
import {
  countPendingRequests, findClientWithAccess, findCreditSnapshot, findPartnerSummary, listClientsWithAccess, listConflicts as listConflictRows, listEmployeesWithAccess,
  managedMrrShares, type ClientRow,
} from '../../db/read-store.js';
import { recalculateCredit } from '../../commands/credit.js';
import { defaultTierThresholds } from '../../../config/tiers.js';
import { pageOf, type Page } from './pagination.js';

export { partnerExists } from '../../db/read-store.js';

const num = (v: string | null) => (v == null ? null : Number(v));
const fromCents = (cents: number) => cents / 100;

/** Who reads: without `employees:read`, no read names the partner's employees (contract §3). */
export interface Reader { canSeeEmployees: boolean }

/** Contract §5: one page of the partner's employees (by email) with each employee's accesses (not revoked). */
export async function listEmployees(em: Em, partnerId: string, page: Page) {
  const found = await listEmployeesWithAccess(em, partnerId, { after: page.after?.[0] ?? null, limit: page.limit + 1 });
  const { items, nextCursor } = pageOf(found, page.limit, (e) => [e.email]);
  return { employees: items, nextCursor };
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
 * Contract §5: one page of the client list (by hubId) with the platform's facts, the managed flag
 * and this partner's live managed MRR share (the dashboard's figure, from the same read), and the
 * accesses by employee (`employees`), or only their count (`employeeCount`) for a reader without
 * `employees:read`.
 */
export async function listClients(em: Em, partnerId: string, reader: Reader, page: Page) {
  const [rows, shares] = await Promise.all([
    listClientsWithAccess(em, partnerId, { withEmployees: reader.canSeeEmployees, after: page.after?.[0] ?? null, limit: page.limit + 1 }),
    managedMrrShares(em, partnerId),
  ]);
  const { items, nextCursor } = pageOf(rows, page.limit, (c) => [c.hubId]);
  return { clients: items.map((r) => clientSummary(r, shares)), nextCursor };
}

type Detail = z.output<typeof ClientDetail>;
/** What the client's record holds of the client info (the client-info fields of client.upsert). */
interface StoredClientInfo {
  companyInfo?: Detail['clientInfo']['companyInfo'];
  subscriptions?: Detail['clientInfo']['subscriptions'];
  contactTier?: string;
  emailTier?: string;
  renewalOwner?: Detail['renewals']['renewalOwner'];
  renewalRep?: Detail['renewals']['renewalRep'];
  currentSubscription?: Detail['renewals']['currentSubscription'];
  renewalSubscription?: Detail['renewals']['renewalSubscription'];
  portalUsage?: Detail['portalUsage'];
  platformEngagementScore?: number;
}

/** Contract §5: one client with its client info (company, subscriptions, tiers, renewals, portal usage, engagement). */
export async function getClient(em: Em, partnerId: string, hubId: string, reader: Reader) {
  const [r, shares] = await Promise.all([
    findClientWithAccess(em, partnerId, hubId, { withEmployees: reader.canSeeEmployees }),
    managedMrrShares(em, partnerId, hubId),
  ]);
  if (!r) return null;
  // The client info as client.upsert validated and stored it (its keys are clientInfoKeys).
  const info = r.info as StoredClientInfo;
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

/** Contract §5: one page of the duplicate-email conflicts this partner ran into, newest first (never naming the other partner). */
export async function listConflicts(em: Em, partnerId: string, page: Page) {
  const after = page.after ? { at: page.after[0]!, id: page.after[1]! } : null;
  const rows = await listConflictRows(em, partnerId, { after, limit: page.limit + 1 });
  const { items, nextCursor } = pageOf(rows, page.limit, (r) => [r.cursorAt, r.id]);
  return { conflicts: items.map((r) => ({ email: r.email, clientHubId: r.hubId, commandId: r.commandId, at: new Date(r.at).toISOString() })), nextCursor };
}

/** Whether a decoded conflicts cursor is an (instant, id) pair. */
export const isConflictCursor = ([at, id]: string[]) => /^\d{4}-\d{2}-\d{2}[ T][0-9:.]+([+-][0-9:]+|Z)?$/.test(at ?? '') && /^[1-9]\d{0,18}$/.test(id ?? '');

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
