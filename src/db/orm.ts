import { MikroORM, type EntityManager, type Options } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
import pg from 'pg';
import { entities } from './entities.js';
import { Migration20261122000001Initial } from './migrations/Migration20261122000001_initial.js';
import { Migration20261123000001PairRanges } from './migrations/Migration20261123000001_pair_ranges.js';

export type Em = EntityManager;
export type Orm = MikroORM;

export const migrationsList = [
  { name: 'Migration20261122000001_initial', class: Migration20261122000001Initial },
  { name: 'Migration20261123000001_pair_ranges', class: Migration20261123000001PairRanges },
];

/** The MikroORM options for a database URL (also used by the CLI config). */
export function ormOptions(databaseUrl: string, poolMax = 20): Options {
  return {
    clientUrl: databaseUrl,
    entities,
    extensions: [Migrator],
    migrations: { migrationsList, transactional: true, allOrNothing: true, snapshot: false, silent: true, path: 'src/db/migrations', pathTs: 'src/db/migrations' },
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
