import { Migration } from '@mikro-orm/migrations';

/**
 * Webhooks (contract §8, issue 14).
 *
 * - `webhook`: a partner's subscription (target URL, events, the signing secret needed for every
 *   send). Ending one (DELETE, or its receiver's 410) keeps the row with `ended_at`, so its delivery
 *   log stays readable.
 * - `webhook_event`: the outbox of events, written in the transaction of the change it reports;
 *   `seq` is their order, `id` (`evt_…`) the `webhook-id` of every attempt.
 * - `webhook_delivery`: one per event and subscription: state, attempts, last answer, next attempt.
 *   `pending_since` starts the retry window (creation, or a redelivery).
 */
export class Migration20261201000001Webhooks extends Migration {
  override name = 'Migration20261201000001_webhooks';

  override up(): void {
    this.addSql(`
create table webhook (
  id text primary key,
  partner_id text not null,
  url text not null,
  events jsonb not null,
  description text,
  secret text not null,
  created_at timestamptz not null default now(),
  ended_at timestamptz,
  end_reason text check (end_reason in ('deleted','gone'))
);
create index webhook_live_by_partner on webhook (partner_id, created_at) where ended_at is null;

create table webhook_event (
  seq bigserial primary key,
  id text not null,
  type text not null,
  partner_id text not null,
  data jsonb not null,
  created_at timestamptz not null default now(),
  constraint webhook_event_id_key unique (id)
);

create table webhook_delivery (
  id bigserial primary key,
  event_seq bigint not null,
  webhook_id text not null,
  state text not null default 'pending' check (state in ('pending','delivered','failed','dropped')),
  attempts int not null default 0,
  last_status int,
  last_error text,
  last_attempt_at timestamptz,
  next_attempt_at timestamptz not null default now(),
  pending_since timestamptz not null default now(),
  delivered_at timestamptz,
  created_at timestamptz not null default now(),
  constraint webhook_delivery_event_seq_webhook_id_key unique (event_seq, webhook_id)
);
-- a subscription's queue, in event order
create index webhook_delivery_pending on webhook_delivery (webhook_id, event_seq) where state = 'pending';
-- the delivery log, newest first
create index webhook_delivery_log on webhook_delivery (webhook_id, id);
-- the reconciler: pending deliveries by when they are due
create index webhook_delivery_due on webhook_delivery (next_attempt_at) where state = 'pending';
`);
  }

  override down(): void {
    this.addSql(`drop table webhook_delivery; drop table webhook_event; drop table webhook;`);
  }
}
