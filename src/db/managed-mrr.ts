import { sql, type RawBuilder } from 'kysely';

/**
 * A partner manages a client (contract §5): the client is on the partner's list and active, and a
 * tagged, active employee of the partner has active access to it. As a condition on an `access`
 * row `a`: it is an active access of such an employee to such a client.
 */
const managing = (a: RawBuilder<unknown>) => sql`${a}.state = 'active'
     and exists (select 1 from employee e where e.partner_id = ${a}.partner_id and e.email = ${a}.email and e.tagged and e.status = 'active')
     and exists (select 1 from client c where c.partner_id = ${a}.partner_id and c.hub_id = ${a}.hub_id and c.status = 'active')`;

/** A partner that manages a client, ranked among all the partners that manage it (see {@link managerRanksOfMany}). */
export interface ManagerRank { partner_id: string; hub_id: string; rank: string; n: string }

/**
 * The managers half of {@link managedSharesOfMany}, as a subquery of `(partner_id, hub_id, rank, n)`:
 * for each client a partner of the set (`partnerIds`: a `text[]` value) manages, that partner's
 * rank among all the partners that manage it (ascending partner id, byte order) and their count.
 * {@link shareCents} turns them into the partner's share; a caller that already joins the
 * client's `client_account` (the credit read) applies it there, without a second lookup per client.
 *
 * Set-based, driven by `access`: first the clients a partner of the set has any active access to
 * (a superset of those it manages), then every partner that manages one of them, whose count and
 * rank split its MRR; a partner of the set manages exactly its clients in that list. The clients
 * come as an array (`= any(array(…))`, computed once): the planner then reads the accesses to them
 * through the index on `access (hub_id, email)` (`access_one_partner_per_email`), not by a pass over
 * every access of the database for each call, which it chose for the semi-join it misjudged (first
 * inlined, then as a materialized CTE joined by hash). Bench data, groups of 100 partners: about
 * 15 ms of Postgres a group; the CTE and hash join form took about 19 ms, and its final lookup of
 * each client's MRR (now left to the caller or to {@link managedSharesOfMany}) 4 ms more.
 */
export function managerRanksOfMany(partnerIds: RawBuilder<unknown>, hubId: string | null = null): RawBuilder<ManagerRank> {
  return sql<ManagerRank>`(
    with managers as (
      select distinct a.hub_id, a.partner_id from access a
       where a.hub_id = any(array(
               select distinct r.hub_id from access r
                where r.partner_id = any(${partnerIds}) ${hubId === null ? sql`` : sql`and r.hub_id = ${hubId}`} and r.state = 'active'))
         and ${managing(sql`a`)}),
    ranked as (
      select hub_id, partner_id,
             row_number() over (partition by hub_id order by partner_id collate "C") as rank,
             count(*) over (partition by hub_id) as n
        from managers)
    select partner_id, hub_id, rank, n from ranked where partner_id = any(${partnerIds}))`;
}

/**
 * A manager's share in integer cents (`bigint`) of a client's platform MRR (`mrr`, a `numeric`
 * column, null read as 0), from its `rank` and the count `n` of {@link managerRanksOfMany}: the MRR
 * split evenly, the remainder cents one each to the first ranks. Null when `rank` and `n` are.
 */
export function shareCents(mrr: RawBuilder<unknown>, rank: RawBuilder<unknown>, n: RawBuilder<unknown>): RawBuilder<string | null> {
  const cents = sql`(coalesce(${mrr}, 0) * 100)::bigint`;
  return sql<string | null>`(div(${cents}, ${n}) + case when ${rank} <= mod(${cents}, ${n}) then 1 else 0 end)::bigint`;
}

/**
 * The one definition of managed MRR (contract §5 credit rules), as a subquery of
 * `(partner_id, hub_id, cents)` for many partners at once (`partnerIds`: a `text[]` value): for each
 * client a partner of the set manages, that partner's share of the client's platform `mrr` in
 * integer cents. The MRR is split evenly among every partner that manages the client; the
 * remainder cents go one each to those partners in ascending partner-id order (byte order).
 * `hubId` narrows it to one client. {@link managerRanksOfMany} and {@link shareCents}, joined here
 * with the client's `client_account`.
 */
export function managedSharesOfMany(partnerIds: RawBuilder<unknown>, hubId: string | null = null): RawBuilder<{ partner_id: string; hub_id: string; cents: string }> {
  return sql<{ partner_id: string; hub_id: string; cents: string }>`(
    select m.partner_id, m.hub_id, ${shareCents(sql`ca.mrr`, sql`m.rank`, sql`m.n`)} as cents
      from ${managerRanksOfMany(partnerIds, hubId)} m
      left join client_account ca on ca.hub_id = m.hub_id)`;
}

/**
 * {@link managedSharesOfMany} for one partner (`partnerId`: a value or a column of the outer
 * query), as a subquery of `(partner_id, hub_id, cents)`.
 */
export function managedSharesOf(partnerId: RawBuilder<unknown>, hubId: string | null = null): RawBuilder<{ partner_id: string; hub_id: string; cents: string }> {
  return managedSharesOfMany(sql`array[${partnerId}]::text[]`, hubId);
}
