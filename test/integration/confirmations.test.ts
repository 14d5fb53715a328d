import { insertCommands, markEnqueued, type NewCommand } from '../../src/db/command-log.js';
import { lockCommand } from '../../src/db/command-progress.js';
import { startService, type TestService } from '../helpers/harness.js';

/**
 * The intake confirms commands (`enqueued_at`) after their jobs are in Redis, alone or riding on the
 * next group's INSERT. A command a worker holds (its own job is applying it) is skipped, not waited
 * for: otherwise the next group's replies would wait for that worker's transaction.
 */
describe('confirming accepted commands while a worker holds one of them', () => {
  let svc: TestService;
  beforeAll(async () => {
    // API only: no worker takes the commands this test writes.
    svc = await startService({ ROLES: 'api' });
  });
  afterAll(async () => {
    await svc.close();
  });

  const command = (id: string): NewCommand => ({
    id, partnerId: 'p-conf', type: 'employee.tag', payload: { type: 'employee.tag', email: `${id}@agency.test` }, bodyHash: id, issuedAt: null, tokenName: 'test',
  });
  const confirmed = async (ids: string[]) => Object.fromEntries(
    (await svc.sql<{ id: string; confirmed: boolean }>('select id, enqueued_at is not null as confirmed from command where id in (?) order by id', [ids])).map((r) => [r.id, r.confirmed]));

  it('when a worker holds an unconfirmed command, then the next group\'s insert and a confirmation alone both go through without it, and it is confirmed once released', async () => {
    await insertCommands(svc.db.em.fork(), [command('cf-held'), command('cf-free')]);
    await svc.db.em.fork().transactional(async (tx) => {
      expect(await lockCommand(tx, 'cf-held')).toMatchObject({ state: 'waiting' });
      // Both statements would wait for this transaction if they did not skip the held row: the test
      // would then never get past them (it is inside the transaction that holds it).
      const inserted = await insertCommands(svc.db.em.fork(), [command('cf-next'), command('cf-free')], ['cf-held', 'cf-free']);
      // One statement answers both: what it created, and the keys of what was logged before it.
      expect(inserted.created.map((r) => r.id)).toEqual(['cf-next']);
      expect(inserted.known).toEqual([{ id: 'cf-free', partnerId: 'p-conf', bodyHash: 'cf-free', state: 'waiting' }]);
      await markEnqueued(svc.db.em.fork(), ['cf-held', 'cf-next']);
    });
    expect(await confirmed(['cf-held', 'cf-free', 'cf-next'])).toEqual({ 'cf-held': false, 'cf-free': true, 'cf-next': true });
    await markEnqueued(svc.db.em.fork(), ['cf-held']);
    expect(await confirmed(['cf-held'])).toEqual({ 'cf-held': true });
  });
});
