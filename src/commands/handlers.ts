import type { Em } from '../db/orm.js';
import { clientInfoKeys, type CommandOf, type CommandType } from './schemas.js';
import { DomainError } from '../domain/errors.js';
import { activateManualRequests, lockClientEmails, replacePortalUsers, revokeAllAccess } from '../db/access-store.js';
import { insertOutbox } from '../db/outbox-store.js';
import {
  lockClient, lockEmployee, lockPartner, recordChurn, removeEmployee, tagEmployee, terminateClient, untagEmployee, upsertClient, upsertClientAccount, upsertPartner, upsertSale, type Team,
} from '../db/partner-store.js';
import { applyGrant } from './grant.js';
import { recalculateCredit } from './credit.js';
import { insertEvents } from '../db/webhook-store.js';
import { accessEvent } from '../webhooks/events.js';

/** What a handler needs besides its transaction. */
export interface HandlerEnv {
  partnerId: string;
  commandId: string;
  issuedAt: Date | null;
  now: Date;
  renewalAlertDays: number;
}

export interface HandlerResult {
  /** Stored as the command's `result`. */
  result: Record<string, unknown>;
  /** Outbox rows written in the transaction, to enqueue after commit. */
  outboxIds: string[];
}

type Handler<K extends CommandType> = (tx: Em, cmd: CommandOf<K>, env: HandlerEnv) => Promise<HandlerResult>;

const done = (result: Record<string, unknown>, outboxIds: string[] = []): HandlerResult => ({ result, outboxIds });

async function requirePartner(tx: Em, partnerId: string): Promise<{ name: string; team: Team }> {
  const p = await lockPartner(tx, partnerId);
  if (!p) throw new DomainError('UNKNOWN_PARTNER');
  return p;
}

async function requireEmployee(tx: Em, partnerId: string, email: string): Promise<void> {
  if (!(await lockEmployee(tx, partnerId, email))) throw new DomainError('UNKNOWN_EMPLOYEE');
}

async function requireClient(tx: Em, partnerId: string, hubId: string): Promise<void> {
  if (!(await lockClient(tx, partnerId, hubId))) throw new DomainError('UNKNOWN_CLIENT');
}

/**
 * The handlers of the non-pair commands. Each runs inside the command's one transaction and is
 * idempotent on its own: running it twice on the same command leaves the same state (upserts,
 * set-based updates guarded by the current state, outbox rows keyed by the command).
 */
export const handlers: { [K in Exclude<CommandType, 'access.assign' | 'access.revoke' | 'access.resend' | 'access.extend'>]: Handler<K> } = {
  async 'partner.upsert'(tx, cmd, env) {
    const created = await upsertPartner(tx, {
      id: env.partnerId, name: cmd.name, emailDomains: cmd.emailDomains, team: cmd.team,
      notifyEmail: cmd.notifyEmail, locale: cmd.locale, accessRequests: cmd.accessRequests,
    });
    return done({ outcome: created ? 'created' : 'updated' });
  },

  async 'employee.tag'(tx, cmd, env) {
    await requirePartner(tx, env.partnerId);
    const before = await lockEmployee(tx, env.partnerId, cmd.email);
    await tagEmployee(tx, env.partnerId, cmd.email, cmd.name ?? null);
    return done({ outcome: before?.tagged && before.status === 'active' ? 'unchanged' : 'tagged' });
  },

  async 'employee.untag'(tx, cmd, env) {
    await requireEmployee(tx, env.partnerId, cmd.email);
    return done({ outcome: (await untagEmployee(tx, env.partnerId, cmd.email)) ? 'untagged' : 'unchanged' });
  },

  async 'employee.remove'(tx, cmd, env) {
    await requireEmployee(tx, env.partnerId, cmd.email);
    await removeEmployee(tx, env.partnerId, cmd.email);
    const revoked = await revokeAllAccess(tx, { partnerId: env.partnerId, email: cmd.email, commandId: env.commandId, issuedAt: env.issuedAt });
    await insertEvents(tx, revoked.map((r) => accessEvent('access.revoked', { partnerId: env.partnerId, hubId: r.hub_id, email: r.email }, env.commandId)));
    return done({ outcome: 'removed', revoked: revoked.length });
  },

  /**
   * The partner's list entry (`hubId`, `name`), and the platform's facts (intake lets only a
   * `clients:sync` token send them) into the client's one shared record. `portalUserEmails`
   * replaces the platform-reported set; pending pairs of `manual` partners whose employee it now
   * includes become `active` (serialised with pair commands by the (client, email) locks).
   */
  async 'client.upsert'(tx, cmd, env) {
    await requirePartner(tx, env.partnerId);
    const info: Record<string, unknown> = {};
    for (const k of clientInfoKeys) if (cmd[k] !== undefined) info[k] = cmd[k];
    const created = await upsertClient(tx, { partnerId: env.partnerId, hubId: cmd.hubId, name: cmd.name });
    await upsertClientAccount(tx, {
      hubId: cmd.hubId, contactEmail: cmd.contactEmail, locale: cmd.locale, mrr: cmd.mrr, products: cmd.products, renewalDate: cmd.renewalDate, info,
    });
    let activated = 0;
    if (cmd.portalUserEmails !== undefined) {
      await lockClientEmails(tx, cmd.portalUserEmails.map((email) => ({ hubId: cmd.hubId, email })));
      await replacePortalUsers(tx, cmd.hubId, cmd.portalUserEmails);
      const active = await activateManualRequests(tx, cmd.hubId, env.commandId);
      await insertEvents(tx, active.map((pair) => accessEvent('access.active', pair, env.commandId)));
      activated = active.length;
    }
    return done({ outcome: created ? 'created' : 'updated', ...(activated ? { activated } : {}) });
  },

  async 'client.terminate'(tx, cmd, env) {
    await requireClient(tx, env.partnerId, cmd.hubId);
    await terminateClient(tx, env.partnerId, cmd.hubId);
    const revoked = await revokeAllAccess(tx, { partnerId: env.partnerId, hubId: cmd.hubId, commandId: env.commandId, issuedAt: env.issuedAt });
    await insertEvents(tx, revoked.map((r) => accessEvent('access.revoked', { partnerId: env.partnerId, hubId: r.hub_id, email: r.email }, env.commandId)));
    return done({ outcome: 'terminated', revoked: revoked.length });
  },

  async 'access.grant'(tx, cmd, env) {
    const r = await applyGrant(tx, { partnerId: env.partnerId, hubId: cmd.clientHubId, email: cmd.employeeEmail, commandId: env.commandId, issuedAt: env.issuedAt });
    return done({ outcome: r.decision.outcome }, r.outboxIds);
  },

  async 'sale.record'(tx, cmd, env) {
    await requirePartner(tx, env.partnerId);
    await upsertSale(tx, { partnerId: env.partnerId, saleId: cmd.saleId, hubId: cmd.clientHubId, closedOn: cmd.closedOn, mrr: cmd.mrr });
    return done({ outcome: 'recorded' });
  },

  async 'client.churn'(tx, cmd, env) {
    await requirePartner(tx, env.partnerId);
    await recordChurn(tx, { partnerId: env.partnerId, hubId: cmd.clientHubId, on: cmd.on });
    return done({ outcome: 'recorded' });
  },

  async 'credit.recalculate'(tx, cmd, env) {
    await requirePartner(tx, env.partnerId);
    const snapshot = await recalculateCredit(tx, env.partnerId, { now: env.now, renewalAlertDays: env.renewalAlertDays, commandId: env.commandId, ...(cmd.month ? { month: cmd.month } : {}) });
    return done({ outcome: 'recalculated', ...snapshot });
  },

  async 'team.email'(tx, cmd, env) {
    const partner = await requirePartner(tx, env.partnerId);
    const person = partner.team[cmd.to];
    if (!person) throw new DomainError('NOT_FOUND', `The partner has no ${cmd.to} on record.`);
    const payload = { to: cmd.to, subject: cmd.subject, body: cmd.body, ...(cmd.replyTo ? { replyTo: cmd.replyTo } : {}) };
    const id = await insertOutbox(tx, { key: `team.email:${env.commandId}`, kind: 'team.email', partnerId: env.partnerId, payload });
    return done({ outcome: 'queued' }, id ? [id] : []);
  },
};
