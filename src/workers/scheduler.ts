import { createHash } from 'node:crypto';
import type { Job } from 'bullmq';
import type { AppContext } from '../context.js';
import { jobIds } from '../queues/index.js';
import { isTransientDatabaseError } from './failures.js';
import { recalculateCredit, recalculateCredits } from './credit.js';

export const RECALC_SCHEDULER_ID = 'credit-recalculate-daily';

/** Partners per `recalculate-partners` job of a run (one read and one write each). */
export const RECALC_GROUP_SIZE = 25;

/** `recalculate-all`: the scheduler's job (data `{}`); `groupSize` overrides {@link RECALC_GROUP_SIZE}. */
export interface RecalcAllJob { groupSize?: number }
/** `recalculate-partners`: one group of a run. */
export interface RecalcGroupJob { partnerIds: string[]; runId: string }
/** `recalculate-partner`: one partner; `isolatedFrom` names the group job that handed it over. */
export interface RecalcPartnerJob { partnerId: string; isolatedFrom?: string }

/**
 * Job id of one group of one run: the run and the group's members (a digest), so a replayed
 * fan-out over the same partners adds nothing twice, and one over changed partners (a partner
 * created meanwhile) adds the groups that changed rather than skipping anyone.
 */
export const recalcGroupJobId = (runId: string, partnerIds: readonly string[]) =>
  `rg.${runId}.${createHash('sha256').update(JSON.stringify(partnerIds)).digest('hex').slice(0, 20)}`;

const runIdOf = (job: Job) => String(job.id ?? Date.now()).replace(/[^A-Za-z0-9]/g, '');

/** Upserts the daily recalculation job scheduler (the one place that does). */
export async function upsertRecalcScheduler(ctx: AppContext): Promise<void> {
  await ctx.queues.credit.upsertJobScheduler(
    RECALC_SCHEDULER_ID,
    { pattern: ctx.config.recalcCron, tz: ctx.config.recalcTz },
    { name: 'recalculate-all', data: {} },
  );
}

/**
 * The `credit` queue, all idempotent (numbers are recomputed from facts, never incremented):
 * - `recalculate-all` (the scheduler's job) fans out one `recalculate-partners` job per group of
 *   {@link RECALC_GROUP_SIZE} partners, job id per run and group ({@link recalcGroupJobId}).
 * - `recalculate-partners` reads all its partners' facts in one query and writes all their
 *   snapshots in one statement. A failure is never a silent gap: a partner whose numbers cannot be
 *   computed, or every partner of the group when its read or write fails, is handed to its own
 *   `recalculate-partner` job (job id per partner and run, as before grouping), which has the usual
 *   retries and, if it keeps failing, stays failed in the dashboard under that partner's name.
 *   Only if that hand-over cannot be enqueued does the group job fail (and is retried).
 * - `recalculate-partner` recomputes one partner (also for jobs added before groups existed).
 */
export async function processCreditJob(ctx: AppContext, job: Job): Promise<unknown> {
  if (job.name === 'recalculate-all') return fanOut(ctx, job);
  if (job.name === 'recalculate-partners') return recalculateGroup(ctx, job);
  const { partnerId } = job.data as Partial<RecalcPartnerJob>;
  if (!partnerId) return { skipped: true };
  return recalculateCredit(ctx.orm.em.fork(), partnerId, { now: ctx.now(), renewalAlertDays: ctx.config.renewalAlertDays });
}

async function fanOut(ctx: AppContext, job: Job): Promise<{ partners: number; groups: number }> {
  const requested = Number((job.data as RecalcAllJob | undefined)?.groupSize);
  const size = Number.isInteger(requested) && requested >= 1 ? Math.min(requested, 1000) : RECALC_GROUP_SIZE;
  const partners = (await ctx.orm.em.fork().execute<{ id: string }[]>('select id from partner order by id')).map((p) => p.id);
  const runId = runIdOf(job);
  const groups: string[][] = [];
  for (let i = 0; i < partners.length; i += size) groups.push(partners.slice(i, i + size));
  const chunk = 200;
  for (let i = 0; i < groups.length; i += chunk) {
    await ctx.queues.credit.addBulk(groups.slice(i, i + chunk).map((partnerIds) => ({
      name: 'recalculate-partners', data: { partnerIds, runId }, opts: { jobId: recalcGroupJobId(runId, partnerIds) },
    })));
    await job.updateProgress(Math.round((Math.min(i + chunk, groups.length) / groups.length) * 100));
  }
  return { partners: partners.length, groups: groups.length };
}

async function recalculateGroup(ctx: AppContext, job: Job): Promise<{ partners: number; isolated: string[] }> {
  const { partnerIds, runId = runIdOf(job) } = job.data as Partial<RecalcGroupJob>;
  if (!Array.isArray(partnerIds) || !partnerIds.every((p) => typeof p === 'string' && p.length > 0)) return { partners: 0, isolated: [] };
  let isolated: string[];
  let stored = 0;
  try {
    const result = await recalculateCredits(ctx.orm.em.fork(), partnerIds, { now: ctx.now(), renewalAlertDays: ctx.config.renewalAlertDays });
    stored = result.stored.length;
    for (const f of result.failed) ctx.logger.warn({ jobId: job.id, partnerId: f.partnerId, reason: f.error.message }, 'credit of a partner could not be computed; handing it to its own job');
    if (!result.failed.length) return { partners: stored, isolated: [] };
    isolated = result.failed.map((f) => f.partnerId);
  } catch (err) {
    if (isTransientDatabaseError(err)) throw err; // the group job retries whole, with backoff
    ctx.logger.warn({ err, jobId: job.id, partners: partnerIds.length }, 'group recalculation failed; handing its partners to single-partner jobs');
    isolated = [...new Set(partnerIds)];
  }
  // Throws if Redis refuses: then the group job is retried, and nothing is lost either way.
  await ctx.queues.credit.addBulk(isolated.map((partnerId) => ({
    name: 'recalculate-partner', data: { partnerId, isolatedFrom: String(job.id) }, opts: { jobId: jobIds.credit(partnerId, runId) },
  })));
  return { partners: stored, isolated };
}
