import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { entities } from '../../src/db/entities.js';
import { dropDatabase, migrationsPath, openOrm, type Orm } from '../../src/db/orm.js';

// Not the harness: this test needs the database layer only, not the application.
const PG_BASE = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';

/**
 * The entities are the truth of the schema: on a freshly migrated database, MikroORM finds nothing
 * to change (what `npx mikro-orm migration:check` and `npx mikro-orm schema:update --dump` report).
 */
describe('schema', () => {
  const databaseUrl = `${PG_BASE}/pap_schema_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  let orm: Orm;

  beforeAll(async () => {
    orm = await openOrm(databaseUrl, { migrate: true, poolMax: 2 });
  });

  afterAll(async () => {
    await orm?.close();
    await dropDatabase(databaseUrl);
  });

  it('when every migration has run, then MikroORM would change nothing (empty update SQL)', async () => {
    const sql = await orm.schema.getUpdateSchemaSQL({ wrap: false });
    expect(sql.trim()).toBe('');
  });

  it('when every migration has run, then the migration check reports no changes', async () => {
    // `migration:check` is `migrator.checkSchema()`: true means "Changes detected".
    expect(await orm.migrator.checkSchema()).toBe(false);
  });

  it('when every migration has run, then none is pending and every file in the folder was applied', async () => {
    expect(await orm.migrator.getPending()).toEqual([]);
    const files = readdirSync(migrationsPath)
      .filter((f) => /\.ts$/.test(f) && !f.endsWith('.d.ts'))
      .map((f) => f.replace(/\.ts$/, ''))
      .sort();
    const executed = (await orm.migrator.getExecuted()).map((m) => m.name).sort();
    expect(executed).toEqual(files);
    expect(files.length).toBeGreaterThanOrEqual(2);
  });

  it('when the database is listed, then every table has an entity and every entity a table', async () => {
    const rows = await orm.em.fork().execute<{ table_name: string }[]>(
      "select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'",
    );
    const tables = rows.map((r) => r.table_name).filter((t) => t !== 'mikro_orm_migrations').sort();
    const entityTables = entities.map((e) => e.meta.tableName).sort();
    expect(tables).toEqual(entityTables);
    expect(entityTables).toHaveLength(17);
  });
});
