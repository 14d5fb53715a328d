import { Migration } from '@mikro-orm/migrations';

/**
 * The trust model (issue 11) and the life of an access request (issue 12).
 *
 * - `client_account`: the platform's one record per hubId (contact, locale, MRR, products, renewal,
 *   client info). Today's per-partner facts are carried over, the newest write winning where
 *   partners disagree; `client` keeps only the partner's relationship (name, status).
 * - `portal_user` is the platform-reported set only: rows that a used grant link added are deleted
 *   (a grant's membership is its pair: `access.state = 'active' and granted_at is not null`, set
 *   here for pairs that such a link granted).
 * - `access`: five states and the request's life (request time, expiry, sequence, reminders, last
 *   email, grant time, time-bound end and its reminders).
 * - `grant_token`: the request it belongs to (`request_seq`, `command_id`), withdrawal and decision.
 * - `partner`: where and in which language it is told, and how access requests reach the client.
 * - `outbox`: the raw grant tokens that sent emails kept in their payload are erased.
 */
export class Migration20261130000001TrustLifecycle extends Migration {
  override name = 'Migration20261130000001_trust_lifecycle';

  override up(): void {
    this.addSql(`
create table client_account (
  hub_id text primary key,
  contact_email text,
  locale text not null default 'en',
  mrr numeric(14,2) not null default 0,
  products jsonb not null default '[]',
  renewal_date date,
  info jsonb not null default '{}',
  updated_at timestamptz not null default now()
);
insert into client_account (hub_id, contact_email, locale, mrr, products, renewal_date, info, updated_at)
select distinct on (hub_id) hub_id, contact_email, locale, mrr, products, renewal_date, info, updated_at
  from client order by hub_id, updated_at desc;
alter table client drop column contact_email, drop column locale, drop column mrr, drop column products, drop column renewal_date, drop column info;
-- "which partners manage this client": every list entry of a hubId
create index client_by_hub on client (hub_id);

alter table access drop constraint access_state_check;
alter table access add constraint access_state_check check (state in ('pending','active','declined','expired','revoked'));
alter table access
  add column requested_at timestamptz,
  add column expires_at timestamptz,
  add column request_seq int not null default 0,
  add column reminders_sent jsonb not null default '[]',
  add column last_email_at timestamptz,
  add column granted_at timestamptz,
  add column access_until timestamptz,
  add column end_reminders_sent jsonb not null default '[]';
drop index access_live_by_employee;
create index access_live_by_employee on access (partner_id, email) where state in ('pending','active');
-- the lifecycle sweep: pending requests by expiry, live time-bound accesses by their end
create index access_pending_expiry on access (expires_at) where state = 'pending';
create index access_until_live on access (access_until) where state in ('pending','active') and access_until is not null;

alter table grant_token
  add column request_seq int not null default 0,
  add column command_id text,
  add column withdrawn_at timestamptz,
  add column decided text check (decided in ('granted','declined'));
create index grant_token_by_pair on grant_token (partner_id, hub_id, email);

update grant_token set decided = 'granted' where used_at is not null;
-- the request of a pending pair as its newest link knows it
update access a set requested_at = g.created_at, last_email_at = g.created_at, expires_at = g.expires_at
  from (select distinct on (partner_id, hub_id, email) partner_id, hub_id, email, created_at, expires_at
          from grant_token order by partner_id, hub_id, email, created_at desc) g
 where a.partner_id = g.partner_id and a.hub_id = g.hub_id and a.email = g.email and a.state = 'pending';
-- an active pair that a link granted keeps its membership through the pair
update access a set granted_at = g.used_at
  from (select partner_id, hub_id, email, max(used_at) as used_at from grant_token where used_at is not null group by 1, 2, 3) g
 where a.partner_id = g.partner_id and a.hub_id = g.hub_id and a.email = g.email and a.state = 'active';
delete from portal_user pu using grant_token g where g.used_at is not null and g.hub_id = pu.hub_id and g.email = pu.email;
-- grant emails written before tokens were derived at render held the raw token: erased once sent
update outbox set payload = payload - 'token' where state = 'sent' and payload->>'token' is not null;

alter table partner
  add column notify_email text,
  add column locale text not null default 'en',
  add column access_requests text not null default 'email' check (access_requests in ('email','manual'));
`);
  }

  override down(): void {
    this.addSql(`
alter table partner drop column access_requests, drop column locale, drop column notify_email;
drop index grant_token_by_pair;
alter table grant_token drop column decided, drop column withdrawn_at, drop column command_id, drop column request_seq;
drop index access_until_live;
drop index access_pending_expiry;
drop index access_live_by_employee;
create index access_live_by_employee on access (partner_id, email) where state <> 'revoked';
alter table access drop column end_reminders_sent, drop column access_until, drop column granted_at, drop column last_email_at,
  drop column reminders_sent, drop column request_seq, drop column expires_at, drop column requested_at;
update access set state = 'revoked' where state in ('declined','expired');
alter table access drop constraint access_state_check;
alter table access add constraint access_state_check check (state in ('pending','active','revoked'));
drop index client_by_hub;
alter table client add column contact_email text, add column locale text not null default 'en', add column mrr numeric(14,2) not null default 0,
  add column products jsonb not null default '[]', add column renewal_date date, add column info jsonb not null default '{}';
update client c set contact_email = coalesce(ca.contact_email, ''), locale = ca.locale, mrr = ca.mrr, products = ca.products, renewal_date = ca.renewal_date, info = ca.info
  from client_account ca where ca.hub_id = c.hub_id;
update client set contact_email = '' where contact_email is null;
alter table client alter column contact_email set not null;
drop table client_account;
`);
  }
}
