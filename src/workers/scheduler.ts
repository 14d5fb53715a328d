import type { Job } from 'bullmq';
import type { AppContext } from '../context.js';
import { jobIds } from '../queues/index.js';
import { recalculateCredit, type SnapshotStore } from './credit.js';

export const RECALC_SCHEDULER_ID = 'credit-recalculate-daily';

/** Upserts the daily recalculation job scheduler (the one place that does). */
export async function upsertRecalcScheduler(ctx: AppContext): Promise<void> {
  await ctx.queues.credit.upsertJobScheduler(
    RECALC_SCHEDULER_ID,
    { pattern: ctx.config.recalcCron, tz: ctx.config.recalcTz },
    { name: 'recalculate-all', data: {} },
  );
}

/**
 * The `credit` queue. `recalculate-all` (the scheduler's job) fans out one `recalculate-partner`
 * job per partner (job id per partner and run, so a replayed fan-out adds nothing twice);
 * `recalculate-partner` recomputes one partner from facts. Both are idempotent.
 */
export async function processCreditJob(ctx: AppContext, job: Job, store?: SnapshotStore): Promise<unknown> {
  const em = ctx.orm.em.fork();
  if (job.name === 'recalculate-all') {
    const partners = await em.execute<{ id: string }[]>('select id from partner order by id');
    const runId = String(job.id ?? Date.now()).replace(/[^A-Za-z0-9]/g, '');
    const chunk = 500;
    for (let i = 0; i < partners.length; i += chunk) {
      await ctx.queues.credit.addBulk(partners.slice(i, i + chunk).map((p) => ({ name: 'recalculate-partner', data: { partnerId: p.id }, opts: { jobId: jobIds.credit(p.id, runId) } })));
      await job.updateProgress(Math.round(((i + chunk) / Math.max(partners.length, 1)) * 100));
    }
    return { partners: partners.length };
  }
  const partnerId = (job.data as { partnerId?: string }).partnerId;
  if (!partnerId) return { skipped: true };
  return recalculateCredit(em, partnerId, { now: ctx.now(), renewalAlertDays: ctx.config.renewalAlertDays, ...(store ? { store } : {}) });
}
