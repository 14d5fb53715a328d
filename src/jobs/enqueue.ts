import type { Logger } from 'pino';
import type { Queues } from './queues.js';
import { jobContracts, LIFECYCLE_SCHEDULER_ID, RECALC_SCHEDULER_ID, type PairItemJob, type PairRangeJob } from './contracts.js';

/**
 * The one door into the queues: every job of the service is added here, with the id and options
 * of its contract (contracts.ts). Each function throws if Redis refuses the jobs, unless it says otherwise.
 */

/** One `commands` job per accepted command, named by its type; `seq` is the acceptance's (its job id, see jobIds.command). */
export async function enqueueCommands(queues: Pick<Queues, 'commands'>, commands: readonly { id: string; type: string; seq: string }[]): Promise<void> {
  if (!commands.length) return;
  const c = jobContracts.command;
  await queues.commands.addBulk(commands.map((cmd) => {
    const data = { commandId: cmd.id };
    return { name: cmd.type, data, opts: { ...c.options, jobId: c.jobId(data, cmd.seq) } };
  }));
}

/** One `pairs` job per range of a pair command (named by the command's type). */
export async function enqueuePairRanges(queues: Pick<Queues, 'pairs'>, type: string, ranges: readonly PairRangeJob[]): Promise<void> {
  if (!ranges.length) return;
  const c = jobContracts.pairRange;
  await queues.pairs.addBulk(ranges.map(({ commandId, from, to }) => {
    const data = { commandId, from, to };
    return { name: type, data, opts: { ...c.options, jobId: c.jobId(data) } };
  }));
}

/** One `pairs` job per pair: each is applied, and fails, on its own. */
export async function enqueuePairs(queues: Pick<Queues, 'pairs'>, type: string, pairs: readonly PairItemJob[]): Promise<void> {
  if (!pairs.length) return;
  const c = jobContracts.pair;
  await queues.pairs.addBulk(pairs.map(({ commandId, idx }) => {
    const data = { commandId, idx };
    return { name: type, data, opts: { ...c.options, jobId: c.jobId(data) } };
  }));
}

/** One `mail` job per outbox row (after `delayMs`, if given). */
export async function enqueueMail(queues: Pick<Queues, 'mail'>, outboxIds: readonly string[], delayMs = 0): Promise<void> {
  if (!outboxIds.length) return;
  const c = jobContracts.mail;
  await queues.mail.addBulk(outboxIds.map((outboxId) => {
    const data = { outboxId };
    return { name: c.name, data, opts: { ...c.options, jobId: c.jobId(data), ...(delayMs > 0 ? { delay: delayMs } : {}) } };
  }));
}

/**
 * After a commit: one mail job per outbox row, best effort. If Redis refuses, the rows stay
 * pending and the reconciler enqueues them; this only logs.
 */
export async function enqueueMailAfterCommit(ctx: { queues: Pick<Queues, 'mail'>; logger: Logger }, outboxIds: readonly string[], delayMs = 0): Promise<void> {
  try {
    await enqueueMail(ctx.queues, outboxIds, delayMs);
  } catch (err) {
    ctx.logger.warn({ err, outboxIds }, 'mail jobs not enqueued; the reconciler will');
  }
}

/**
 * One `recalculate-partners` job per group of a run, as children of the run's job when `parent`
 * is given (a flow: the run waits for them). A group that fails for good is recorded on the run
 * and does not hold it (`ignoreDependencyOnFailure`). Adding a group again changes nothing.
 */
export async function enqueueRecalcGroups(queues: Pick<Queues, 'credit'>, runId: string, groups: readonly string[][], parent?: { id: string; queue: string }): Promise<void> {
  if (!groups.length) return;
  const c = jobContracts.recalculatePartners;
  await queues.credit.addBulk(groups.map((partnerIds) => {
    const data = { partnerIds, runId };
    return { name: c.name, data, opts: { ...c.options, jobId: c.jobId(data), ...(parent ? { parent, ignoreDependencyOnFailure: true } : {}) } };
  }));
}

/** One `recalculate-partner` job per partner of a run, each named after the group job that handed it over. */
export async function enqueueRecalcPartners(queues: Pick<Queues, 'credit'>, runId: string, isolatedFrom: string, partnerIds: readonly string[]): Promise<void> {
  if (!partnerIds.length) return;
  const c = jobContracts.recalculatePartner;
  await queues.credit.addBulk(partnerIds.map((partnerId) => {
    const data = { partnerId, isolatedFrom };
    return { name: c.name, data, opts: { ...c.options, jobId: c.jobId(data, runId) } };
  }));
}

/** Upserts the daily recalculation job scheduler (the one place that does): a `recalculate-all` job at each tick. */
export async function upsertRecalcScheduler(ctx: { queues: Pick<Queues, 'credit'>; config: { recalcCron: string; recalcTz: string } }): Promise<void> {
  const c = jobContracts.recalculateAll;
  await ctx.queues.credit.upsertJobScheduler(RECALC_SCHEDULER_ID, { pattern: ctx.config.recalcCron, tz: ctx.config.recalcTz }, { name: c.name, data: {} });
}

/**
 * Upserts the lifecycle sweep's job scheduler (the one place that does; also called by the
 * reconciler when Redis lost it): a `lifecycle-sweep` job every LIFECYCLE_SWEEP_MS.
 */
export async function upsertLifecycleScheduler(ctx: { queues: Pick<Queues, 'lifecycle'>; config: { lifecycleSweepMs: number } }): Promise<void> {
  const c = jobContracts.lifecycleSweep;
  await ctx.queues.lifecycle.upsertJobScheduler(LIFECYCLE_SCHEDULER_ID, { every: ctx.config.lifecycleSweepMs }, { name: c.name, data: {}, opts: c.options });
}

/** Upserts every job scheduler of the service (the scheduler role, at start). */
export async function upsertSchedulers(ctx: { queues: Pick<Queues, 'credit' | 'lifecycle'>; config: { recalcCron: string; recalcTz: string; lifecycleSweepMs: number } }): Promise<void> {
  await upsertRecalcScheduler(ctx);
  await upsertLifecycleScheduler(ctx);
}

/**
 * The delivery job of each webhook subscription (one per subscription: adding it while it exists
 * adds nothing, and the job sends whatever is pending when it runs). With `promote`, a job that
 * waits for a retry runs now (a redelivery was asked for).
 */
export async function enqueueWebhookDeliveries(queues: Pick<Queues, 'webhooks'>, webhookIds: readonly string[], opts: { promote?: boolean } = {}): Promise<void> {
  const ids = [...new Set(webhookIds)];
  if (!ids.length) return;
  const c = jobContracts.webhookDeliver;
  await queues.webhooks.addBulk(ids.map((webhookId) => {
    const data = { webhookId };
    return { name: c.name, data, opts: { ...c.options, jobId: c.jobId(data) } };
  }));
  if (!opts.promote) return;
  for (const webhookId of ids) {
    const job = await queues.webhooks.getJob(c.jobId({ webhookId }));
    if (job && (await job.isDelayed())) await job.promote().catch(() => undefined); // it started meanwhile: it will find the delivery
  }
}
