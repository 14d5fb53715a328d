import { Migration } from '@mikro-orm/migrations';

/**
 * The dates credit is computed from stay real calendar days: `sale.closed_on`, `churn.on_date` and
 * `client_account.renewal_date` must lie in 0001-01-01..9999-12-31. Outside that range Postgres
 * stores `infinity`, `-infinity`, BC dates and years beyond 9999, which only a direct database
 * write can produce (the API takes YYYY-MM-DD from year 0001, `isoDate` in src/commands/schemas.ts).
 * The recalculation reads these columns as `to_char(…, 'YYYY-MM-DD')` and checks them by hand
 * (src/db/credit-store.ts, src/domain/credit.ts): an infinite date reads as null and failed the
 * partner with a TypeError (retried, and the credit report answered 500), and a BC date read as
 * the same day AD. Refusing such values here keeps a guard out of the recalculation's hot path.
 * The range is exactly what the API accepts, so the constraint never refuses a value the API lets
 * through (a tighter one, such as 1900.., would fail accepted commands in the worker).
 *
 * Existing rows are validated, not rewritten: if one is out of range, this migration fails (and,
 * being transactional, changes nothing) with `check constraint "sale_closed_on_check" of relation
 * "sale" is violated by some row` (or the churn / client_account one). No `not valid` either: such
 * a row would stay and still fail its partner's recalculation. Which value it should have is a
 * business decision, so fix or delete the rows found by
 *   select * from sale where not (closed_on >= '0001-01-01' and closed_on <= '9999-12-31');
 *   select * from churn where not (on_date >= '0001-01-01' and on_date <= '9999-12-31');
 *   select * from client_account where not (renewal_date >= '0001-01-01' and renewal_date <= '9999-12-31');
 * and run it again.
 *
 * Each `add constraint` holds an exclusive lock on its table while it scans it (a sequential scan:
 * 65–80 ms for a million sales on the development machine). The names are Postgres' own for a
 * column check, which MikroORM also gives the `.check()` of these columns in src/db/entities.ts;
 * the expressions are written as Postgres prints them back (`>= … and <= …`, not `between`), so
 * its diff stays empty.
 */
export class Migration20261203000001CreditDateChecks extends Migration {
  override name = 'Migration20261203000001_credit_date_checks';

  override up(): void {
    this.addSql(`
alter table sale add constraint sale_closed_on_check check (closed_on >= '0001-01-01' and closed_on <= '9999-12-31');
alter table churn add constraint churn_on_date_check check (on_date >= '0001-01-01' and on_date <= '9999-12-31');
alter table client_account add constraint client_account_renewal_date_check check (renewal_date >= '0001-01-01' and renewal_date <= '9999-12-31');
`);
  }

  override down(): void {
    this.addSql(`
alter table client_account drop constraint if exists client_account_renewal_date_check;
alter table churn drop constraint if exists churn_on_date_check;
alter table sale drop constraint if exists sale_closed_on_check;
`);
  }
}
