import { sql, type RawBuilder } from 'kysely';
import type { Em } from './orm.js';

/**
 * Runs a Kysely `sql` statement on the entity manager's connection (its transaction inside
 * `em.transactional`, else the pool) and returns its rows, typed as the statement declares them.
 * Values are interpolated as `${value}` and sent as bind parameters, never formatted into the text.
 */
export async function rows<Row>(em: Em, query: RawBuilder<Row>): Promise<Row[]> {
  return (await query.execute(em.getKysely())).rows;
}

/** The first row of a statement, if any. */
export async function firstRow<Row>(em: Em, query: RawBuilder<Row>): Promise<Row | undefined> {
  return (await query.execute(em.getKysely())).rows[0];
}

/** Runs a statement for its effect; returns how many rows it changed. */
export async function run(em: Em, query: RawBuilder<unknown>): Promise<number> {
  return Number((await query.execute(em.getKysely())).numAffectedRows ?? 0);
}

/**
 * One JSON bind parameter (`$n::jsonb`): a whole set of rows travels as one value, unpacked by
 * `jsonb_to_recordset` / `jsonb_array_elements` in the statement, whatever the set's size.
 */
export const jsonb = <T>(value: T): RawBuilder<T> => sql<T>`${JSON.stringify(value)}::jsonb`;

/** An optional value as JSON (`null` when undefined), for `coalesce(…, column)` updates. */
export const jsonbOrNull = (value: unknown): RawBuilder<unknown> => sql`${value === undefined ? null : JSON.stringify(value)}::jsonb`;
