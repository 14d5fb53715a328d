import { fileURLToPath } from 'node:url';
import { MikroORM, type EntityManager, type Options } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
import pg from 'pg';
import { entities } from './entities.js';

/**
 * An EntityManager that knows the schema's entities, so `em.getKysely()` is typed from them
 * (tables by SQL name, columns by column name: `em.getKysely().selectFrom('command').select('seq')`).
 */
export type Em = EntityManager & { readonly '~entities'?: typeof entities };
export type Orm = MikroORM<EntityManager, typeof entities>;

/**
 * The folder of the migrations. MikroORM discovers them there (sorted by file name, which starts
 * with the timestamp), so `npm run db:migration:create` followed by `npm run db:migrate` just works:
 * no list to keep. A migration's name in `mikro_orm_migrations` is its file name without extension.
 */
export const migrationsPath = fileURLToPath(new URL('./migrations', import.meta.url));

/** The MikroORM options for a database URL (also used by the CLI config). */
export function ormOptions(databaseUrl: string, poolMax = 20): Options<EntityManager, typeof entities> {
  return {
    clientUrl: databaseUrl,
    entities,
    extensions: [Migrator],
    migrations: {
      path: migrationsPath,
      pathTs: migrationsPath,
      glob: '!(*.d).{js,ts}',
      emit: 'ts',
      transactional: true,
      allOrNothing: true,
      // No snapshot file: `migration:create` and `migration:check` diff the entities against the
      // live database, the one truth there is.
      snapshot: false,
      silent: true,
    },
    pool: { min: 0, max: poolMax },
    debug: false,
    allowGlobalContext: false,
  };
}

/** Creates the database named in the URL when it does not exist yet. */
export async function ensureDatabase(databaseUrl: string): Promise<void> {
  const url = new URL(databaseUrl);
  const dbName = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!dbName) return;
  url.pathname = '/postgres';
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [dbName]);
    if (!rowCount) {
      try {
        await client.query(`create database "${dbName.replaceAll('"', '""')}"`);
      } catch (err) {
        if ((err as { code?: string }).code !== '42P04') throw err; // created concurrently
      }
    }
  } finally {
    await client.end();
  }
}

/**
 * Connects to the server's `postgres` database and disconnects: throws the driver's error when the
 * server does not answer within `timeoutMs` (start-up says which service is down, not a stack trace).
 */
export async function checkDatabaseServer(databaseUrl: string, timeoutMs = 3000): Promise<void> {
  const url = new URL(databaseUrl);
  url.pathname = '/postgres';
  const client = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: timeoutMs });
  try {
    await client.connect();
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Drops a database (tests and benchmarks clean up after themselves). */
export async function dropDatabase(databaseUrl: string): Promise<void> {
  const url = new URL(databaseUrl);
  const dbName = decodeURIComponent(url.pathname.replace(/^\//, ''));
  url.pathname = '/postgres';
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    await client.query(`drop database if exists "${dbName.replaceAll('"', '""')}" with (force)`);
  } finally {
    await client.end();
  }
}

export async function openOrm(databaseUrl: string, opts: { migrate: boolean; poolMax?: number }): Promise<Orm> {
  await ensureDatabase(databaseUrl);
  const orm = await MikroORM.init(ormOptions(databaseUrl, opts.poolMax));
  if (opts.migrate) await orm.migrator.up();
  return orm;
}
