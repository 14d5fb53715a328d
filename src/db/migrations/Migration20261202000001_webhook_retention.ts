import { Migration } from '@mikro-orm/migrations';

/**
 * Webhook retention: the lifecycle sweep deletes finished webhook events older than
 * WEBHOOK_RETENTION_DAYS, oldest first, in batches. Without an index on `created_at` each batch
 * would scan the whole table (a month of events) to find the few old ones.
 *
 * A plain `create index` (migrations run in one transaction, all or nothing, so `concurrently` is
 * not possible here): it blocks inserts into `webhook_event` (so the changes that write events)
 * while it builds. Where the table is already large, create it beforehand without blocking,
 * `create index concurrently webhook_event_created_at on webhook_event (created_at);`, and this
 * migration finds it (`if not exists`).
 */
export class Migration20261202000001WebhookRetention extends Migration {
  override name = 'Migration20261202000001_webhook_retention';

  override up(): void {
    this.addSql(`create index if not exists webhook_event_created_at on webhook_event (created_at);`);
  }

  override down(): void {
    this.addSql(`drop index if exists webhook_event_created_at;`);
  }
}
