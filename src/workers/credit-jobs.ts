import type { Job } from 'bullmq';
import type { AppContext } from '../context.js';
import { recalculateCredit, recalculateCredits } from '../commands/credit.js';
import { partnerIds as allPartnerIds } from '../db/partner-store.js';
import { creditJobKind, type RecalcAllJob, type RecalcGroupJob } from '../jobs/contracts.js';
import { enqueueRecalcGroups, enqueueRecalcPartners } from '../jobs/enqueue.js';
import { isTransientDatabaseError, payloadOf, toUnrecoverable } from './failures.js';

/** Partners per `recalculate-partners` job of a run (one read and one write each). */
export const RECALC_GROUP_SIZE = 25;

const runIdOf = (job: Pick<Job, 'id'>) => String(job.id ?? Date.now()).replace(/[^A-Za-z0-9]/g, '');

type CreditJobRun = Pick<Job, 'id' | 'name' | 'data' | 'updateProgress'>;

/**
 * The `credit` queue, all idempotent (numbers are recomputed from facts, never incremented):
 * - `recalculate-all` (the scheduler's job) fans out one `recalculate-partners` job per group of
 *   {@link RECALC_GROUP_SIZE} partners, job id per run and group (jobIds.recalcGroup).
 * - `recalculate-partners` reads all its partners' facts in one query and writes all their
 *   snapshots in one statement. A failure is never a silent gap: a partner whose numbers cannot be
 *   computed, or every partner of the group when its read or write fails, is handed to its own
 *   `recalculate-partner` job (job id per partner and run, as before grouping), which has the usual
 *   retries and, if it keeps failing, stays failed in the dashboard under that partner's name.
 *   Only if that hand-over cannot be enqueued does the group job fail (and is retried).
 * - `recalculate-partner` recomputes one partner (also for jobs added before groups existed).
 * A job of another name, or whose payload does not fit its contract, fails at once (VALIDATION_FAILED).
 */
export async function processCreditJob(ctx: AppContext, job: CreditJobRun): Promise<unknown> {
  const kind = creditJobKind(job.name);
  if (kind === 'recalculateAll') return fanOut(ctx, job, payloadOf(kind, job.data));
  if (kind === 'recalculatePartners') return recalculateGroup(ctx, job, payloadOf(kind, job.data));
  if (kind === 'recalculatePartner') {
    const { partnerId } = payloadOf(kind, job.data);
    return recalculateCredit(ctx.orm.em.fork(), partnerId, { now: ctx.now(), renewalAlertDays: ctx.config.renewalAlertDays });
  }
  throw toUnrecoverable({ code: 'VALIDATION_FAILED', message: `unknown credit job name ${JSON.stringify(job.name).slice(0, 100)}` });
}

async function fanOut(ctx: AppContext, job: CreditJobRun, data: RecalcAllJob): Promise<{ partners: number; groups: number }> {
  const size = data.groupSize ?? RECALC_GROUP_SIZE;
  const partners = await allPartnerIds(ctx.orm.em.fork());
  const runId = runIdOf(job);
  const groups: string[][] = [];
  for (let i = 0; i < partners.length; i += size) groups.push(partners.slice(i, i + size));
  const chunk = 200;
  for (let i = 0; i < groups.length; i += chunk) {
    await enqueueRecalcGroups(ctx.queues, runId, groups.slice(i, i + chunk));
    await job.updateProgress(Math.round((Math.min(i + chunk, groups.length) / groups.length) * 100));
  }
  return { partners: partners.length, groups: groups.length };
}

async function recalculateGroup(ctx: AppContext, job: CreditJobRun, data: RecalcGroupJob): Promise<{ partners: number; isolated: string[] }> {
  const { partnerIds, runId } = data;
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
  await enqueueRecalcPartners(ctx.queues, runId, String(job.id), isolated);
  return { partners: stored, isolated };
}
