import { REDIS_URL, startService, waitFor, type TestService } from '../helpers/harness.js';
import { StallingProxy } from '../helpers/stalling-proxy.js';

/**
 * A stalled Redis (issue 16, faults): Redis runs what it is sent but its replies do not come back
 * (a network stall; a proxy between the service and Redis holds them). The intake answers 503
 * within 2 s instead of waiting for Redis; nothing is half-accepted; a timed-out add that Redis ran
 * anyway leaves a job that does nothing and does not block a retry of the same commandId.
 */

const STALL_MS = 10_000;
const P = 'p-stall';

describe('the intake while Redis stalls', () => {
  let proxy: StallingProxy;
  let svc: TestService;
  beforeAll(async () => {
    proxy = await new StallingProxy(Number(new URL(REDIS_URL).port || 6379)).start();
    svc = await startService({ REDIS_URL: `redis://127.0.0.1:${proxy.port}${new URL(REDIS_URL).pathname}` });
    const team = { channelAccountManager: { name: 'Cam Manager', email: 'cam@vendor.test' } };
    expect((await svc.api.apply(P, { type: 'partner.upsert', name: 'Stall Partner', team })).state).toBe('completed');
  });
  afterAll(async () => {
    proxy?.resume();
    await svc?.close();
    await proxy?.close();
  });

  const teamEmail = (commandId: string) => ({ type: 'team.email', commandId, to: 'channelAccountManager', subject: commandId, body: `Body of ${commandId}.` });

  it('when Redis stalls for 10 s, then every POST gets 503 within 2 s, everything that got 202 is applied once afterwards, and a timed-out command retried with its commandId completes', async () => {
    const { api } = svc;
    // Accepted just before the stall: their jobs may be anywhere when it begins.
    const before = ['before-0', 'before-1', 'before-2'];
    for (const id of before) expect((await api.post(P, teamEmail(id))).status).toBe(202);

    proxy.stall();
    const stalledUntil = Date.now() + STALL_MS;
    const replies: { commandId: string; status: number; ms: number }[] = [];
    await Promise.all([0, 1, 2].map(async (lane) => {
      for (let n = 0; Date.now() < stalledUntil - 2000; n++) {
        const commandId = `stall-${lane}-${n}`;
        const started = Date.now();
        const r = await api.post(P, teamEmail(commandId));
        replies.push({ commandId, status: r.status, ms: Date.now() - started });
        await new Promise((resolve) => setTimeout(resolve, 50)); // steady traffic, not a busy loop
      }
    }));
    const readyDuringStall = await api.request('GET', '/readyz', { token: null });
    await waitFor(() => Date.now() >= stalledUntil, { timeoutMs: STALL_MS, intervalMs: 100, what: 'the end of the stall' });
    proxy.resume();

    expect(replies.length).toBeGreaterThanOrEqual(6);
    for (const r of replies) expect({ ...r, ms: r.ms < 2000 }).toEqual({ commandId: r.commandId, status: 503, ms: true });
    expect(readyDuringStall.status).toBe(503);
    // Nothing half-accepted: no command that got 503 is in the log.
    const refused = replies.map((r) => r.commandId);
    expect(await svc.sql('select id from command where id in (select jsonb_array_elements_text(?::jsonb))', [JSON.stringify(refused)])).toEqual([]);

    // The first refused command, sent again with its commandId once Redis answers: accepted and applied.
    const retriedId = refused[0]!;
    let retried = await api.post(P, teamEmail(retriedId));
    await waitFor(async () => {
      if (retried.status === 503) retried = await api.post(P, teamEmail(retriedId));
      return retried.status !== 503;
    }, { timeoutMs: 10_000, intervalMs: 200, what: 'the intake to accept again after the stall' });
    expect(retried.status).toBe(202);
    expect((await api.waitCommand(retriedId)).state).toBe('completed');
    for (const id of before) expect((await api.waitCommand(id)).state).toBe('completed');

    // Applied once: one email per accepted command, none for a refused one.
    const accepted = [...before, retriedId];
    await waitFor(() => svc.smtp.messages.length >= accepted.length, { what: 'the emails of the accepted commands' });
    const queues = svc.app.ctx.queues;
    await waitFor(async () => {
      const counts = await Promise.all([queues.commands, queues.mail].map((q) => q.getJobCounts('waiting', 'active', 'delayed', 'prioritized')));
      return counts.every((c) => Object.values(c).every((n) => n === 0));
    }, { what: 'the commands and mail queues to be idle' });
    expect(svc.smtp.messages.map((m) => m.subject).sort()).toEqual([...accepted].sort());

    // The adds that timed out ran in Redis anyway: their jobs found no command of theirs and did nothing.
    const completed = await queues.commands.getCompleted(0, 999);
    const skipped = completed.filter((j) => (j.returnvalue as { skipped?: string } | null)?.skipped);
    expect(skipped.length).toBeGreaterThanOrEqual(1);
    expect(skipped.every((j) => refused.includes(j.data.commandId))).toBe(true);
    expect(await queues.commands.getJobCounts('failed')).toEqual({ failed: 0 });
    // The retried command's job is its own, not the stale one of its first acceptance.
    const retriedJobs = completed.filter((j) => j.data.commandId === retriedId);
    expect(retriedJobs.filter((j) => !(j.returnvalue as { skipped?: string } | null)?.skipped)).toHaveLength(1);
  }, 90_000);
});
