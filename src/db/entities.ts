import { defineEntity, p, type InferEntity } from '@mikro-orm/core';

/**
 * The schema, table by table, as the migrations in `./migrations` create it. These definitions are
 * the truth MikroORM compares the database with (`npm run db:migration:check`, and
 * `test/integration/schema.test.ts`): a change here without a migration, or a migration without a
 * change here, fails that check. Column names follow MikroORM's default underscore naming
 * (`partnerId` ↔ `partner_id`); `em.getKysely()` types its tables and columns from these entities.
 *
 * Notes for readers of the SQL: every `text` column is `p.text()` (not `p.string()`, which is
 * `varchar(255)`); `bigserial` columns are `bigint` read as strings (what `pg` returns); partial
 * indexes carry their predicate in `where`; names of constraints Postgres generated
 * (`…_key`, `…_fkey`) are spelled out, so MikroORM does not try to rename them.
 */

/**
 * The check of a date that credit is computed from: a real day of years 0001–9999, what the API
 * accepts (no `infinity`, `-infinity`, BC date or year past 9999, which a direct database write
 * could store and the recalculation's hand-made date reading cannot take; migration
 * Migration20261203000001_credit_date_checks). Written as Postgres prints it back, so MikroORM's
 * diff stays empty.
 */
const creditDateCheck = (column: string) => `${column} >= '0001-01-01' and ${column} <= '9999-12-31'`;

/** A partner account. */
export const Partner = defineEntity({
  name: 'Partner',
  tableName: 'partner',
  properties: {
    id: p.text().primary(),
    name: p.text(),
    emailDomains: p.json<string[]>().default('[]'),
    team: p.json<Record<string, { name: string; email: string }>>().default('{}'),
    /** Where the partner is told about grants, declines, expiries and ending accesses (none: not told). */
    notifyEmail: p.text().nullable(),
    locale: p.text().default('en'),
    /** `email`: assigning emails the client; `manual`: pending without email until the platform reports the portal user. */
    accessRequests: p.text().default('email').check("access_requests in ('email','manual')"),
    createdAt: p.datetime().defaultRaw('now()').onCreate(() => new Date()),
    updatedAt: p.datetime().defaultRaw('now()').onCreate(() => new Date()).onUpdate(() => new Date()),
  },
});
export type Partner = InferEntity<typeof Partner>;

/** A user of a partner account; `tagged` marks a partner employee. */
export const Employee = defineEntity({
  name: 'Employee',
  tableName: 'employee',
  properties: {
    partner: () => p.manyToOne(Partner).primary().mapToPk().foreignKeyName('employee_partner_id_fkey').updateRule('no action').deleteRule('no action'),
    email: p.text().primary(),
    name: p.text().nullable(),
    tagged: p.boolean().default(false),
    status: p.text().default('active').check("status in ('active','removed')"),
    updatedAt: p.datetime().defaultRaw('now()'),
  },
});
export type Employee = InferEntity<typeof Employee>;

/** A client in a partner's client list: the partner's relationship only (its name for the client, active or terminated). */
export const Client = defineEntity({
  name: 'Client',
  tableName: 'client',
  properties: {
    partner: () => p.manyToOne(Partner).primary().mapToPk().foreignKeyName('client_partner_id_fkey').updateRule('no action').deleteRule('no action'),
    hubId: p.text().primary(),
    name: p.text(),
    status: p.text().default('active').check("status in ('active','terminated')"),
    updatedAt: p.datetime().defaultRaw('now()'),
  },
  indexes: [{ name: 'client_by_hub', properties: ['hubId'] }],
});
export type Client = InferEntity<typeof Client>;

/**
 * The platform's facts about a client, one record per hubId shared by every partner that lists it
 * (contract §3): only a `clients:sync` token sets them, last write wins.
 */
export const ClientAccount = defineEntity({
  name: 'ClientAccount',
  tableName: 'client_account',
  properties: {
    hubId: p.text().primary(),
    /** Where access requests go; null: none known (a pair needing an email fails NO_CLIENT_CONTACT). */
    contactEmail: p.text().nullable(),
    locale: p.text().default('en'),
    mrr: p.decimal('number').precision(14).scale(2).default(0),
    products: p.json<string[]>().default('[]'),
    /** A real day, 0001-01-01..9999-12-31 (see {@link creditDateCheck}). */
    renewalDate: p.date().nullable().check(creditDateCheck('renewal_date')),
    info: p.json<Record<string, unknown>>().default('{}'),
    updatedAt: p.datetime().defaultRaw('now()'),
  },
});
export type ClientAccount = InferEntity<typeof ClientAccount>;

/** A portal user of a client (platform-reported): the email already has access to the client's portal. */
export const PortalUser = defineEntity({
  name: 'PortalUser',
  tableName: 'portal_user',
  properties: {
    hubId: p.text().primary(),
    email: p.text().primary(),
  },
});
export type PortalUser = InferEntity<typeof PortalUser>;

/**
 * The access of a partner's employee to a client. An email is linked to at most one partner record
 * per client while `pending` or `active` (the partial unique index `access_one_partner_per_email`).
 * A pair granted by the client (`active` with `grantedAt`) is the employee's portal membership.
 */
export const Access = defineEntity({
  name: 'Access',
  tableName: 'access',
  properties: {
    partnerId: p.text().primary(),
    hubId: p.text().primary(),
    email: p.text().primary(),
    state: p.text().check("state in ('pending','active','declined','expired','revoked')"),
    lastIssuedAt: p.datetime().nullable(),
    commandId: p.text().nullable(),
    updatedAt: p.datetime().defaultRaw('now()'),
    /** When the current request's email was written. */
    requestedAt: p.datetime().nullable(),
    /** When the current request expires (requestedAt + GRANT_TTL_DAYS). */
    expiresAt: p.datetime().nullable(),
    /** Bumped on every new request: the links of earlier requests die. */
    requestSeq: p.integer().default(0),
    /** The reminder day-offsets already sent for this requestSeq. */
    remindersSent: p.json<number[]>().default('[]'),
    lastEmailAt: p.datetime().nullable(),
    /** When the client granted the pair (its portal membership). */
    grantedAt: p.datetime().nullable(),
    /** The end of a time-bound access (null: no end). */
    accessUntil: p.datetime().nullable(),
    /** The ending reminders (day-offsets) already sent for this accessUntil. */
    endRemindersSent: p.json<number[]>().default('[]'),
  },
  uniques: [{ name: 'access_one_partner_per_email', properties: ['hubId', 'email'], where: "state in ('pending','active')" }],
  indexes: [
    { name: 'access_live_by_employee', properties: ['partnerId', 'email'], where: "state in ('pending','active')" },
    { name: 'access_pending_expiry', properties: ['expiresAt'], where: "state = 'pending'" },
    { name: 'access_until_live', properties: ['accessUntil'], where: "state in ('pending','active') and access_until is not null" },
  ],
});
export type Access = InferEntity<typeof Access>;

/**
 * The command log: every accepted command, the source of truth for its status. `seq` orders a
 * partner's commands (per-partner FIFO); `rangeSize` is the pair-range size the command was fanned
 * out with.
 */
export const CommandRecord = defineEntity({
  name: 'CommandRecord',
  tableName: 'command',
  properties: {
    id: p.text().primary(),
    seq: p.bigint('string').autoincrement(),
    partnerId: p.text(),
    type: p.text(),
    payload: p.json<Record<string, unknown>>(),
    bodyHash: p.text(),
    issuedAt: p.datetime().nullable(),
    tokenName: p.text().nullable(),
    state: p.text().default('waiting').check("state in ('waiting','active','completed','failed')"),
    attempts: p.integer().default(0),
    result: p.json<unknown>().nullable(),
    error: p.json<{ code: string; message: string }>().nullable(),
    itemsTotal: p.integer().default(0),
    createdAt: p.datetime().defaultRaw('now()'),
    startedAt: p.datetime().nullable(),
    finishedAt: p.datetime().nullable(),
    enqueuedAt: p.datetime().nullable(),
    rangeSize: p.integer().default(0),
  },
  indexes: [
    { name: 'command_unfinished', properties: ['createdAt'], where: "state in ('waiting','active')" },
    { name: 'command_by_partner', properties: ['partnerId', 'createdAt'] },
    { name: 'command_unfinished_by_partner', properties: ['partnerId', 'seq'], where: "state in ('waiting','active')" },
  ],
});
export type CommandRecord = InferEntity<typeof CommandRecord>;

/** One (client, employee) pair of a pair command, with its own state and outcome. */
export const CommandItem = defineEntity({
  name: 'CommandItem',
  tableName: 'command_item',
  properties: {
    command: () => p.manyToOne(CommandRecord).primary().mapToPk().foreignKeyName('command_item_command_id_fkey').updateRule('no action').deleteRule('cascade'),
    idx: p.integer().primary(),
    hubId: p.text(),
    email: p.text(),
    state: p.text().default('waiting').check("state in ('waiting','active','completed','failed')"),
    outcome: p.text().nullable(),
    error: p.json<{ code: string; message: string }>().nullable(),
    attempts: p.integer().default(0),
    finishedAt: p.datetime().nullable(),
  },
  indexes: [{ name: 'command_item_open', properties: ['command'], where: "state in ('waiting','active')" }],
});
export type CommandItem = InferEntity<typeof CommandItem>;

/** A refused pair: the email is already linked to another partner record for the client. */
export const Conflict = defineEntity({
  name: 'Conflict',
  tableName: 'conflict',
  properties: {
    id: p.bigint('string').primary().autoincrement(),
    partnerId: p.text(),
    hubId: p.text(),
    email: p.text(),
    commandId: p.text(),
    at: p.datetime().defaultRaw('now()'),
  },
  uniques: [{ name: 'conflict_command_id_hub_id_email_key', properties: ['commandId', 'hubId', 'email'] }],
  indexes: [{ name: 'conflict_by_partner', properties: ['partnerId', 'at'] }],
});
export type Conflict = InferEntity<typeof Conflict>;

/**
 * A grant link: only the SHA-256 of its token is stored (the token is an HMAC of the pair and its
 * request_seq, derived again when the email is rendered). A new request withdraws the pair's
 * earlier unused links.
 */
export const GrantToken = defineEntity({
  name: 'GrantToken',
  tableName: 'grant_token',
  properties: {
    tokenHash: p.text().primary(),
    partnerId: p.text(),
    hubId: p.text(),
    email: p.text(),
    expiresAt: p.datetime(),
    usedAt: p.datetime().nullable(),
    createdAt: p.datetime().defaultRaw('now()'),
    requestSeq: p.integer().default(0),
    commandId: p.text().nullable(),
    withdrawnAt: p.datetime().nullable(),
    decided: p.text().nullable().check("decided in ('granted','declined')"),
  },
  indexes: [{ name: 'grant_token_by_pair', properties: ['partnerId', 'hubId', 'email'] }],
});
export type GrantToken = InferEntity<typeof GrantToken>;

/**
 * An email to send, written in the same transaction as the state it announces. `notificationKey`
 * makes it unique; `claimedUntil` keeps the reconciler away while the writing worker sends it itself.
 */
export const Outbox = defineEntity({
  name: 'Outbox',
  tableName: 'outbox',
  properties: {
    id: p.bigint('string').primary().autoincrement(),
    notificationKey: p.text().unique('outbox_notification_key_key'),
    kind: p.text(),
    partnerId: p.text(),
    payload: p.json<Record<string, unknown>>(),
    state: p.text().default('pending').check("state in ('pending','sent','failed')"),
    attempts: p.integer().default(0),
    error: p.json<{ code: string; message: string }>().nullable(),
    messageId: p.text().nullable(),
    createdAt: p.datetime().defaultRaw('now()'),
    sentAt: p.datetime().nullable(),
    claimedUntil: p.datetime().nullable(),
  },
  indexes: [{ name: 'outbox_pending', properties: ['createdAt'], where: "state = 'pending'" }],
});
export type Outbox = InferEntity<typeof Outbox>;

/** A sale (a fact for sold tier credit); `saleId` identifies it per partner. */
export const Sale = defineEntity({
  name: 'Sale',
  tableName: 'sale',
  properties: {
    partnerId: p.text().primary(),
    saleId: p.text().primary(),
    hubId: p.text(),
    closedOn: p.date().check(creditDateCheck('closed_on')),
    mrr: p.decimal('number').precision(14).scale(2),
  },
});
export type Sale = InferEntity<typeof Sale>;

/** The day a client stopped paying: its live credit expires. */
export const Churn = defineEntity({
  name: 'Churn',
  tableName: 'churn',
  properties: {
    partnerId: p.text().primary(),
    hubId: p.text().primary(),
    onDate: p.date().primary().check(creditDateCheck('on_date')),
  },
});
export type Churn = InferEntity<typeof Churn>;

/** The last computed credit and tier of a partner (recomputed from the facts, never incremented). */
export const CreditSnapshot = defineEntity({
  name: 'CreditSnapshot',
  tableName: 'credit_snapshot',
  properties: {
    partnerId: p.text().primary(),
    managedMrr: p.decimal('number').precision(14).scale(2),
    soldTierCredit: p.decimal('number').precision(14).scale(2),
    tier: p.text(),
    nextTier: p.text().nullable(),
    upcomingRenewals: p.integer(),
    calculatedAt: p.datetime(),
  },
});
export type CreditSnapshot = InferEntity<typeof CreditSnapshot>;

/** A partner's webhook subscription (contract §8). Ending one keeps the row (`endedAt`), so its delivery log stays readable. */
export const Webhook = defineEntity({
  name: 'Webhook',
  tableName: 'webhook',
  properties: {
    id: p.text().primary(),
    partnerId: p.text(),
    url: p.text(),
    events: p.json<string[]>(),
    description: p.text().nullable(),
    /** The signing key, sealed with WEBHOOK_SECRET_KEY (`v1:…`, src/webhooks/secret-box.ts): every send is signed with it; shown to the partner once, never listed or logged. */
    secret: p.text(),
    createdAt: p.datetime().defaultRaw('now()'),
    endedAt: p.datetime().nullable(),
    endReason: p.text().nullable().check("end_reason in ('deleted','gone')"),
  },
  indexes: [{ name: 'webhook_live_by_partner', properties: ['partnerId', 'createdAt'], where: 'ended_at is null' }],
});
export type Webhook = InferEntity<typeof Webhook>;

/** The outbox of webhook events, written in the transaction of the change each reports; `seq` is their order, `id` the `webhook-id`. */
export const WebhookEvent = defineEntity({
  name: 'WebhookEvent',
  tableName: 'webhook_event',
  properties: {
    seq: p.bigint('string').primary().autoincrement(),
    id: p.text().unique('webhook_event_id_key'),
    type: p.text(),
    partnerId: p.text(),
    data: p.json<Record<string, unknown>>(),
    createdAt: p.datetime().defaultRaw('now()'),
  },
  // Retention: the lifecycle sweep reads the oldest events first (src/db/webhook-store.ts pruneWebhookEvents).
  indexes: [{ name: 'webhook_event_created_at', properties: ['createdAt'] }],
});
export type WebhookEvent = InferEntity<typeof WebhookEvent>;

/** One event to one subscription: its attempts, last answer and next attempt (`pendingSince` starts the retry window). */
export const WebhookDelivery = defineEntity({
  name: 'WebhookDelivery',
  tableName: 'webhook_delivery',
  properties: {
    id: p.bigint('string').primary().autoincrement(),
    eventSeq: p.bigint('string'),
    webhookId: p.text(),
    state: p.text().default('pending').check("state in ('pending','delivered','failed','dropped')"),
    attempts: p.integer().default(0),
    lastStatus: p.integer().nullable(),
    lastError: p.text().nullable(),
    lastAttemptAt: p.datetime().nullable(),
    nextAttemptAt: p.datetime().defaultRaw('now()'),
    pendingSince: p.datetime().defaultRaw('now()'),
    deliveredAt: p.datetime().nullable(),
    createdAt: p.datetime().defaultRaw('now()'),
  },
  uniques: [{ name: 'webhook_delivery_event_seq_webhook_id_key', properties: ['eventSeq', 'webhookId'] }],
  indexes: [
    { name: 'webhook_delivery_pending', properties: ['webhookId', 'eventSeq'], where: "state = 'pending'" },
    { name: 'webhook_delivery_log', properties: ['webhookId', 'id'] },
    { name: 'webhook_delivery_due', properties: ['nextAttemptAt'], where: "state = 'pending'" },
  ],
});
export type WebhookDelivery = InferEntity<typeof WebhookDelivery>;

/** Every table of the schema, for `MikroORM.init` and for `em.getKysely()`'s types. */
export const entities = [
  Partner,
  Employee,
  Client,
  ClientAccount,
  PortalUser,
  Access,
  CommandRecord,
  CommandItem,
  Conflict,
  GrantToken,
  Outbox,
  Sale,
  Churn,
  CreditSnapshot,
  Webhook,
  WebhookEvent,
  WebhookDelivery,
] as const;
