/**
 * The intake's group INSERT is a named (prepared) statement, planned again each time the command
 * log has doubled: a connection keeps a generic plan for its life, and one made while the log was
 * nearly empty scans the whole table (the cheapest plan then), ever slower as the log grows.
 */
import { insertCommands, type NewCommand } from '../../src/db/command-log.js';
import { dropDatabase, openOrm, type Orm } from '../../src/db/orm.js';
import { PG_BASE, uniqueName } from '../helpers/harness.js';

describe('the intake\'s named INSERT', () => {
  const url = `${PG_BASE}/${uniqueName('pap_test')}`;
  let orm: Orm;
  beforeAll(async () => {
    // One connection: the prepared statements the test reads are that session's.
    orm = await openOrm(url, { migrate: true, poolMax: 1 });
  });
  afterAll(async () => {
    await orm.close();
    await dropDatabase(url);
  });

  let n = 0;
  const commands = (count: number): NewCommand[] => Array.from({ length: count }, () => {
    n++;
    return { id: `st-${n}`, partnerId: 'p-st', type: 'employee.tag', payload: { type: 'employee.tag', email: `st${n}@acme.test` }, bodyHash: `h${n}`, issuedAt: null, tokenName: 'crm' };
  });
  const prepared = async () =>
    (await orm.em.fork().execute<{ name: string }[]>(`select name from pg_prepared_statements where name like 'command\\_insert%' order by name`)).map((r) => r.name);

  it('when groups of 10 fill the log up to 1000 commands, then the connection prepares the INSERT once per doubling of the log, not once for good nor once per group', async () => {
    // 100 groups; each after the first confirms the previous one, as the HTTP intake's do.
    let previous: string[] = [];
    for (let g = 0; g < 100; g++) {
      const group = commands(10);
      const inserted = await insertCommands(orm.em.fork(), group, previous, []);
      expect(inserted.created).toHaveLength(10);
      previous = group.map((c) => c.id);
    }
    const names = await prepared();
    // Sizes 0 to ~1000: the classes ⌊log2(size + 1)⌋ 0, 3, 4, …, 9 (the first group alone has no confirmations).
    expect(names.length).toBeGreaterThanOrEqual(8);
    expect(names.length).toBeLessThanOrEqual(12);
    expect(names.filter((name) => name.startsWith('command_insert_confirm_')).length).toBe(names.length - 1);
  });
});
