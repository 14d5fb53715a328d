import type { CommandType } from '../../src/commands/schemas.js';

/**
 * One valid command of every type with every field it has (nested ones included), for the
 * table-driven validation and authorization tests. `test/unit/schemas.test.ts` checks that each
 * example is valid and names every field of its schema, so a new field must be added here.
 */
export const fullExamples: { [K in CommandType]: Record<string, unknown> & { type: K } } = {
  'partner.upsert': {
    type: 'partner.upsert',
    name: 'Acme Partners',
    emailDomains: ['acme.test'],
    team: { channelAccountManager: { name: 'Cam Manager', email: 'cam@hub.test' }, channelConsultant: { name: 'Cora Consultant', email: 'cora@hub.test' } },
    notifyEmail: 'desk@acme.test',
    locale: 'sv',
    accessRequests: 'email',
  },
  'employee.tag': { type: 'employee.tag', email: 'ann@acme.test', name: 'Ann Agent' },
  'employee.untag': { type: 'employee.untag', email: 'ann@acme.test' },
  'employee.remove': { type: 'employee.remove', email: 'ann@acme.test' },
  'client.upsert': {
    type: 'client.upsert',
    hubId: 'c-1',
    name: 'Client One',
    contactEmail: 'boss@c1.test',
    locale: 'sv',
    mrr: 1200,
    products: ['marketing'],
    renewalDate: '2027-01-31',
    portalUserEmails: ['user@c1.test'],
    companyInfo: { domain: 'c1.test', industry: 'Retail', employees: 40, country: 'Sweden', city: 'Malmö' },
    subscriptions: [{ product: 'marketing', tier: 'pro', mrr: 1200 }],
    contactTier: 'Professional',
    emailTier: 'Starter',
    renewalOwner: { name: 'Rita Owner', email: 'rita@c1.test' },
    renewalRep: { name: 'Rex Rep', email: 'rex@hub.test' },
    currentSubscription: { name: 'Pro 2026', mrr: 1200, endsOn: '2027-01-31' },
    renewalSubscription: { name: 'Pro 2027', mrr: 1300, startsOn: '2027-02-01' },
    portalUsage: { products: ['marketing'], apps: ['forms'] },
    platformEngagementScore: 72,
  },
  'client.terminate': { type: 'client.terminate', hubId: 'c-1' },
  'access.assign': { type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: ['ann@acme.test'], accessUntil: '2099-01-31' },
  'access.grant': { type: 'access.grant', clientHubId: 'c-1', employeeEmail: 'ann@acme.test' },
  'access.revoke': { type: 'access.revoke', clientHubIds: ['c-1'], employeeEmails: ['ann@acme.test'] },
  'access.resend': { type: 'access.resend', clientHubIds: ['c-1'], employeeEmails: ['ann@acme.test'] },
  'access.extend': { type: 'access.extend', clientHubIds: ['c-1'], employeeEmails: ['ann@acme.test'], accessUntil: '2099-06-30T12:00:00Z' },
  'sale.record': { type: 'sale.record', saleId: 's-1', clientHubId: 'c-1', closedOn: '2026-03-15', mrr: 500 },
  'client.churn': { type: 'client.churn', clientHubId: 'c-1', on: '2026-06-01' },
  'credit.recalculate': { type: 'credit.recalculate', month: '2026-03' },
  'team.email': { type: 'team.email', to: 'channelAccountManager', subject: 'Renewal of Client One', body: 'Hello,\r\nplease call me.\n\nAnn', replyTo: 'ann@acme.test' },
};

/** The envelope every command may carry besides its own fields. */
export const envelope = { commandId: 'cmd-example-1', issuedAt: '2026-03-01T10:00:00+01:00' };

/** Every string in a value (at any depth) with its dotted path, as the contract's issues name it. */
export function stringLeaves(value: unknown, path: (string | number)[] = []): { path: (string | number)[]; value: string }[] {
  if (typeof value === 'string') return [{ path, value }];
  if (Array.isArray(value)) return value.flatMap((v, i) => stringLeaves(v, [...path, i]));
  if (value !== null && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => stringLeaves(v, [...path, k]));
  return [];
}

/** A deep copy of `value` with the leaf at `path` replaced. */
export function withLeaf<T>(value: T, path: (string | number)[], leaf: unknown): T {
  if (path.length === 0) return leaf as T;
  const [head, ...rest] = path;
  if (Array.isArray(value)) return value.map((v, i) => (i === head ? withLeaf(v, rest, leaf) : v)) as T;
  const obj = value as Record<string, unknown>;
  return { ...obj, [head!]: withLeaf(obj[head!], rest, leaf) } as T;
}
