import type { Em } from '../db/orm.js';
import { clientInfoKeys, type CommandOf, type CommandType } from '../commands/schemas.js';
import { DomainError } from '../domain/errors.js';
import { applyGrant, revokeAllAccess } from './access.js';
import { recalculateCredit } from './credit.js';
import { writeOutbox } from './outbox.js';

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

async function requirePartner(tx: Em, partnerId: string): Promise<{ name: string; team: Record<string, { name: string; email: string }> }> {
  const [p] = await tx.execute<{ name: string; team: Record<string, { name: string; email: string }> }[]>('select name, team from partner where id = ? for share', [partnerId]);
  if (!p) throw new DomainError('UNKNOWN_PARTNER');
  return p;
}

async function requireEmployee(tx: Em, partnerId: string, email: string): Promise<void> {
  const [e] = await tx.execute('select 1 from employee where partner_id = ? and email = ? for update', [partnerId, email]);
  if (!e) throw new DomainError('UNKNOWN_EMPLOYEE');
}

async function requireClient(tx: Em, partnerId: string, hubId: string): Promise<void> {
  const [c] = await tx.execute('select 1 from client where partner_id = ? and hub_id = ? for update', [partnerId, hubId]);
  if (!c) throw new DomainError('UNKNOWN_CLIENT');
}

/**
 * The handlers of the non-pair commands. Each runs inside the command's one transaction and is
 * idempotent on its own: running it twice on the same command leaves the same state (upserts,
 * set-based updates guarded by the current state, outbox rows keyed by the command).
 */
export const handlers: { [K in Exclude<CommandType, 'access.assign' | 'access.revoke'>]: Handler<K> } = {
  async 'partner.upsert'(tx, cmd, env) {
    const [r] = await tx.execute<{ inserted: boolean }[]>(
      `insert into partner (id, name, email_domains, team) values (?, ?, coalesce(?::jsonb, '[]'), coalesce(?::jsonb, '{}'))
       on conflict (id) do update set name = excluded.name,
         email_domains = coalesce(?::jsonb, partner.email_domains),
         team = coalesce(?::jsonb, partner.team), updated_at = now()
       returning (xmax = 0) as inserted`,
      [env.partnerId, cmd.name, json(cmd.emailDomains), json(cmd.team), json(cmd.emailDomains), json(cmd.team)],
    );
    return done({ outcome: r?.inserted ? 'created' : 'updated' });
  },

  async 'employee.tag'(tx, cmd, env) {
    await requirePartner(tx, env.partnerId);
    const [before] = await tx.execute<{ tagged: boolean; status: string }[]>('select tagged, status from employee where partner_id = ? and email = ? for update', [env.partnerId, cmd.email]);
    await tx.execute(
      `insert into employee (partner_id, email, name, tagged, status) values (?, ?, ?, true, 'active')
       on conflict (partner_id, email) do update set tagged = true, status = 'active', name = coalesce(excluded.name, employee.name), updated_at = now()`,
      [env.partnerId, cmd.email, cmd.name ?? null],
    );
    return done({ outcome: before?.tagged && before.status === 'active' ? 'unchanged' : 'tagged' });
  },

  async 'employee.untag'(tx, cmd, env) {
    await requireEmployee(tx, env.partnerId, cmd.email);
    const rows = await tx.execute('update employee set tagged = false, updated_at = now() where partner_id = ? and email = ? and tagged returning 1', [env.partnerId, cmd.email]);
    return done({ outcome: rows.length ? 'untagged' : 'unchanged' });
  },

  async 'employee.remove'(tx, cmd, env) {
    await requireEmployee(tx, env.partnerId, cmd.email);
    await tx.execute(`update employee set status = 'removed', tagged = false, updated_at = now() where partner_id = ? and email = ?`, [env.partnerId, cmd.email]);
    const revoked = await revokeAllAccess(tx, { partnerId: env.partnerId, email: cmd.email, commandId: env.commandId, issuedAt: env.issuedAt });
    return done({ outcome: 'removed', revoked: revoked.length });
  },

  async 'client.upsert'(tx, cmd, env) {
    await requirePartner(tx, env.partnerId);
    const info: Record<string, unknown> = {};
    for (const k of clientInfoKeys) if (cmd[k] !== undefined) info[k] = cmd[k];
    const [r] = await tx.execute<{ inserted: boolean }[]>(
      `insert into client (partner_id, hub_id, name, contact_email, locale, mrr, products, renewal_date, info, status)
       values (?, ?, ?, ?, coalesce(?, 'en'), coalesce(?, 0), coalesce(?::jsonb, '[]'), ?::date, ?::jsonb, 'active')
       on conflict (partner_id, hub_id) do update set name = excluded.name, contact_email = excluded.contact_email,
         locale = coalesce(?, client.locale), mrr = coalesce(?, client.mrr), products = coalesce(?::jsonb, client.products),
         renewal_date = coalesce(?::date, client.renewal_date), info = client.info || excluded.info, status = 'active', updated_at = now()
       returning (xmax = 0) as inserted`,
      [env.partnerId, cmd.hubId, cmd.name, cmd.contactEmail, cmd.locale ?? null, cmd.mrr ?? null, json(cmd.products), cmd.renewalDate ?? null, JSON.stringify(info),
        cmd.locale ?? null, cmd.mrr ?? null, json(cmd.products), cmd.renewalDate ?? null],
    );
    if (cmd.portalUserEmails?.length) {
      await tx.execute('insert into portal_user (hub_id, email) select ?, jsonb_array_elements_text(?::jsonb) on conflict do nothing', [cmd.hubId, JSON.stringify(cmd.portalUserEmails)]);
    }
    return done({ outcome: r?.inserted ? 'created' : 'updated' });
  },

  async 'client.terminate'(tx, cmd, env) {
    await requireClient(tx, env.partnerId, cmd.hubId);
    await tx.execute(`update client set status = 'terminated', updated_at = now() where partner_id = ? and hub_id = ?`, [env.partnerId, cmd.hubId]);
    const revoked = await revokeAllAccess(tx, { partnerId: env.partnerId, hubId: cmd.hubId, commandId: env.commandId, issuedAt: env.issuedAt });
    return done({ outcome: 'terminated', revoked: revoked.length });
  },

  async 'access.grant'(tx, cmd, env) {
    const r = await applyGrant(tx, { partnerId: env.partnerId, hubId: cmd.clientHubId, email: cmd.employeeEmail, commandId: env.commandId, issuedAt: env.issuedAt });
    return done({ outcome: r.decision.outcome });
  },

  async 'sale.record'(tx, cmd, env) {
    await requirePartner(tx, env.partnerId);
    await tx.execute(
      `insert into sale (partner_id, sale_id, hub_id, closed_on, mrr) values (?, ?, ?, ?::date, ?)
       on conflict (partner_id, sale_id) do update set hub_id = excluded.hub_id, closed_on = excluded.closed_on, mrr = excluded.mrr`,
      [env.partnerId, cmd.saleId, cmd.clientHubId, cmd.closedOn, cmd.mrr],
    );
    return done({ outcome: 'recorded' });
  },

  async 'client.churn'(tx, cmd, env) {
    await requirePartner(tx, env.partnerId);
    await tx.execute('insert into churn (partner_id, hub_id, on_date) values (?, ?, ?::date) on conflict do nothing', [env.partnerId, cmd.clientHubId, cmd.on]);
    return done({ outcome: 'recorded' });
  },

  async 'credit.recalculate'(tx, cmd, env) {
    await requirePartner(tx, env.partnerId);
    const snapshot = await recalculateCredit(tx, env.partnerId, { now: env.now, renewalAlertDays: env.renewalAlertDays, ...(cmd.month ? { month: cmd.month } : {}) });
    return done({ outcome: 'recalculated', ...snapshot });
  },

  async 'team.email'(tx, cmd, env) {
    const partner = await requirePartner(tx, env.partnerId);
    const person = partner.team[cmd.to];
    if (!person) throw new DomainError('NOT_FOUND', `The partner has no ${cmd.to} on record.`);
    const id = await writeOutbox(tx, { key: `team.email:${env.commandId}`, kind: 'team.email', partnerId: env.partnerId, payload: { to: cmd.to, subject: cmd.subject, body: cmd.body } });
    return done({ outcome: 'queued' }, id ? [id] : []);
  },
};

function json(v: unknown): string | null {
  return v === undefined ? null : JSON.stringify(v);
}

