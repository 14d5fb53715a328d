import { sql, type RawBuilder } from 'kysely';
import type { PostgreSqlConnection } from '@mikro-orm/postgresql';
import type { Em } from './orm.js';

/**
 * Runs a Kysely `sql` statement on the entity manager's connection (its transaction inside
 * `em.transactional`, else the pool) and returns its rows, typed as the statement declares them.
 * Values are interpolated as `${value}` and sent as bind parameters, never formatted into the text.
 */
export async function rows<Row>(em: Em, query: RawBuilder<Row>): Promise<Row[]> {
  return (await query.execute(em.getKysely())).rows;
}

/**
 * rows() for a hot statement, sent to the ORM's pool as the named (prepared) statement `name`: each
 * connection parses it once and, after five runs, keeps one generic plan, so a run costs Postgres
 * only Bind and Execute (and the text is not sent again). One name, one text: `pg` refuses another
 * text under a name it has prepared. The generic plan is made for the tables as they are then and
 * kept until their statistics change; a caller whose best plan depends on a table's size changes
 * the name as the table grows (insertCommands does). Inside `em.transactional` it runs on the
 * transaction, unnamed, as rows() does. Rows, values and errors are rows()'s: the same pool, driver
 * and type parsers.
 */
export async function preparedRows<Row>(em: Em, name: string, query: RawBuilder<Row>): Promise<Row[]> {
  const kysely = em.getKysely();
  if (em.getTransactionContext()) return (await query.execute(kysely)).rows;
  const { sql: text, parameters } = query.compile(kysely);
  const pool = await (em.getConnection() as PostgreSqlConnection).getNativeClient();
  // Not pool.query(): it destroys the connection after any error (a refused value, a read-only
  // session); a connection is given back as Kysely gives it back, whatever the statement did.
  const client = await pool.connect();
  try {
    return (await client.query<Row & object>({ name, text, values: [...parameters] })).rows;
  } finally {
    client.release();
  }
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
