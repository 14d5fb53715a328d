import { sql } from 'kysely';
import type { Em } from './orm.js';
import { firstRow, jsonb, jsonbOrNull, run } from './exec.js';

/**
 * Partners and what they manage: `partner`, `employee`, `client`, and the credit facts `sale` and
 * `churn`. Writes are upserts, so a handler that runs twice leaves the same rows.
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

/** Creates or updates a partner; an omitted list keeps its stored value. Returns whether it was created. */
export async function upsertPartner(tx: Em, p: { id: string; name: string; emailDomains?: string[] | undefined; team?: Team | undefined }): Promise<boolean> {
  const emailDomains = jsonbOrNull(p.emailDomains);
  const team = jsonbOrNull(p.team);
  const r = await firstRow(tx, sql<{ inserted: boolean }>`insert into partner (id, name, email_domains, team) values (${p.id}, ${p.name}, coalesce(${emailDomains}, '[]'), coalesce(${team}, '{}'))
    on conflict (id) do update set name = excluded.name,
      email_domains = coalesce(${emailDomains}, partner.email_domains),
      team = coalesce(${team}, partner.team), updated_at = now()
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

/** A client as `client.upsert` gives it; an omitted field keeps its stored value (or its default when new). */
export interface ClientUpsert {
  partnerId: string;
  hubId: string;
  name: string;
  contactEmail: string;
  locale?: string | undefined;
  mrr?: number | undefined;
  products?: string[] | undefined;
  renewalDate?: string | undefined;
  /** Merged into the stored information, key by key. */
  info: Record<string, unknown>;
}

/** Creates or updates a client (a terminated one becomes active again). Returns whether it was created. */
export async function upsertClient(tx: Em, c: ClientUpsert): Promise<boolean> {
  const locale = c.locale ?? null;
  const mrr = c.mrr ?? null;
  const products = jsonbOrNull(c.products);
  const renewalDate = c.renewalDate ?? null;
  const r = await firstRow(tx, sql<{ inserted: boolean }>`insert into client (partner_id, hub_id, name, contact_email, locale, mrr, products, renewal_date, info, status)
    values (${c.partnerId}, ${c.hubId}, ${c.name}, ${c.contactEmail}, coalesce(${locale}::text, 'en'), coalesce(${mrr}::numeric, 0), coalesce(${products}, '[]'), ${renewalDate}::date, ${jsonb(c.info)}, 'active')
    on conflict (partner_id, hub_id) do update set name = excluded.name, contact_email = excluded.contact_email,
      locale = coalesce(${locale}::text, client.locale), mrr = coalesce(${mrr}::numeric, client.mrr), products = coalesce(${products}, client.products),
      renewal_date = coalesce(${renewalDate}::date, client.renewal_date), info = client.info || excluded.info, status = 'active', updated_at = now()
    returning (xmax = 0) as inserted`);
  return r?.inserted ?? false;
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
