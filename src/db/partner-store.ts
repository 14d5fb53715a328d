import { sql } from 'kysely';
import type { Em } from './orm.js';
import { firstRow, jsonb, jsonbOrNull, run } from './exec.js';

/**
 * Partners and what they manage: `partner`, `employee`, `client` (the partner's list), the
 * platform's one record per client (`client_account`), and the credit facts `sale` and `churn`.
 * Writes are upserts, so a handler that runs twice leaves the same rows.
 */

export type Team = Record<string, { name: string; email: string }>;

/** Locks the partner (`for share`) for the rest of the transaction; returns its name and team. */
export async function lockPartner(tx: Em, partnerId: string): Promise<{ name: string; team: Team } | undefined> {
  return tx.getKysely().selectFrom('partner').select(['name', 'team']).where('id', '=', partnerId).forShare().executeTakeFirst();
}

/** Every partner id, in order. */
export async function partnerIds(em: Em): Promise<string[]> {
  return (await em.getKysely().selectFrom('partner').select('id').orderBy('id').execute()).map((p) => p.id);
}

/** A partner as `partner.upsert` gives it; an omitted field keeps its stored value (or its default when new). */
export interface PartnerUpsert {
  id: string;
  name: string;
  emailDomains?: string[] | undefined;
  team?: Team | undefined;
  /** Where the partner is told about its requests; null clears it. */
  notifyEmail?: string | null | undefined;
  locale?: string | undefined;
  accessRequests?: 'email' | 'manual' | undefined;
}

/** Creates or updates a partner; an omitted field keeps its stored value. Returns whether it was created. */
export async function upsertPartner(tx: Em, p: PartnerUpsert): Promise<boolean> {
  const emailDomains = jsonbOrNull(p.emailDomains);
  const team = jsonbOrNull(p.team);
  const notifyGiven = p.notifyEmail !== undefined;
  const notifyEmail = p.notifyEmail ?? null;
  const locale = p.locale ?? null;
  const accessRequests = p.accessRequests ?? null;
  const r = await firstRow(tx, sql<{ inserted: boolean }>`insert into partner (id, name, email_domains, team, notify_email, locale, access_requests)
    values (${p.id}, ${p.name}, coalesce(${emailDomains}, '[]'), coalesce(${team}, '{}'), ${notifyEmail}::text, coalesce(${locale}::text, 'en'), coalesce(${accessRequests}::text, 'email'))
    on conflict (id) do update set name = excluded.name,
      email_domains = coalesce(${emailDomains}, partner.email_domains),
      team = coalesce(${team}, partner.team),
      notify_email = case when ${notifyGiven}::boolean then excluded.notify_email else partner.notify_email end,
      locale = coalesce(${locale}::text, partner.locale),
      access_requests = coalesce(${accessRequests}::text, partner.access_requests),
      updated_at = now()
    returning (xmax = 0) as inserted`);
  return r?.inserted ?? false;
}

/** Locks the employee row (`for update`), if there is one. */
export async function lockEmployee(tx: Em, partnerId: string, email: string): Promise<{ tagged: boolean; status: 'active' | 'removed' } | undefined> {
  return tx.getKysely().selectFrom('employee').select(['tagged', 'status'])
    .where('partner_id', '=', partnerId).where('email', '=', email)
    .forUpdate()
    .$narrowType<{ status: 'active' | 'removed' }>()
    .executeTakeFirst();
}

/** Tags an employee (created if new, brought back if removed; a given name replaces the stored one). */
export async function tagEmployee(tx: Em, partnerId: string, email: string, name: string | null): Promise<void> {
  await tx.getKysely().insertInto('employee')
    .values({ partner_id: partnerId, email, name, tagged: true, status: 'active' })
    .onConflict((oc) => oc.columns(['partner_id', 'email']).doUpdateSet({
      tagged: true, status: 'active', name: sql`coalesce(excluded.name, employee.name)`, updated_at: sql`now()`,
    }))
    .execute();
}

/** Untags an employee; returns whether it was tagged. */
export async function untagEmployee(tx: Em, partnerId: string, email: string): Promise<boolean> {
  const r = await tx.getKysely().updateTable('employee').set({ tagged: false, updated_at: sql`now()` })
    .where('partner_id', '=', partnerId).where('email', '=', email).where('tagged', '=', true)
    .executeTakeFirst();
  return r.numUpdatedRows > 0n;
}

/** Marks an employee removed (and untagged). */
export async function removeEmployee(tx: Em, partnerId: string, email: string): Promise<void> {
  await tx.getKysely().updateTable('employee').set({ status: 'removed', tagged: false, updated_at: sql`now()` })
    .where('partner_id', '=', partnerId).where('email', '=', email)
    .execute();
}

/** Locks the client row (`for update`); returns whether it exists. */
export async function lockClient(tx: Em, partnerId: string, hubId: string): Promise<boolean> {
  const r = await tx.getKysely().selectFrom('client').select(sql<number>`1`.as('one'))
    .where('partner_id', '=', partnerId).where('hub_id', '=', hubId)
    .forUpdate()
    .executeTakeFirst();
  return r !== undefined;
}

/**
 * Puts a client in the partner's list with the partner's name for it (a terminated one becomes
 * active again). Returns whether the entry was created.
 */
export async function upsertClient(tx: Em, c: { partnerId: string; hubId: string; name: string }): Promise<boolean> {
  const r = await firstRow(tx, sql<{ inserted: boolean }>`insert into client (partner_id, hub_id, name, status) values (${c.partnerId}, ${c.hubId}, ${c.name}, 'active')
    on conflict (partner_id, hub_id) do update set name = excluded.name, status = 'active', updated_at = now()
    returning (xmax = 0) as inserted`);
  return r?.inserted ?? false;
}

/** The platform's facts about a client as `client.upsert` gives them; an omitted field keeps its stored value (or its default when new). */
export interface ClientAccountUpsert {
  hubId: string;
  contactEmail?: string | undefined;
  locale?: string | undefined;
  mrr?: number | undefined;
  products?: string[] | undefined;
  renewalDate?: string | undefined;
  /** Merged into the stored information, key by key. */
  info: Record<string, unknown>;
}

/**
 * Writes the platform's facts about a client into its one shared record (`client_account`), only
 * the fields given (last write wins). Without any field, it only makes sure the record exists (a
 * partner listing a client the platform has not reported yet: no contact, default facts).
 */
export async function upsertClientAccount(tx: Em, c: ClientAccountUpsert): Promise<void> {
  const given = c.contactEmail !== undefined || c.locale !== undefined || c.mrr !== undefined || c.products !== undefined
    || c.renewalDate !== undefined || Object.keys(c.info).length > 0;
  if (!given) {
    await run(tx, sql`insert into client_account (hub_id) values (${c.hubId}) on conflict (hub_id) do nothing`);
    return;
  }
  const contactEmail = c.contactEmail ?? null;
  const locale = c.locale ?? null;
  const mrr = c.mrr ?? null;
  const products = jsonbOrNull(c.products);
  const renewalDate = c.renewalDate ?? null;
  await run(tx, sql`insert into client_account (hub_id, contact_email, locale, mrr, products, renewal_date, info)
    values (${c.hubId}, ${contactEmail}::text, coalesce(${locale}::text, 'en'), coalesce(${mrr}::numeric, 0), coalesce(${products}, '[]'), ${renewalDate}::date, ${jsonb(c.info)})
    on conflict (hub_id) do update set contact_email = coalesce(${contactEmail}::text, client_account.contact_email),
      locale = coalesce(${locale}::text, client_account.locale), mrr = coalesce(${mrr}::numeric, client_account.mrr),
      products = coalesce(${products}, client_account.products), renewal_date = coalesce(${renewalDate}::date, client_account.renewal_date),
      info = client_account.info || excluded.info, updated_at = now()`);
}

/** Marks a client terminated. */
export async function terminateClient(tx: Em, partnerId: string, hubId: string): Promise<void> {
  await tx.getKysely().updateTable('client').set({ status: 'terminated', updated_at: sql`now()` })
    .where('partner_id', '=', partnerId).where('hub_id', '=', hubId)
    .execute();
}

/** Records a sale (the same sale id again replaces it). */
export async function upsertSale(tx: Em, s: { partnerId: string; saleId: string; hubId: string; closedOn: string; mrr: number }): Promise<void> {
  await run(tx, sql`insert into sale (partner_id, sale_id, hub_id, closed_on, mrr) values (${s.partnerId}, ${s.saleId}, ${s.hubId}, ${s.closedOn}::date, ${s.mrr}::numeric)
    on conflict (partner_id, sale_id) do update set hub_id = excluded.hub_id, closed_on = excluded.closed_on, mrr = excluded.mrr`);
}

/** Records a churn (once per partner, client and day). */
export async function recordChurn(tx: Em, c: { partnerId: string; hubId: string; on: string }): Promise<void> {
  await tx.getKysely().insertInto('churn')
    .values({ partner_id: c.partnerId, hub_id: c.hubId, on_date: sql`${c.on}::date` })
    .onConflict((oc) => oc.doNothing())
    .execute();
}
