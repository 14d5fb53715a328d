import type { Em } from '../../db/orm.js';
import { clientInfoKeys } from '../../commands/schemas.js';
import { Partner } from '../../db/entities.js';

const num = (v: unknown) => (v == null ? null : Number(v));

export async function partnerExists(em: Em, partnerId: string): Promise<boolean> {
  return (await em.count(Partner, { id: partnerId })) > 0;
}

/** Contract §5: the partner employee list with each employee's live accesses. */
export async function listEmployees(em: Em, partnerId: string) {
  const rows = await em.execute<{ email: string; name: string | null; tagged: boolean; status: string; clients: { hubId: string; access: string }[] }[]>(
    `select e.email, e.name, e.tagged, e.status,
            coalesce((select json_agg(json_build_object('hubId', a.hub_id, 'access', a.state) order by a.hub_id)
                        from access a where a.partner_id = e.partner_id and a.email = e.email and a.state <> 'revoked'), '[]') as clients
       from employee e where e.partner_id = ? order by e.email`,
    [partnerId],
  );
  return { employees: rows };
}

const clientSelect = `
  select c.hub_id, c.name, c.status, c.mrr, c.products, to_char(c.renewal_date, 'YYYY-MM-DD') as renewal_date,
         c.contact_email, c.locale, c.info,
         exists (select 1 from access a join employee e on e.partner_id = a.partner_id and e.email = a.email
                  where a.partner_id = c.partner_id and a.hub_id = c.hub_id and a.state = 'active' and e.tagged and e.status = 'active') as managed,
         coalesce((select json_agg(json_build_object('email', a.email, 'access', a.state) order by a.email)
                     from access a where a.partner_id = c.partner_id and a.hub_id = c.hub_id and a.state <> 'revoked'), '[]') as employees
    from client c`;

interface ClientRow { hub_id: string; name: string; status: string; mrr: string; products: string[]; renewal_date: string | null; contact_email: string; locale: string; info: Record<string, unknown>; managed: boolean; employees: { email: string; access: string }[] }

const clientSummary = (r: ClientRow) => ({
  hubId: r.hub_id,
  name: r.name,
  status: r.status,
  mrr: num(r.mrr),
  products: r.products,
  renewalDate: r.renewal_date,
  managed: r.managed,
  employees: r.employees,
});

/** Contract §5: the client list with access states and the managed flag. */
export async function listClients(em: Em, partnerId: string) {
  const rows = await em.execute<ClientRow[]>(`${clientSelect} where c.partner_id = ? order by c.hub_id`, [partnerId]);
  return { clients: rows.map(clientSummary) };
}

/** Contract §5: one client with its client info (company, subscriptions, tiers, renewals, portal usage, engagement). */
export async function getClient(em: Em, partnerId: string, hubId: string) {
  const [r] = await em.execute<ClientRow[]>(`${clientSelect} where c.partner_id = ? and c.hub_id = ?`, [partnerId, hubId]);
  if (!r) return null;
  const info: Record<string, unknown> = {};
  for (const k of clientInfoKeys) if (r.info[k] !== undefined) info[k] = r.info[k];
  return {
    ...clientSummary(r),
    contactEmail: r.contact_email,
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
      renewalDate: r.renewal_date,
    },
    portalUsage: info.portalUsage ?? null,
    platformEngagementScore: info.platformEngagementScore ?? null,
  };
}

/** Contract §5: the duplicate-email conflicts this partner ran into (never naming the other partner). */
export async function listConflicts(em: Em, partnerId: string) {
  const rows = await em.execute<{ email: string; hub_id: string; command_id: string; at: string }[]>(
    'select email, hub_id, command_id, at from conflict where partner_id = ? order by at desc, id desc limit 1000',
    [partnerId],
  );
  return { conflicts: rows.map((r) => ({ email: r.email, clientHubId: r.hub_id, commandId: r.command_id, at: new Date(r.at).toISOString() })) };
}
