import { Migration } from '@mikro-orm/migrations';

/**
 * Outbox rows a worker sends itself right after committing them carry a claim: until it expires,
 * the reconciler leaves the row to that worker (no second sender); after a crash it expires and
 * the row gets a mail job like any other.
 */
export class Migration20261123000001OutboxClaim extends Migration {
  override name = 'Migration20261123000001_outbox_claim';

  override up(): void {
    this.addSql(`alter table outbox add column claimed_until timestamptz;`);
  }

  override down(): void {
    this.addSql(`alter table outbox drop column if exists claimed_until;`);
  }
}
