import { z } from 'zod';

/** Ids in paths and commands: 1–128 characters of [A-Za-z0-9._:-]. */
export const idPattern = /^[A-Za-z0-9._:-]{1,128}$/;
export const commandIdSchema = z.string().regex(idPattern, 'must be 1–128 characters of [A-Za-z0-9._:-]');

/**
 * Text that Postgres can store: no NUL and no lone UTF-16 surrogate. Every string of every command
 * is checked (see `command`), so such text is refused with 400 at validation instead of failing
 * the insert of a whole group of requests.
 */
export const isStorableText = (s: string): boolean => !s.includes('\u0000') && s.isWellFormed();

/** One line: no control character (CR, LF, tab, DEL, C1…) and no Unicode line or paragraph separator. NUL is left to the storable check, which names it. */
const oneLine = /^[^\x01-\x1f\x7f-\x9f\u2028\u2029]*$/;
const oneLineMessage = 'must be one line without control characters';
/** Single-line text that may be empty (client-info fields). */
const line = (max: number) => z.string().max(max).regex(oneLine, oneLineMessage);
/** Single-line text, trimmed, not empty: names, subjects, products. They may end up in mail headers. */
const text = (max: number) => z.string().trim().min(1).max(max).regex(oneLine, oneLineMessage);
/** Multi-line text (an email body): line breaks allowed. */
const paragraphs = (max: number) => z.string().trim().min(1).max(max);

const hubId = z.string().min(1).max(128).regex(/^[A-Za-z0-9._:-]+$/, 'must be characters of [A-Za-z0-9._:-]');
/** Emails are case-insensitive: stored and compared lower-cased. A strict shape (no spaces, no CR/LF, a dotted domain). */
const email = z.email().max(254).transform((s) => s.toLowerCase());
/** YYYY-MM-DD of a real day from year 0001 (Postgres has no year 0). */
const isoDate = z.iso.date().refine((d) => !d.startsWith('0000'), 'must be a date from year 0001');
/** An ISO-8601 instant with offset whose UTC year is 0001–9999 (what a timestamptz column takes). */
const instant = z.iso.datetime({ offset: true }).refine((v) => {
  const year = new Date(v).getUTCFullYear();
  return year >= 1 && year <= 9999;
}, 'must be an instant between the years 0001 and 9999');
const money = z.number().finite().min(-1e11).max(1e11);
/** The locales of emails and pages (contract §4). */
const locale = z.enum(['en', 'sv', 'de', 'it', 'pt']);
/**
 * The end of a time-bound access: an ISO-8601 instant, or YYYY-MM-DD meaning 00:00 UTC that day;
 * in the future when the command is accepted.
 */
export const accessUntilSchema = z.union([instant, isoDate]).refine((v) => new Date(v.length === 10 ? `${v}T00:00:00Z` : v).getTime() > Date.now(), 'must be in the future');
const person = z.object({ name: text(200), email }).strict();

const base = {
  commandId: commandIdSchema.optional(),
  issuedAt: instant.optional(),
};
/** The fields every command may carry besides its own: the envelope. */
const envelopeKeys: ReadonlySet<string> = new Set(['type', ...Object.keys(base)]);

/** Adds an issue for every string (at any depth) that Postgres cannot store, with its path. */
function refuseUnstorable(value: unknown, ctx: z.RefinementCtx, path: (string | number)[] = []): void {
  if (typeof value === 'string') {
    if (!isStorableText(value)) ctx.addIssue({ code: 'custom', path, message: 'must not contain NUL characters or unpaired surrogates', input: value });
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => refuseUnstorable(v, ctx, [...path, i]));
  } else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) refuseUnstorable(v, ctx, [...path, k]);
  }
}

/**
 * One command's schema: the envelope, the type literal, the fields; strict; every string storable.
 * The storable check walks the parsed value only once it has the schema's shape (no other issue),
 * so it never walks an arbitrarily deep value sent in a wrong or unknown field.
 */
const command = <T extends string, S extends z.ZodRawShape>(type: T, shape: S) =>
  z.object({ ...base, type: z.literal(type), ...shape }).strict()
    .superRefine((v, ctx) => refuseUnstorable(v, ctx), { when: (payload) => payload.issues.length === 0 });

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
    domain: line(253).optional(),
    industry: line(200).optional(),
    employees: z.number().int().min(0).max(10_000_000).optional(),
    country: line(100).optional(),
    city: line(200).optional(),
  }).strict().optional(),
  subscriptions: z.array(z.object({ product: text(200), tier: line(100).optional(), mrr: money.optional() }).strict()).max(100).optional(),
  contactTier: line(100).optional(),
  emailTier: line(100).optional(),
  renewalOwner: person.optional(),
  renewalRep: person.optional(),
  currentSubscription: z.object({ name: text(200), mrr: money.optional(), endsOn: isoDate.optional() }).strict().optional(),
  renewalSubscription: z.object({ name: text(200), mrr: money.optional(), startsOn: isoDate.optional() }).strict().optional(),
  portalUsage: z.object({ products: z.array(text(200)).max(100).optional(), apps: z.array(text(200)).max(500).optional() }).strict().optional(),
  platformEngagementScore: z.number().min(0).max(100).optional(),
};
export const clientInfoKeys = Object.keys(clientInfo) as (keyof typeof clientInfo)[];

export const commandSchemas = {
  'partner.upsert': command('partner.upsert', {
    name: text(200),
    emailDomains: z.array(line(253).min(1)).max(50).optional(),
    team: z.object({ channelAccountManager: person.optional(), channelConsultant: person.optional() }).strict().optional(),
    notifyEmail: email.nullable().optional(),
    locale: locale.optional(),
    accessRequests: z.enum(['email', 'manual']).optional(),
  }),
  'employee.tag': command('employee.tag', { email, name: text(200).optional() }),
  'employee.untag': command('employee.untag', { email }),
  'employee.remove': command('employee.remove', { email }),
  'client.upsert': command('client.upsert', {
    hubId,
    name: text(200),
    contactEmail: email.optional(),
    locale: locale.optional(),
    mrr: money.min(0).optional(),
    products: z.array(text(200)).max(100).optional(),
    renewalDate: isoDate.optional(),
    portalUserEmails: z.array(email).max(1000).optional(),
    ...clientInfo,
  }),
  'client.terminate': command('client.terminate', { hubId }),
  'access.assign': command('access.assign', { ...pairs, accessUntil: accessUntilSchema.optional() }).superRefine(maxPairs),
  'access.grant': command('access.grant', { clientHubId: hubId, employeeEmail: email }),
  'access.revoke': command('access.revoke', pairs).superRefine(maxPairs),
  /** Each pending, declined or expired pair is asked again (a new link and email); throttled within an hour of the last email. */
  'access.resend': command('access.resend', pairs).superRefine(maxPairs),
  /** Each pending or active pair gets the new end (`null`: no end). */
  'access.extend': command('access.extend', { ...pairs, accessUntil: accessUntilSchema.nullable() }).superRefine(maxPairs),
  'sale.record': command('sale.record', { saleId: z.string().regex(idPattern), clientHubId: hubId, closedOn: isoDate, mrr: money }),
  'client.churn': command('client.churn', { clientHubId: hubId, on: isoDate }),
  'credit.recalculate': command('credit.recalculate', { month: z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'must be YYYY-MM').optional() }),
  'team.email': command('team.email', { to: z.enum(['channelAccountManager', 'channelConsultant']), subject: text(200), body: paragraphs(20_000), replyTo: email.optional() }),
} as const;

export type CommandType = keyof typeof commandSchemas;
export const commandTypes = Object.keys(commandSchemas) as CommandType[];
/** Whether a value names a command type: an own key of the table, never an inherited one (`toString`, `__proto__`). */
export const isCommandType = (v: unknown): v is CommandType => typeof v === 'string' && Object.hasOwn(commandSchemas, v);
/** The `type` of a raw command: its own property only. */
const typeOf = (raw: object): unknown => (Object.hasOwn(raw, 'type') ? (raw as { type: unknown }).type : undefined);
/** Commands applied pair by pair, each pair its own job with its own outcome. */
export const pairTypes: ReadonlySet<CommandType> = new Set(['access.assign', 'access.revoke', 'access.resend', 'access.extend']);

/** The token scopes that decide which commands a token may post (contract §3). `admin` holds them all. */
export type CommandScope = 'commands:write' | 'clients:sync' | 'admin';

/** Who may post one command type. */
export interface CommandRule {
  /** A token needs one of these scopes to post the type at all. */
  readonly scopes: readonly CommandScope[];
  /**
   * When set, a token without `clients:sync` may send only these fields (and the envelope:
   * `type`, `commandId`, `issuedAt`); every other field of the type is a platform fact.
   */
  readonly partnerFields?: readonly string[];
}

const partner: CommandRule = { scopes: ['commands:write'] };
const platform: CommandRule = { scopes: ['clients:sync'] };

/**
 * Property-level authorization (contract §3), the one table used by the HTTP intake (single and
 * batch) and the TypeScript producer. A partner token (`commands:write`) acts for the partner: its
 * people and its relationships. Facts about clients (contact, locale, MRR, products, renewal, portal
 * users, client info), sales, churn and grants come from the platform (`clients:sync`). A new
 * `client.upsert` field is a platform fact unless it is added to `partnerFields`.
 */
export const commandPolicy: { readonly [K in CommandType]: CommandRule } = {
  'partner.upsert': { scopes: ['admin'] },
  'employee.tag': partner,
  'employee.untag': partner,
  'employee.remove': partner,
  'client.upsert': { scopes: ['commands:write', 'clients:sync'], partnerFields: ['hubId', 'name'] },
  'client.terminate': partner,
  'access.assign': partner,
  'access.grant': platform,
  'access.revoke': partner,
  'access.resend': partner,
  'access.extend': partner,
  'sale.record': platform,
  'client.churn': platform,
  'credit.recalculate': partner,
  'team.email': partner,
};

/** Every scope that may post some command: what `POST …/commands` asks of a token before it looks at the body. */
export const postingScopes: readonly CommandScope[] = [...new Set(Object.values(commandPolicy).flatMap((r) => r.scopes))].filter((s) => s !== 'admin');

/** The fields of a type that need `clients:sync` (empty when the type has no partner-only subset). */
export function platformFieldsOf(type: CommandType): string[] {
  const rule: CommandRule = commandPolicy[type];
  if (!rule.partnerFields) return [];
  const allowed = new Set(rule.partnerFields);
  return Object.keys(commandSchemas[type].shape).filter((k) => !envelopeKeys.has(k) && !allowed.has(k));
}

/** Why one command may not be posted with these scopes, or null. An unknown type is left to validation (400). */
function commandRefusal(scopes: readonly string[], raw: unknown): { message: string; fields?: string[] } | null {
  if (scopes.includes('admin') || typeof raw !== 'object' || raw === null || Array.isArray(raw)) return null;
  const type = typeOf(raw);
  if (!isCommandType(type)) return null;
  const rule: CommandRule = commandPolicy[type];
  if (!rule.scopes.some((s) => scopes.includes(s))) {
    return { message: `Posting ${type} needs the ${rule.scopes.map((s) => `"${s}"`).join(' or ')} scope.` };
  }
  if (!rule.partnerFields || scopes.includes('clients:sync')) return null;
  const restricted = new Set(platformFieldsOf(type));
  const fields = Object.entries(raw).filter(([k, v]) => v !== undefined && restricted.has(k)).map(([k]) => k).sort();
  if (!fields.length) return null;
  return { message: `Only a token with the "clients:sync" scope may set the platform's facts of ${type}: ${fields.join(', ')}.`, fields };
}

/**
 * Why a token with these scopes may not post these commands (all or nothing, checked before
 * validation), as the body of a 403 FORBIDDEN: the refused fields (`fields`, sorted) and, for a
 * batch, the indexes of the refused commands (`commands`). Null when every command may be posted.
 */
export function commandsRefusal(scopes: readonly string[], raws: readonly unknown[], opts: { batch: boolean }): { message: string; details: Record<string, unknown> } | null {
  const refused = raws.flatMap((raw, index) => {
    const r = commandRefusal(scopes, raw);
    return r ? [{ index, ...r }] : [];
  });
  const first = refused[0];
  if (!first) return null;
  const fields = [...new Set(refused.flatMap((r) => r.fields ?? []))].sort();
  const details: Record<string, unknown> = fields.length ? { fields } : {};
  if (!opts.batch) return { message: first.message, details };
  const more = refused.length > 1 ? ` (and ${refused.length - 1} more refused command${refused.length > 2 ? 's' : ''})` : '';
  return { message: `commands.${first.index}: ${first.message}${more} Nothing was accepted.`, details: { ...details, commands: refused.map((r) => r.index) } };
}

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
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { ok: false, issues: [{ path: prefix.join('.'), message: 'must be a JSON object' }] };
  }
  const type = typeOf(raw);
  if (!isCommandType(type)) {
    return { ok: false, issues: [{ path: [...prefix, 'type'].join('.'), message: `must be one of ${commandTypes.join(', ')}` }] };
  }
  const parsed = commandSchemas[type].safeParse(raw);
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
