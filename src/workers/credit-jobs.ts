import { WaitingChildrenError, type Job } from 'bullmq';
import type { AppContext } from '../context.js';
import { recalculateCredit, recalculateCredits } from '../commands/credit.js';
import { partnerIds as allPartnerIds } from '../db/partner-store.js';
import { creditJobKind, type RecalcAllJob, type RecalcGroupJob } from '../jobs/contracts.js';
import { enqueueRecalcGroups, enqueueRecalcPartners } from '../jobs/enqueue.js';
import { isTransientDatabaseError, payloadOf, toUnrecoverable } from './failures.js';

/**
 * Partners per `recalculate-partners` job of a run (one read and one write each). Each read has
 * fixed costs (planning, a pass over `client_account`): on the bench's 1,000 partners the reads
 * cost Postgres 0.58 s of CPU in groups of 50, 0.5 s in groups of 100, 0.44 s in groups of 200
 * (with the cheaper read of loadCreditFacts: 0.45 s in groups of 100, 0.4 s in groups of 200).
 * 200 leaves 5 groups, still enough for reading and computing to overlap (see
 * {@link RECALC_READS_AT_ONCE}), and fewer jobs, reads and write transactions: the bench's
 * recalculation ratio went from 1.43× (mean of 11 runs, groups of 100) to 1.25× (13 runs);
 * groups of 250 measured 1.29× (3 runs).
 */
export const RECALC_GROUP_SIZE = 200;

/**
 * Group reads that run at once in this process. A read is Postgres work (one backend, one core);
 * the rest of a group is this process's work. With every group's read started at once (up to the
 * worker concurrency) they all finished together, Postgres having shared the 2 cores of the bench
 * machine among them while this process waited, and then the computing ran while Postgres waited.
 * Two at a time keep Postgres busy while this process computes the groups already read.
 */
export const RECALC_READS_AT_ONCE = 2;

/** A counting semaphore: at most `size` calls of {@link run} in flight, the others wait in order. */
class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];
  constructor(size: number) { this.free = size; }
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }
}

const groupReads = new Slots(RECALC_READS_AT_ONCE);

const runIdOf = (job: Pick<Job, 'id'>) => String(job.id ?? Date.now()).replace(/[^A-Za-z0-9]/g, '');

type CreditJobRun = Pick<Job, 'id' | 'name' | 'data' | 'updateProgress'> & Partial<Pick<Job, 'queueQualifiedName' | 'updateData' | 'moveToWaitingChildren' | 'getIgnoredChildrenFailures'>>;

/**
 * The `credit` queue, all idempotent (numbers are recomputed from facts, never incremented):
 * - `recalculate-all` (the scheduler's job) is a flow parent: it adds one `recalculate-partners`
 *   child per group of {@link RECALC_GROUP_SIZE} partners, job id per run and group
 *   (jobIds.recalcGroup), and waits for them; each finished group moves its progress
 *   ({@link reportGroupFinished}), and it completes once every group has finished.
 * - `recalculate-partners` reads all its partners' facts in one query and writes all their
 *   snapshots in one statement. A failure is never a silent gap: a partner whose numbers cannot be
 *   computed, or every partner of the group when its read or write fails, is handed to its own
 *   `recalculate-partner` job (job id per partner and run, as before grouping), which has the usual
 *   retries and, if it keeps failing, stays failed in the dashboard under that partner's name.
 *   Only if that hand-over cannot be enqueued does the group job fail (and is retried).
 * - `recalculate-partner` recomputes one partner (also for jobs added before groups existed).
 * A job of another name, or whose payload does not fit its contract, fails at once (VALIDATION_FAILED).
 */
export async function processCreditJob(ctx: AppContext, job: CreditJobRun, token?: string): Promise<unknown> {
  const kind = creditJobKind(job.name);
  if (kind === 'recalculateAll') return recalculateAll(ctx, job, payloadOf(kind, job.data), token);
  if (kind === 'recalculatePartners') return recalculateGroup(ctx, job, payloadOf(kind, job.data));
  if (kind === 'recalculatePartner') {
    const { partnerId } = payloadOf(kind, job.data);
    return recalculateCredit(ctx.orm.em.fork(), partnerId, { now: ctx.now(), renewalAlertDays: ctx.config.renewalAlertDays });
  }
  throw toUnrecoverable({ code: 'VALIDATION_FAILED', message: `unknown credit job name ${JSON.stringify(job.name).slice(0, 100)}` });
}

/**
 * A run, in two steps. First (no `fannedOut` in its data) it adds its groups as its children,
 * records that in its data (a retry does not fan out again) and waits for them (waiting-children:
 * the worker takes it up again once every group has finished). Then it completes with its counts,
 * progress 100. Without a worker token (a direct call) it fans out and returns.
 */
async function recalculateAll(ctx: AppContext, job: CreditJobRun, data: RecalcAllJob, token?: string): Promise<unknown> {
  let fannedOut = data.fannedOut;
  if (!fannedOut) {
    fannedOut = await fanOutRun(ctx, job, data.groupSize);
    if (!token) return fannedOut;
    await job.updateData!({ ...data, fannedOut });
  }
  if (token && fannedOut.groups > 0 && (await job.moveToWaitingChildren!(token))) throw new WaitingChildrenError();
  const failedGroups = fannedOut.groups > 0 ? Object.keys(await job.getIgnoredChildrenFailures!()).length : 0;
  await job.updateProgress(100);
  return { ...fannedOut, failedGroups };
}

/**
 * Adds a run's groups (one `recalculate-partners` job per {@link RECALC_GROUP_SIZE} partners, or
 * `groupSize`) as children of the run's job. Idempotent: group job ids are per run and members.
 */
export async function fanOutRun(ctx: AppContext, job: Pick<Job, 'id'> & Partial<Pick<Job, 'queueQualifiedName'>>, groupSize = RECALC_GROUP_SIZE): Promise<{ partners: number; groups: number }> {
  const partners = await allPartnerIds(ctx.orm.em.fork());
  const runId = runIdOf(job);
  const groups: string[][] = [];
  for (let i = 0; i < partners.length; i += groupSize) groups.push(partners.slice(i, i + groupSize));
  const parent = job.id && job.queueQualifiedName ? { id: job.id, queue: job.queueQualifiedName } : undefined;
  const chunk = 200;
  for (let i = 0; i < groups.length; i += chunk) await enqueueRecalcGroups(ctx.queues, runId, groups.slice(i, i + chunk), parent);
  return { partners: partners.length, groups: groups.length };
}

/**
 * A group of a run finished (completed, or failed after its last attempt): the run's progress
 * becomes the share of its groups that have finished, below 100 while any is open (the run writes
 * 100 itself when it completes). Best effort: progress is for people watching the dashboard.
 */
export async function reportGroupFinished(ctx: Pick<AppContext, 'queues'>, job: Pick<Job, 'name' | 'parent'>): Promise<void> {
  if (creditJobKind(job.name) !== 'recalculatePartners' || !job.parent?.id) return;
  const run = await ctx.queues.credit.getJob(job.parent.id);
  if (!run) return;
  const c = await run.getDependenciesCount({ processed: true, unprocessed: true, ignored: true, failed: true });
  const open = c.unprocessed ?? 0;
  const finished = (c.processed ?? 0) + (c.ignored ?? 0) + (c.failed ?? 0);
  if (open === 0 || finished === 0) return;
  await run.updateProgress(Math.min(99, Math.max(1, Math.floor((finished / (finished + open)) * 100))));
}

async function recalculateGroup(ctx: AppContext, job: CreditJobRun, data: RecalcGroupJob): Promise<{ partners: number; isolated: string[] }> {
  const { partnerIds, runId } = data;
  let isolated: string[];
  let stored = 0;
  try {
    const result = await recalculateCredits(ctx.orm.em.fork(), partnerIds, { now: ctx.now(), renewalAlertDays: ctx.config.renewalAlertDays, readSlot: (read) => groupReads.run(read) });
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
