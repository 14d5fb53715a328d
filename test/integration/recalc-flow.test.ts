import type { Job } from 'bullmq';
import { startService, waitFor, type TestService } from '../helpers/harness.js';
import { jobIds } from '../../src/jobs/contracts.js';

/**
 * The daily recalculation as a BullMQ flow (issue 16): the `recalculate-all` run is the parent of
 * its `recalculate-partners` groups, waits for them, and its progress counts the groups that have
 * finished, so the queue dashboard shows real progress.
 */

const PARTNERS = ['flow-a', 'flow-b', 'flow-c', 'flow-d'];

describe('the daily recalculation as a flow', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startService();
    for (const p of PARTNERS) expect((await svc.api.apply(p, { type: 'partner.upsert', name: `Partner ${p}` })).state).toBe('completed');
  });
  afterAll(async () => {
    await svc.close();
  });

  const credit = () => svc.app.ctx.queues.credit;
  const reload = async (id: string) => (await credit().getJob(id))!;
  const runId = (job: Job) => String(job.id).replace(/[^A-Za-z0-9]/g, '');

  async function finished(id: string): Promise<Job> {
    await waitFor(async () => ['completed', 'failed'].includes(await (await reload(id)).getState()), { timeoutMs: 20_000, what: `the run ${id} to finish` });
    const job = await reload(id);
    expect(await job.getState()).toBe('completed');
    return job;
  }

  it('when a run\'s groups have all finished, then the run completes after them, with progress 100 and its counts, each group being its child', async () => {
    const run = await credit().add('recalculate-all', { groupSize: 1 });
    const done = await finished(run.id!);
    expect(done.progress).toBe(100);
    expect(done.returnvalue).toEqual({ partners: PARTNERS.length, groups: PARTNERS.length, failedGroups: 0 });
    // Its children: one group per partner, deterministic ids, every one finished before the run.
    const children = Object.keys(await done.getChildrenValues()).map((key) => key.split(':').at(-1)).sort();
    expect(children).toEqual(PARTNERS.map((p) => jobIds.recalcGroup(runId(run), [p])).sort());
    for (const id of children) {
      const group = await reload(id!);
      expect(group.parent?.id).toBe(run.id);
      expect(group.finishedOn!).toBeLessThanOrEqual(done.finishedOn!);
    }
    expect((await svc.sql<{ partner_id: string }>('select partner_id from credit_snapshot order by partner_id')).map((r) => r.partner_id)).toEqual(PARTNERS);
  });

  it('when one group of a run is held up, then the run waits for it with progress strictly between 0 and 100, and reaches 100 once that group finishes', async () => {
    // Hold flow-d's group: its write waits for the lock this transaction takes on its snapshot row.
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => { locked = r; });
    const holder = svc.db.em.fork().transactional(async (em) => {
      await em.execute('select 1 from credit_snapshot where partner_id = ? for update', ['flow-d']);
      locked();
      await held;
    });
    try {
      await isLocked;
      const run = await credit().add('recalculate-all', { groupSize: 1 });
      await waitFor(async () => (await (await reload(run.id!)).getDependenciesCount({ processed: true })).processed === PARTNERS.length - 1,
        { timeoutMs: 20_000, what: 'every group but the held one to finish' });
      let job = await reload(run.id!);
      await waitFor(async () => {
        job = await reload(run.id!);
        return typeof job.progress === 'number' && job.progress > 0;
      }, { timeoutMs: 10_000, what: 'the run to report progress' });
      expect(await job.getState()).toBe('waiting-children');
      expect(job.progress).toBeGreaterThan(0);
      expect(job.progress).toBeLessThan(100);
      expect(await job.getDependenciesCount({ processed: true, unprocessed: true })).toEqual({ processed: 3, unprocessed: 1 });
      expect(job.returnvalue).toBeFalsy();

      release();
      await holder;
      const done = await finished(run.id!);
      expect(done.progress).toBe(100);
      expect(done.returnvalue).toEqual({ partners: PARTNERS.length, groups: PARTNERS.length, failedGroups: 0 });
    } finally {
      release();
      await holder;
    }
  });
});
