import { z } from 'zod';

/** Ids in paths and commands: 1–128 characters of [A-Za-z0-9._:-]. */
export const idPattern = /^[A-Za-z0-9._:-]{1,128}$/;
export const commandIdSchema = z.string().regex(idPattern, 'must be 1–128 characters of [A-Za-z0-9._:-]');
const hubId = z.string().min(1).max(128).regex(/^[A-Za-z0-9._:-]+$/, 'must be characters of [A-Za-z0-9._:-]');
/** Emails are case-insensitive: stored and compared lower-cased. */
const email = z.email().max(254).transform((s) => s.toLowerCase());
const text = (max: number) => z.string().trim().min(1).max(max);
const isoDate = z.iso.date();
const money = z.number().finite().min(-1e11).max(1e11);
const person = z.object({ name: text(200), email }).strict();

const base = {
  commandId: commandIdSchema.optional(),
  issuedAt: z.iso.datetime({ offset: true }).optional(),
};

/** A pair command: every client × every employee, at most 1000 pairs. */
const pairs = {
  clientHubIds: z.array(hubId).min(1).max(1000),
  employeeEmails: z.array(email).min(1).max(1000),
};
const maxPairs = (v: { clientHubIds: string[]; employeeEmails: string[] }, ctx: z.RefinementCtx) => {
  if (v.clientHubIds.length * v.employeeEmails.length > 1000) {
    ctx.addIssue({ code: 'custom', path: ['clientHubIds'], message: `${v.clientHubIds.length} clients × ${v.employeeEmails.length} employees is more than 1000 pairs` });
  }
};

/** Client information shown by GET /clients/{hubId} (contract §5), all optional. */
const clientInfo = {
  companyInfo: z.object({
    domain: z.string().max(253).optional(),
    industry: z.string().max(200).optional(),
    employees: z.number().int().min(0).max(10_000_000).optional(),
    country: z.string().max(100).optional(),
    city: z.string().max(200).optional(),
  }).strict().optional(),
  subscriptions: z.array(z.object({ product: text(200), tier: z.string().max(100).optional(), mrr: money.optional() }).strict()).max(100).optional(),
  contactTier: z.string().max(100).optional(),
  emailTier: z.string().max(100).optional(),
  renewalOwner: person.optional(),
  renewalRep: person.optional(),
  currentSubscription: z.object({ name: text(200), mrr: money.optional(), endsOn: isoDate.optional() }).strict().optional(),
  renewalSubscription: z.object({ name: text(200), mrr: money.optional(), startsOn: isoDate.optional() }).strict().optional(),
  portalUsage: z.object({ products: z.array(text(200)).max(100).optional(), apps: z.array(text(200)).max(500).optional() }).strict().optional(),
  platformEngagementScore: z.number().min(0).max(100).optional(),
};
export const clientInfoKeys = Object.keys(clientInfo) as (keyof typeof clientInfo)[];

export const commandSchemas = {
  'partner.upsert': z.object({ ...base, type: z.literal('partner.upsert'), name: text(200), emailDomains: z.array(z.string().min(1).max(253)).max(50).optional(), team: z.object({ channelAccountManager: person.optional(), channelConsultant: person.optional() }).strict().optional() }).strict(),
  'employee.tag': z.object({ ...base, type: z.literal('employee.tag'), email, name: text(200).optional() }).strict(),
  'employee.untag': z.object({ ...base, type: z.literal('employee.untag'), email }).strict(),
  'employee.remove': z.object({ ...base, type: z.literal('employee.remove'), email }).strict(),
  'client.upsert': z.object({
    ...base,
    type: z.literal('client.upsert'),
    hubId,
    name: text(200),
    contactEmail: email,
    locale: z.enum(['en', 'sv', 'de', 'it', 'pt']).optional(),
    mrr: money.min(0).optional(),
    products: z.array(text(200)).max(100).optional(),
    renewalDate: isoDate.optional(),
    portalUserEmails: z.array(email).max(1000).optional(),
    ...clientInfo,
  }).strict(),
  'client.terminate': z.object({ ...base, type: z.literal('client.terminate'), hubId }).strict(),
  'access.assign': z.object({ ...base, type: z.literal('access.assign'), ...pairs }).strict().superRefine(maxPairs),
  'access.grant': z.object({ ...base, type: z.literal('access.grant'), clientHubId: hubId, employeeEmail: email }).strict(),
  'access.revoke': z.object({ ...base, type: z.literal('access.revoke'), ...pairs }).strict().superRefine(maxPairs),
  'sale.record': z.object({ ...base, type: z.literal('sale.record'), saleId: z.string().regex(idPattern), clientHubId: hubId, closedOn: isoDate, mrr: money }).strict(),
  'client.churn': z.object({ ...base, type: z.literal('client.churn'), clientHubId: hubId, on: isoDate }).strict(),
  'credit.recalculate': z.object({ ...base, type: z.literal('credit.recalculate'), month: z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'must be YYYY-MM').optional() }).strict(),
  'team.email': z.object({ ...base, type: z.literal('team.email'), to: z.enum(['channelAccountManager', 'channelConsultant']), subject: text(200), body: text(20_000) }).strict(),
} as const;

export type CommandType = keyof typeof commandSchemas;
export const commandTypes = Object.keys(commandSchemas) as CommandType[];
/** Commands only an `admin` token may post. */
export const adminOnlyTypes: ReadonlySet<CommandType> = new Set(['partner.upsert']);
/** Commands applied pair by pair, each pair its own job with its own outcome. */
export const pairTypes: ReadonlySet<CommandType> = new Set(['access.assign', 'access.revoke']);

export type Command = { [K in CommandType]: z.infer<typeof commandSchemas[K]> }[CommandType];
export type CommandOf<K extends CommandType> = z.infer<typeof commandSchemas[K]>;

export const batchSchema = z.object({ commands: z.array(z.unknown()).min(1).max(1000) }).strict();

export interface Issue {
  path: string;
  message: string;
}

/** Turns zod issues into the contract's `issues: [{path, message}]`, path as a JSON-pointer-like dotted string. */
export function toIssues(error: z.ZodError, prefix: (string | number)[] = []): Issue[] {
  return error.issues.flatMap((i) =>
    // An unknown key is reported on its parent: name the key itself in the path.
    i.code === 'unrecognized_keys'
      ? i.keys.map((k) => ({ path: [...prefix, ...i.path, k].map(String).join('.'), message: 'unknown field' }))
      : [{ path: [...prefix, ...i.path].map(String).join('.'), message: i.message }],
  );
}

/** Validates one command; the discriminator is checked first so an unknown type gets one clear issue. */
export function parseCommand(raw: unknown, prefix: (string | number)[] = []): { ok: true; command: Command } | { ok: false; issues: Issue[] } {
  const type = (raw as { type?: unknown } | null)?.type;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { ok: false, issues: [{ path: prefix.join('.'), message: 'must be a JSON object' }] };
  }
  if (typeof type !== 'string' || !(type in commandSchemas)) {
    return { ok: false, issues: [{ path: [...prefix, 'type'].join('.'), message: `must be one of ${commandTypes.join(', ')}` }] };
  }
  const parsed = commandSchemas[type as CommandType].safeParse(raw);
  if (!parsed.success) return { ok: false, issues: toIssues(parsed.error, prefix) };
  return { ok: true, command: parsed.data as Command };
}

/** Validates a batch; issue paths are `commands.{i}.…`. All valid or none. */
export function parseCommands(raws: unknown[]): { ok: true; commands: Command[] } | { ok: false; issues: Issue[] } {
  const commands: Command[] = [];
  const issues: Issue[] = [];
  raws.forEach((raw, i) => {
    const r = parseCommand(raw, ['commands', i]);
    if (r.ok) commands.push(r.command);
    else issues.push(...r.issues);
  });
  return issues.length ? { ok: false, issues } : { ok: true, commands };
}

/** A stable JSON text (keys sorted) of a command without its commandId: what "the same body" means. */
export function canonicalBody(command: Command): string {
  const { commandId: _ignored, ...rest } = command;
  return stableStringify(rest);
}

export function stableStringify(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableStringify(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
