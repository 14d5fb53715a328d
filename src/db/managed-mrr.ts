import { sql, type RawBuilder } from 'kysely';

/**
 * The one definition of managed MRR (contract §5 credit rules), as a subquery of `(hub_id, cents)`
 * for one partner (`partnerId`: a value or a column of the outer query): for each active client of
 * the partner's list that a tagged, active employee of the partner has active access to, the
 * partner's share of the client's platform `mrr` in integer cents. The MRR is split evenly among
 * every partner that manages the client in the same sense; the remainder cents go one each to
 * those partners in ascending partner-id order (byte order). `hubId` narrows it to one client.
 */
export function managedSharesOf(partnerId: RawBuilder<unknown>, hubId: string | null = null): RawBuilder<{ hub_id: string; cents: string }> {
  const managedBy = sql`exists (select 1 from access a join employee e on e.partner_id = a.partner_id and e.email = a.email
                                 where a.partner_id = c.partner_id and a.hub_id = c.hub_id and a.state = 'active' and e.tagged and e.status = 'active')`;
  return sql<{ hub_id: string; cents: string }>`(
    with mine as (
      select c.hub_id from client c
       where c.partner_id = ${partnerId} and c.status = 'active' ${hubId === null ? sql`` : sql`and c.hub_id = ${hubId}`} and ${managedBy}),
    managers as (
      select c.hub_id, c.partner_id,
             row_number() over (partition by c.hub_id order by c.partner_id collate "C") as rank,
             count(*) over (partition by c.hub_id) as n
        from client c
       where c.hub_id in (select hub_id from mine) and c.status = 'active' and ${managedBy})
    select m.hub_id, (div(x.cents, m.n) + case when m.rank <= mod(x.cents, m.n) then 1 else 0 end)::bigint as cents
      from managers m
      left join client_account ca on ca.hub_id = m.hub_id
      cross join lateral (select (coalesce(ca.mrr, 0) * 100)::bigint as cents) x
     where m.partner_id = ${partnerId})`;
}
