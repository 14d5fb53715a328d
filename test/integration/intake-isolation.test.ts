/**
 * Intake isolation (issue 11, finding 9): one caller's input that Postgres refuses fails that
 * caller's request alone, even when it shares a group commit with others; a database that cannot
 * take writes now (read-only, SQLSTATE class 25) answers 503. The bad text is handed to the intake
 * directly, as an already validated command, so it reaches Postgres whatever validation refuses.
 */
import { acceptGroup, commandIntake, type Accepted, type IntakeRequest } from '../../src/commands/log.js';
import type { Command } from '../../src/commands/schemas.js';
import { openOrm } from '../../src/db/orm.js';
import { errorReply } from '../../src/producers/errors.js';
import { commandJobOf, startService, TOKENS, type TestService } from '../helpers/harness.js';

const P1 = 'p-100';

/** The status the HTTP layer gives a result of the intake: 202 for a new command, else its error's. */
const statusOf = (r: Accepted[] | Error) => (r instanceof Error ? errorReply(r)?.status ?? 500 : r.some((a) => a.created) ? 202 : 200);

const tag = (commandId: string, email: string, name?: string): Command => ({ type: 'employee.tag', commandId, email, ...(name === undefined ? {} : { name }) });
const one = (command: Command, batch = false): IntakeRequest => ({ partnerId: P1, tokenName: 'crm', commands: [command], batch });

describe('intake isolation', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startService();
  });
  afterAll(async () => {
    await svc.close();
  });

  const logged = async (ids: string[]) =>
    (await svc.sql<{ id: string }>('select id from command where id in (select jsonb_array_elements_text(?::jsonb)) order by id', [JSON.stringify(ids)])).map((r) => r.id);
  const enqueued = async (ids: string[]) => {
    const jobs = await Promise.all(ids.map((id) => commandJobOf(svc, id)));
    return jobs.filter((j) => j !== undefined).length;
  };

  it('when one request of a group commit holds a NUL byte in name among 50 valid ones, then it alone gets 400 naming the field and the 50 others 202', async () => {
    const valid = Array.from({ length: 50 }, (_, i) => one(tag(`iso-ok-${i}`, `iso.ok${i}@acme.test`, `Valid ${i}`)));
    const bad = one(tag('iso-bad-nul', 'iso.bad@acme.test', 'Bad\u0000Name'));
    const inputs = [...valid.slice(0, 25), bad, ...valid.slice(25)];
    const results = await acceptGroup(svc.app.ctx.orm, svc.app.ctx.queues, inputs);

    expect(results.map(statusOf)).toEqual([...Array(25).fill(202), 400, ...Array(25).fill(202)]);
    expect(errorReply(results[25])).toEqual({
      status: 400,
      body: { error: { code: 'VALIDATION_FAILED', message: expect.any(String), issues: [{ path: 'name', message: expect.any(String) }] } },
    });
    const validIds = valid.map((v) => v.commands[0]!.commandId!);
    expect(await logged([...validIds, 'iso-bad-nul'])).toEqual([...validIds].sort());
    expect(await enqueued(validIds)).toBe(50);
  });

  it('when requests arrive together at the intake and one batch holds a lone surrogate, then that batch alone is refused with the path of its command, and the others are accepted once each', async () => {
    const intake = commandIntake(svc.app.ctx.orm, svc.app.ctx.queues);
    const valid = Array.from({ length: 50 }, (_, i) => one(tag(`iso-c-${i}`, `iso.c${i}@acme.test`)));
    const bad: IntakeRequest = { partnerId: P1, tokenName: 'crm', batch: true, commands: [tag('iso-c-bad-0', 'iso.c.bad0@acme.test'), tag('iso-c-bad-1', 'iso.c.bad1@acme.test', 'Half \ud800 pair')] };
    // Submitted in one tick: the first two run at once, the other 49 (the bad batch among them) share one group.
    const settled = await Promise.allSettled([...valid.slice(0, 10), bad, ...valid.slice(10)].map((r) => intake.submit(r)));
    const results = settled.map((s) => (s.status === 'fulfilled' ? s.value : (s.reason as Error)));

    expect(results.map(statusOf)).toEqual([...Array(10).fill(202), 400, ...Array(40).fill(202)]);
    expect(errorReply(results[10])?.body.error.issues).toEqual([{ path: 'commands.1.name', message: expect.any(String) }]);
    const validIds = valid.map((v) => v.commands[0]!.commandId!);
    expect(await logged([...validIds, 'iso-c-bad-0', 'iso-c-bad-1'])).toEqual([...validIds].sort());
    expect(await enqueued(validIds)).toBe(50);
  });

  it('when 50 valid posts and one with a NUL byte in name arrive at once over HTTP, then every valid one gets 202 and the bad one 400 with the contract error body', async () => {
    const replies = await Promise.all([
      ...Array.from({ length: 25 }, (_, i) => svc.api.post(P1, tag(`iso-h-${i}`, `iso.h${i}@acme.test`), TOKENS.crm)),
      svc.api.post(P1, tag('iso-h-bad', 'iso.h.bad@acme.test', 'Bad\u0000Name'), TOKENS.crm),
      ...Array.from({ length: 25 }, (_, i) => svc.api.post(P1, tag(`iso-h-${25 + i}`, `iso.h${25 + i}@acme.test`), TOKENS.crm)),
    ]);
    expect(replies.map((r) => r.status)).toEqual([...Array(25).fill(202), 400, ...Array(25).fill(202)]);
    expect(replies[25]!.body).toMatchObject({ error: { code: 'VALIDATION_FAILED', message: expect.any(String), issues: [{ path: 'name', message: expect.any(String) }] } });
  });

  it('when the database takes no writes (a read-only transaction, SQLSTATE 25006), then the intake answers 503 and nothing is recorded', async () => {
    // One connection whose session is read-only, as on a standby after a failover.
    const readOnly = await openOrm(svc.config.databaseUrl, { migrate: false, poolMax: 1 });
    try {
      await readOnly.em.fork().execute('set session characteristics as transaction read only');
      const alone = await acceptGroup(readOnly, svc.app.ctx.queues, [one(tag('iso-ro', 'iso.ro@acme.test'))]).catch((e: unknown) => e);
      expect(errorReply(alone)).toEqual({ status: 503, body: { error: { code: 'SERVICE_UNAVAILABLE', message: expect.any(String) } } });
      const group = await acceptGroup(readOnly, svc.app.ctx.queues, [one(tag('iso-ro-1', 'iso.ro1@acme.test')), one(tag('iso-ro-2', 'iso.ro2@acme.test'))]).catch((e: unknown) => e);
      expect(errorReply(group)?.status).toBe(503);
    } finally {
      await readOnly.close();
    }
    expect(await logged(['iso-ro', 'iso-ro-1', 'iso-ro-2'])).toEqual([]);
  });
});
