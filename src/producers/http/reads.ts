import type { Em } from '../../db/orm.js';
import { clientInfoKeys } from '../../commands/schemas.js';
import { findClientWithAccess, listClientsWithAccess, listConflicts as listConflictRows, listEmployeesWithAccess, type ClientRow } from '../../db/read-store.js';

export { partnerExists } from '../../db/read-store.js';

const num = (v: string | null) => (v == null ? null : Number(v));

/** Contract §5: the partner employee list with each employee's live accesses. */
export async function listEmployees(em: Em, partnerId: string) {
  return { employees: await listEmployeesWithAccess(em, partnerId) };
}

const clientSummary = (r: ClientRow) => ({
  hubId: r.hubId,
  name: r.name,
  status: r.status,
  mrr: num(r.mrr),
  products: r.products,
  renewalDate: r.renewalDate,
  managed: r.managed,
  employees: r.employees,
});

/** Contract §5: the client list with access states and the managed flag. */
export async function listClients(em: Em, partnerId: string) {
  return { clients: (await listClientsWithAccess(em, partnerId)).map(clientSummary) };
}

/** Contract §5: one client with its client info (company, subscriptions, tiers, renewals, portal usage, engagement). */
export async function getClient(em: Em, partnerId: string, hubId: string) {
  const r = await findClientWithAccess(em, partnerId, hubId);
  if (!r) return null;
  const info: Record<string, unknown> = {};
  for (const k of clientInfoKeys) if (r.info[k] !== undefined) info[k] = r.info[k];
  return {
    ...clientSummary(r),
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
