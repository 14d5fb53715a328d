import { z } from 'zod';
import { commandSchemas, commandTypes, idPattern } from '../../commands/schemas.js';

/**
 * The HTTP API's shapes as zod schemas (contract §3–§9): the route schemas of `server.ts`, from
 * which `@fastify/swagger` writes the OpenAPI document (`GET /openapi.json`) and the typed client
 * is generated. Request parts (path, query, headers, bodies) are checked by the route handlers with
 * these same schemas or the command schemas they reference; response schemas describe exactly what
 * the handlers return (their types are checked against them by the type provider).
 *
 * A schema named with an id in {@link apiRegistry} is one component of the document
 * (`#/components/schemas/<id>`).
 */

/**
 * The metadata of the document's schemas: zod's global registry, where `.describe()` puts the
 * descriptions the document shows; an id makes a schema a component.
 */
export const apiRegistry = z.globalRegistry;

/** Names a schema in the document (keeping its other metadata). */
export function named<T extends z.ZodType>(id: string, schema: T, description?: string): T {
  apiRegistry.add(schema, { ...apiRegistry.get(schema), id, ...(description !== undefined ? { description } : {}) });
  return schema;
}

const instant = z.string().describe('An ISO-8601 instant (UTC)');
const day = z.string().describe('YYYY-MM-DD');

// ---- errors -------------------------------------------------------------------------------------

/** One problem of an invalid request: where (a dotted path) and what. */
export const Issue = named('Issue', z.object({ path: z.string(), message: z.string() }));

/**
 * The contract's error body (§4). `issues` comes with VALIDATION_FAILED, `fields` (and `commands`,
 * for a batch) with a FORBIDDEN that refuses platform fields; other details may follow.
 */
export const ErrorBody = named('Error', z.object({
  error: z.looseObject({
    code: z.string().describe('A stable code: VALIDATION_FAILED, UNAUTHENTICATED, FORBIDDEN, NOT_FOUND, IDEMPOTENCY_KEY_REUSED, PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, RATE_LIMITED, SERVICE_UNAVAILABLE, …'),
    message: z.string(),
    requestId: z.string().describe('The X-Request-Id of the request').optional(),
    issues: z.array(Issue).optional(),
    fields: z.array(z.string()).describe('The refused platform fields').optional(),
    commands: z.array(z.number().int()).describe('The indexes of the refused commands of a batch').optional(),
  }),
}), 'The error body of every 4xx and 5xx answer');

/** What each error status means here, for the document. */
export const errorMeanings: Record<number, string> = {
  400: 'VALIDATION_FAILED: the request is not valid (`issues` says where)',
  401: 'UNAUTHENTICATED: missing or unknown token',
  403: 'FORBIDDEN: the token lacks the scope, may not act on the partner, or may not set these fields',
  404: 'NOT_FOUND: no such partner, resource or route (another partner\'s resources read as unknown)',
  409: 'IDEMPOTENCY_KEY_REUSED: the commandId is known with another body',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE: send application/json',
  429: 'RATE_LIMITED: too many requests for this token (see Retry-After)',
  503: 'SERVICE_UNAVAILABLE: the database or the queue cannot take it now; nothing was accepted',
};

// ---- request parts ------------------------------------------------------------------------------

const id = (what: string) => z.string().regex(idPattern, 'must be 1–128 characters of [A-Za-z0-9._:-]').describe(what);

export const PartnerParams = z.object({ partnerId: id('The partner id') });
export const ClientParams = z.object({ partnerId: id('The partner id'), hubId: id('The client\'s hubId') });
export const CommandParams = z.object({ commandId: z.string().min(1).max(1024).describe('The commandId (1–128 characters of [A-Za-z0-9._:-])') });

/** The headers a command post takes. */
export const CommandHeaders = z.object({
  'idempotency-key': id('Idempotency-Key: the commandId (a retry with the same key and body is answered 200 with the existing command)').optional(),
});

/** The longest `wait` of a command status, in seconds. */
export const MAX_WAIT_SECONDS = 30;
const waitMessage = 'must be a number of seconds from 0 to 30';

/** `?wait=N` of the command status: answer as soon as the command settles, or after N seconds. */
export const StatusQuery = z.object({
  wait: z.coerce.number<string>({ error: waitMessage }).min(0, waitMessage).max(MAX_WAIT_SECONDS, waitMessage)
    .describe('Seconds (at most 30) to wait for the command to be completed or failed before answering').optional(),
});

/** The most items one page of a list holds. */
export const MAX_PAGE = 1000;

const pageLimitMessage = 'must be an integer from 1 to 1000';

/** `limit` and `cursor` of every list (contract §5). */
export const pageQuery = {
  limit: z.coerce.number<string>({ error: pageLimitMessage }).int(pageLimitMessage).min(1, pageLimitMessage).max(MAX_PAGE, pageLimitMessage)
    .describe('Items per page: 1–1000, default 100').optional(),
  cursor: z.string().max(2000).describe('The `nextCursor` of the previous page').optional(),
};
export const PageQuery = z.object(pageQuery);

export const CreditQuery = z.object({
  from: z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'must be YYYY-MM').describe('First month, YYYY-MM (default: 11 months before `to`)').optional(),
  to: z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'must be YYYY-MM').describe('Last month, YYYY-MM (default: this month)').optional(),
});

export const RequestsQuery = z.object({
  state: z.enum(['pending', 'declined', 'expired']).describe('default pending').optional(),
  olderThanDays: z.coerce.number<string>().min(0).max(36_500).describe('Only requests asked at least this many days ago (decimals allowed)').optional(),
  ...pageQuery,
});

export const AuditQuery = z.object({
  from: instant.describe('Commands accepted at or after this instant').optional(),
  to: instant.describe('Commands accepted before this instant').optional(),
  type: z.enum(commandTypes as [string, ...string[]]).describe('One command type').optional(),
  email: z.string().max(254).describe('Commands naming this employee (needs employees:read)').optional(),
  ...pageQuery,
});

// ---- commands -----------------------------------------------------------------------------------

for (const t of commandTypes) named(t, commandSchemas[t]);

/** Any one command, by its `type`. */
export const CommandBody = named('Command', z.discriminatedUnion('type', commandTypes.map((t) => commandSchemas[t]) as unknown as [typeof commandSchemas['partner.upsert'], ...(typeof commandSchemas[keyof typeof commandSchemas])[]]), 'One command (contract §4)');

export const BatchBody = named('CommandBatch', z.object({ commands: z.array(CommandBody).min(1).max(1000) }).strict(), 'Up to 1000 commands, all accepted or none');

const commandState = z.enum(['waiting', 'active', 'completed', 'failed']);

export const Accepted = named('Accepted', z.object({
  commandId: z.string(),
  type: z.enum(commandTypes as [string, ...string[]]),
  state: commandState,
  statusUrl: z.string().describe('GET it for the command\'s status'),
}), 'A command in the command log');

export const AcceptedBatch = named('AcceptedBatch', z.object({ commands: z.array(Accepted) }));

const storedError = named('CommandError', z.object({ code: z.string(), message: z.string() }));

export const CommandStatus = named('CommandStatus', z.object({
  commandId: z.string(),
  type: z.string(),
  partnerId: z.string(),
  state: commandState,
  attempts: z.number().int(),
  createdAt: instant,
  finishedAt: instant.optional(),
  issuedAt: instant.optional(),
  result: z.unknown().describe('What the command did (pair commands: `{pairs, outcomes}` counts)').optional(),
  error: storedError.optional(),
  items: z.array(z.object({
    clientHubId: z.string(),
    employeeEmail: z.string(),
    state: commandState,
    outcome: z.string().describe('pending, active, unchanged, revoked, superseded, resent, throttled, extended').optional(),
    error: storedError.optional(),
  })).describe('One per pair, for the pair commands').optional(),
}), 'A command\'s status from the command log (contract §4)');

/** The commands a dry run takes (contract §9). */
export const previewTypes = ['access.assign', 'access.revoke', 'access.resend'] as const;

export const PreviewBody = named('PreviewCommand', z.discriminatedUnion('type', [
  commandSchemas['access.assign'], commandSchemas['access.revoke'], commandSchemas['access.resend'],
]), 'A pair command to decide without applying it');

export const PreviewResult = named('Preview', z.object({
  type: z.enum(previewTypes),
  items: z.array(z.object({
    clientHubId: z.string(),
    employeeEmail: z.string(),
    outcome: z.string().describe('What applying the command now would do to the pair: pending, active, unchanged, revoked, superseded, resent, throttled').optional(),
    error: storedError.describe('Why the pair would fail (EMAIL_LINKED_TO_OTHER_PARTNER, NOT_A_PARTNER_EMPLOYEE, …)').optional(),
  })),
}), 'What applying the command now would do to each pair; nothing was changed (contract §9)');

// ---- reads --------------------------------------------------------------------------------------

const nextCursor = z.string().nullable().describe('The cursor of the next page; null at the end');
const accessState = z.enum(['pending', 'active', 'declined', 'expired']);
const person = named('Person', z.object({ name: z.string(), email: z.string() }));

export const EmployeeList = named('EmployeeList', z.object({
  employees: z.array(z.object({
    email: z.string(),
    name: z.string().nullable(),
    tagged: z.boolean(),
    status: z.enum(['active', 'removed']),
    clients: z.array(z.object({ hubId: z.string(), access: accessState })).describe('Accesses that were not revoked'),
  })),
  nextCursor,
}), 'The partner\'s employees by email, with their accesses');

const clientFields = {
  hubId: z.string(),
  name: z.string(),
  status: z.enum(['active', 'terminated']),
  mrr: z.number().nullable(),
  products: z.array(z.string()),
  renewalDate: day.nullable(),
  managed: z.boolean().describe('At least one tagged employee of this partner has active access'),
  managedMrr: z.number().describe('This partner\'s share of the client\'s MRR'),
  employees: z.array(z.object({ email: z.string(), access: accessState })).describe('With employees:read').optional(),
  employeeCount: z.number().int().describe('Without employees:read').optional(),
};

export const ClientSummary = named('ClientSummary', z.object(clientFields));

export const ClientList = named('ClientList', z.object({ clients: z.array(ClientSummary), nextCursor }), 'The partner\'s client list by hubId');

const subscription = z.object({ product: z.string(), tier: z.string().optional(), mrr: z.number().optional() });

export const ClientDetail = named('ClientDetail', z.object({
  ...clientFields,
  contactEmail: z.string().nullable(),
  locale: z.string(),
  clientInfo: z.object({
    companyInfo: z.object({ domain: z.string().optional(), industry: z.string().optional(), employees: z.number().optional(), country: z.string().optional(), city: z.string().optional() }).nullable(),
    subscriptions: z.array(subscription),
    contactTier: z.string().nullable(),
    emailTier: z.string().nullable(),
  }),
  renewals: z.object({
    renewalOwner: person.nullable(),
    renewalRep: person.nullable(),
    currentSubscription: z.object({ name: z.string(), mrr: z.number().optional(), endsOn: day.optional() }).nullable(),
    renewalSubscription: z.object({ name: z.string(), mrr: z.number().optional(), startsOn: day.optional() }).nullable(),
    renewalDate: day.nullable(),
  }),
  portalUsage: z.object({ products: z.array(z.string()).optional(), apps: z.array(z.string()).optional() }).nullable(),
  platformEngagementScore: z.number().nullable(),
}), 'One client with its client info, renewals, portal usage and engagement');

export const Dashboard = named('Dashboard', z.object({
  alerts: z.object({ upcomingRenewals: z.number().int(), pendingRequests: z.number().int() }),
  managedMrr: z.number(),
  soldTierCredit: z.number(),
  tier: z.object({ current: z.string(), next: z.string().nullable(), creditToNext: z.number().nullable() }),
  team: z.object({ channelAccountManager: person.optional(), channelConsultant: person.optional() }),
  partner: z.object({ name: z.string().nullable(), locale: z.string() }),
  calculatedAt: instant,
}), 'Managed MRR, sold tier credit, tier, alerts and team');

export const CreditReport = named('CreditReport', z.object({
  months: z.array(z.object({
    month: z.string().describe('YYYY-MM'),
    new: z.number(),
    increased: z.number(),
    expired: z.number(),
    decreased: z.number(),
    total: z.number().describe('Live sold tier credit at the end of the month'),
  })),
}), 'Sold tier credit per month');

export const ConflictList = named('ConflictList', z.object({
  conflicts: z.array(z.object({ email: z.string(), clientHubId: z.string(), commandId: z.string(), at: instant })),
  nextCursor,
}), 'Duplicate-email conflicts this partner ran into, newest first');

export const RequestList = named('RequestList', z.object({
  requests: z.array(z.object({
    clientHubId: z.string(),
    employeeEmail: z.string(),
    state: z.enum(['pending', 'declined', 'expired']),
    requestedAt: instant.nullable(),
    expiresAt: instant.nullable(),
    lastEmailAt: instant.nullable(),
    reminders: z.number().int(),
    ageSeconds: z.number().int(),
  })),
  nextCursor,
}), 'Access requests that wait for a client, oldest first');

export const RenewalList = named('RenewalList', z.object({
  renewals: z.array(z.object({ hubId: z.string(), name: z.string(), renewalDate: day, renewalOwner: person.nullable(), products: z.array(z.string()) })),
}), 'The clients behind alerts.upcomingRenewals, soonest first');

export const AuditPage = named('AuditPage', z.object({
  entries: z.array(z.object({
    commandId: z.string(),
    type: z.string(),
    who: z.string().nullable().describe('The name of the token that posted it'),
    at: instant,
    finishedAt: instant.nullable(),
    state: commandState,
    outcome: z.string().nullable(),
    error: storedError.nullable(),
    command: z.record(z.string(), z.unknown()).describe('The command as posted (without employees:read: no employee emails or names)'),
  })),
  nextCursor,
}), 'The audit trail, newest first');

// ---- operations ---------------------------------------------------------------------------------

export const Health = z.object({ status: z.literal('ok') });
export const Readiness = named('Readiness', z.object({ status: z.enum(['ready', 'not ready']), checks: z.record(z.string(), z.boolean()) }));
