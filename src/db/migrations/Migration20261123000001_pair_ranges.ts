import { Migration } from '@mikro-orm/migrations';

/**
 * Pair commands are applied in ranges: the command keeps the range size it was fanned out with, so
 * every process (whatever its PAIR_BATCH_SIZE) finds the same range jobs. Outbox rows a worker sends
 * itself right after committing them carry a claim: until it expires, the reconciler leaves the row
 * to that worker (no second sender); after a crash it expires and the row gets a mail job.
 */
export class Migration20261123000001PairRanges extends Migration {
  override name = 'Migration20261123000001_pair_ranges';

  override up(): void {
    this.addSql(`alter table command add column range_size int not null default 0;`);
    this.addSql(`alter table outbox add column claimed_until timestamptz;`);
  }

  override down(): void {
    this.addSql(`alter table outbox drop column if exists claimed_until;`);
    this.addSql(`alter table command drop column if exists range_size;`);
  }
}
