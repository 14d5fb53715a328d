import { Migration } from '@mikro-orm/migrations';

/** The initial schema: partners, employees, clients, accesses, the command log, the outbox and credit facts. */
export class Migration20261122000001Initial extends Migration {
  override name = 'Migration20261122000001_initial';

  override up(): void {
    this.addSql(`
create table partner (
  id text primary key,
  name text not null,
  email_domains jsonb not null default '[]',
  team jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table employee (
  partner_id text not null references partner(id),
  email text not null,
  name text,
  tagged boolean not null default false,
  status text not null default 'active' check (status in ('active','removed')),
  updated_at timestamptz not null default now(),
  primary key (partner_id, email)
);

create table client (
  partner_id text not null references partner(id),
  hub_id text not null,
  name text not null,
  contact_email text not null,
  locale text not null default 'en',
  mrr numeric(14,2) not null default 0,
  products jsonb not null default '[]',
  renewal_date date,
  info jsonb not null default '{}',
  status text not null default 'active' check (status in ('active','terminated')),
  updated_at timestamptz not null default now(),
  primary key (partner_id, hub_id)
);

create table portal_user (
  hub_id text not null,
  email text not null,
  primary key (hub_id, email)
);

create table access (
  partner_id text not null,
  hub_id text not null,
  email text not null,
  state text not null check (state in ('pending','active','revoked')),
  last_issued_at timestamptz,
  command_id text,
  updated_at timestamptz not null default now(),
  primary key (partner_id, hub_id, email)
);
-- an email is linked to at most one partner record per client: enforced here, not only in code
create unique index access_one_partner_per_email on access (hub_id, email) where state in ('pending','active');
create index access_live_by_employee on access (partner_id, email) where state <> 'revoked';

create table command (
  id text primary key,
  seq bigserial not null,
  partner_id text not null,
  type text not null,
  payload jsonb not null,
  body_hash text not null,
  issued_at timestamptz,
  token_name text,
  state text not null default 'waiting' check (state in ('waiting','active','completed','failed')),
  attempts int not null default 0,
  result jsonb,
  error jsonb,
  items_total int not null default 0,
  created_at timestamptz not null default now(),
  started_at timestamptz,
  finished_at timestamptz,
  enqueued_at timestamptz
);
create index command_unfinished on command (created_at) where state in ('waiting','active');
create index command_by_partner on command (partner_id, created_at);
-- per-partner FIFO: a command waits for the partner's earlier unfinished commands
create index command_unfinished_by_partner on command (partner_id, seq) where state in ('waiting','active');

create table command_item (
  command_id text not null references command(id) on delete cascade,
  idx int not null,
  hub_id text not null,
  email text not null,
  state text not null default 'waiting' check (state in ('waiting','active','completed','failed')),
  outcome text,
  error jsonb,
  attempts int not null default 0,
  finished_at timestamptz,
  primary key (command_id, idx)
);
-- "is any item of this command still open?" is an index probe, whatever the command's size
create index command_item_open on command_item (command_id) where state in ('waiting','active');

create table conflict (
  id bigserial primary key,
  partner_id text not null,
  hub_id text not null,
  email text not null,
  command_id text not null,
  at timestamptz not null default now(),
  unique (command_id, hub_id, email)
);
create index conflict_by_partner on conflict (partner_id, at);

create table grant_token (
  token_hash text primary key,
  partner_id text not null,
  hub_id text not null,
  email text not null,
  expires_at timestamptz not null,
  used_at timestamptz,
  created_at timestamptz not null default now()
);

create table outbox (
  id bigserial primary key,
  notification_key text not null unique,
  kind text not null,
  partner_id text not null,
  payload jsonb not null,
  state text not null default 'pending' check (state in ('pending','sent','failed')),
  attempts int not null default 0,
  error jsonb,
  message_id text,
  created_at timestamptz not null default now(),
  sent_at timestamptz
);
create index outbox_pending on outbox (created_at) where state = 'pending';

create table sale (
  partner_id text not null,
  sale_id text not null,
  hub_id text not null,
  closed_on date not null,
  mrr numeric(14,2) not null,
  primary key (partner_id, sale_id)
);

create table churn (
  partner_id text not null,
  hub_id text not null,
  on_date date not null,
  primary key (partner_id, hub_id, on_date)
);

create table credit_snapshot (
  partner_id text primary key,
  managed_mrr numeric(14,2) not null,
  sold_tier_credit numeric(14,2) not null,
  tier text not null,
  next_tier text,
  upcoming_renewals int not null,
  calculated_at timestamptz not null
);
`);
  }

  override down(): void {
    this.addSql(`drop table if exists credit_snapshot, churn, sale, outbox, grant_token, conflict, command_item, command, access, portal_user, client, employee, partner cascade;`);
  }
}
