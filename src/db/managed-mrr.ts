import { sql, type RawBuilder } from 'kysely';

/**
 * A partner manages a client (contract §5): the client is on the partner's list and active, and a
 * tagged, active employee of the partner has active access to it. As a condition on an `access`
 * row `a`: it is an active access of such an employee to such a client.
 */
const managing = (a: RawBuilder<unknown>) => sql`${a}.state = 'active'
     and exists (select 1 from employee e where e.partner_id = ${a}.partner_id and e.email = ${a}.email and e.tagged and e.status = 'active')
     and exists (select 1 from client c where c.partner_id = ${a}.partner_id and c.hub_id = ${a}.hub_id and c.status = 'active')`;

/**
 * The one definition of managed MRR (contract §5 credit rules), as a subquery of
 * `(partner_id, hub_id, cents)` for many partners at once (`partnerIds`: a `text[]` value): for each
 * client a partner of the set manages, that partner's share of the client's platform `mrr` in
 * integer cents. The MRR is split evenly among every partner that manages the client; the
 * remainder cents go one each to those partners in ascending partner-id order (byte order).
 * `hubId` narrows it to one client.
 *
 * Set-based, driven by `access` (indexed by partner and by client): first the clients a partner
 * of the set has any active access to (a superset of those it manages; materialized: inlined,
 * the planner misjudged the semi-joins and scanned every access row of the database for each
 * call), then every partner that manages one of them, whose count and rank split its MRR; a
 * partner of the set manages exactly its clients in that list. Bench data, 1,000 partners in
 * groups of 100: about 0.1 s of Postgres CPU in all; the previous per-partner form took 0.3 ms a
 * partner (0.3 s).
 */
export function managedSharesOfMany(partnerIds: RawBuilder<unknown>, hubId: string | null = null): RawBuilder<{ partner_id: string; hub_id: string; cents: string }> {
  return sql<{ partner_id: string; hub_id: string; cents: string }>`(
    with reached as materialized (
      select distinct a.hub_id from access a
       where a.partner_id = any(${partnerIds}) ${hubId === null ? sql`` : sql`and a.hub_id = ${hubId}`} and a.state = 'active'),
    managers as (
      select distinct a.hub_id, a.partner_id from access a
       where a.hub_id in (select hub_id from reached) and ${managing(sql`a`)}),
    ranked as (
      select hub_id, partner_id,
             row_number() over (partition by hub_id order by partner_id collate "C") as rank,
             count(*) over (partition by hub_id) as n
        from managers)
    select m.partner_id, m.hub_id, (div(x.cents, m.n) + case when m.rank <= mod(x.cents, m.n) then 1 else 0 end)::bigint as cents
      from ranked m
      left join client_account ca on ca.hub_id = m.hub_id
      cross join lateral (select (coalesce(ca.mrr, 0) * 100)::bigint as cents) x
     where m.partner_id = any(${partnerIds}))`;
}

/**
 * {@link managedSharesOfMany} for one partner (`partnerId`: a value or a column of the outer
 * query), as a subquery of `(partner_id, hub_id, cents)`.
 */
export function managedSharesOf(partnerId: RawBuilder<unknown>, hubId: string | null = null): RawBuilder<{ partner_id: string; hub_id: string; cents: string }> {
  return managedSharesOfMany(sql`array[${partnerId}]::text[]`, hubId);
}
