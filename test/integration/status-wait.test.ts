/**
 * Status without polling (contract §4): `GET /v1/commands/{id}?wait=N` (N ≤ 30) answers as soon as
 * the command is completed or failed (a worker's message on Redis pub/sub wakes the request), or
 * after N seconds with its current status. The API process reads Postgres once before waiting and
 * once after, never in a loop.
 */
import type { PostgreSqlConnection } from '@mikro-orm/postgresql';
import { startApp, type RunningApp } from '../../src/app.js';
import { startService, TOKENS, waitFor, type TestService } from '../helpers/harness.js';

const P = 'p-100';

describe('the command status with wait', () => {
  // The API alone: commands stay waiting until a worker process is started by the test.
  let svc: TestService;
  let worker: RunningApp | undefined;

  beforeAll(async () => {
    svc = await startService({ ROLES: 'api' });
  });
  afterAll(async () => {
    await worker?.close();
    await svc?.close();
  });

  const status = (commandId: string, query: string, token: string = TOKENS.admin) => svc.api.request('GET', `/v1/commands/${encodeURIComponent(commandId)}${query}`, { token });

  /**
   * How many times the API process takes a connection from its Postgres pool while `fn` runs: one
   * per statement outside a transaction. (Postgres' own counters are flushed by each backend up to
   * 10 s late, so they would also count what the service did before.)
   */
  async function poolCheckouts<T>(fn: () => Promise<T>): Promise<{ value: T; checkouts: number }> {
    const pool = await (svc.app.ctx.orm.em.getConnection() as PostgreSqlConnection).getNativeClient();
    let checkouts = 0;
    const counted = () => { checkouts++; };
    pool.on('acquire', counted);
    try {
      return { value: await fn(), checkouts };
    } finally {
      pool.off('acquire', counted);
    }
  }

  it('when nothing settles the command, then wait answers its current status after N seconds, with one read before and one after', async () => {
    const posted = await svc.api.post(P, { type: 'partner.upsert', commandId: 'w-idle', name: 'Acme' });
    expect(posted.status).toBe(202);
    // The intake confirms the command's job just after its reply (off the reply's path): done first, so that it is not counted.
    await waitFor(async () => (await svc.sql<{ n: string }>(`select count(*)::text as n from command where id = 'w-idle' and enqueued_at is not null`))[0]!.n === '1', { what: 'the intake to confirm the command' });
    const started = Date.now();
    const { value: r, checkouts } = await poolCheckouts(() => status('w-idle', '?wait=3'));
    const took = Date.now() - started;
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ commandId: 'w-idle', state: 'waiting' });
    expect(took).toBeGreaterThanOrEqual(2900);
    expect(took).toBeLessThan(8000);
    // The status read before waiting and the one after (a loop over three seconds would take dozens).
    expect(checkouts).toBe(2);
  });

  it('when a worker settles the command during the wait, then the same request answers at once with the final status', async () => {
    const posted = await svc.api.post(P, { type: 'employee.tag', commandId: 'w-settle', email: 'ann@acme.test' });
    expect(posted.status).toBe(202);
    const started = Date.now();
    const answer = status('w-settle', '?wait=25');
    // The request is waiting (the command cannot run without a worker); now a worker process comes.
    worker = await startApp({ ...svc.config, roles: new Set(['worker']) });
    const r = await answer;
    const took = Date.now() - started;
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ commandId: 'w-settle', state: 'completed' });
    expect(took).toBeLessThan(20_000);
    // Woken by the settling itself, not by the timeout nor a poll interval.
    expect(Date.now() - new Date(r.body.finishedAt).getTime()).toBeLessThan(2000);
  });

  it('when the command already settled, or is a pair command that fails, then wait answers at once with items', async () => {
    expect(worker).toBeDefined();
    const settled = Date.now();
    const r = await status('w-settle', '?wait=30');
    expect(r.body.state).toBe('completed');
    expect(Date.now() - settled).toBeLessThan(2000);
    // A pair command settles from its items (another path of the worker): its refused pair fails it.
    const posted = await svc.api.post(P, { type: 'access.assign', commandId: 'w-pairs', clientHubIds: ['c-none'], employeeEmails: ['ann@acme.test'] });
    expect(posted.status).toBe(202);
    const failed = await status('w-pairs', '?wait=25');
    expect(failed.body).toMatchObject({ state: 'failed', items: [{ clientHubId: 'c-none', state: 'failed', error: { code: 'UNKNOWN_CLIENT' } }] });
  });

  it('when wait is over 30, negative or not a number, then 400 VALIDATION_FAILED; an unknown or another partner\'s command is 404 at once', async () => {
    for (const bad of ['31', '-1', 'soon', '1e9']) {
      const r = await status('w-idle', `?wait=${bad}`);
      expect({ bad, status: r.status, code: r.body.error?.code, path: r.body.error?.issues?.[0]?.path }).toEqual({ bad, status: 400, code: 'VALIDATION_FAILED', path: 'wait' });
    }
    expect((await status('w-idle', '?wait=30.0')).status).toBe(200);
    const started = Date.now();
    expect((await status('w-nope', '?wait=20')).status).toBe(404);
    expect((await status('w-idle', '?wait=20', TOKENS.other)).status).toBe(404);
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
