import type { Queue } from 'bullmq';
import type { RedisClient } from '../jobs/queues.js';
import type { AppContext } from '../context.js';
import { pairTypes, type CommandType } from '../commands/schemas.js';
import { openItemsOf, unfinishedCommands } from '../db/command-progress.js';
import { unsentRows } from '../db/outbox-store.js';
import { webhooksWithDueDeliveries } from '../db/webhook-store.js';
import { jobIds, LIFECYCLE_SCHEDULER_ID } from '../jobs/contracts.js';
import { enqueueCommands, enqueueMail, enqueuePairRanges, enqueuePairs, enqueueWebhookDeliveries, upsertLifecycleScheduler } from '../jobs/enqueue.js';
import { failPairFinally, finalizeIfDone, rangeOf } from './pairs.js';

type JobPresence = { state: 'missing' } | { state: 'live' } | { state: 'finished'; failedReason: string | null };

/** Whether each job exists, and if so whether it has finished (one pipelined round trip). */
async function jobPresence(redis: RedisClient, queue: Queue, ids: string[]): Promise<Map<string, JobPresence>> {
  const unique = [...new Set(ids)];
  if (!unique.length) return new Map();
  const pipeline = redis.pipeline();
  for (const id of unique) pipeline.hmget(queue.toKey(id), 'timestamp', 'finishedOn', 'failedReason');
  const res = (await pipeline.exec()) ?? [];
  return new Map(unique.map((id, i) => {
    const [timestamp, finishedOn, failedReason] = (res[i]?.[1] ?? []) as (string | null)[];
    const p: JobPresence = !timestamp ? { state: 'missing' } : finishedOn ? { state: 'finished', failedReason: failedReason ?? null } : { state: 'live' };
    return [id, p];
  }));
}

/** Which of these job ids have no job in Redis (one pipelined round trip). */
async function missingJobs(redis: RedisClient, queue: Queue, ids: string[]): Promise<Set<string>> {
  if (!ids.length) return new Set();
  const pipeline = redis.pipeline();
  for (const id of ids) pipeline.exists(queue.toKey(id));
  const res = (await pipeline.exec()) ?? [];
  return new Set(ids.filter((_, i) => res[i]?.[1] === 0));
}

/** Items grouped by their command's type (the name of their jobs), in order. */
function byType<T extends { type: string }>(items: readonly T[]): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const i of items) {
    const same = m.get(i.type);
    if (same) same.push(i);
    else m.set(i.type, [i]);
  }
  return m;
}

export interface ReconcileReport { commands: number; pairs: number; mail: number; schedulers: number; webhooks: number }

/**
 * Re-enqueues every accepted, unfinished command (and open pair, and unsent email) whose job Redis
 * no longer has: after a Redis restart, flush or failover, Postgres rebuilds the queues. Safe to run
 * from every worker process at once: job ids are deterministic and handlers idempotent.
 */
export async function reconcileOnce(ctx: Pick<AppContext, 'config' | 'orm' | 'queues' | 'logger'>, limit = 2000): Promise<ReconcileReport> {
  const em = ctx.orm.em.fork();
  const graceSec = ctx.config.reconcileGraceMs / 1000;
  const commands = await unfinishedCommands(em, graceSec, limit);
  const isPair = (c: { type: string }) => pairTypes.has(c.type as CommandType);
  const whole = commands.filter((c) => !(isPair(c) && c.items_total > 0));
  const fannedOut = commands.filter((c) => isPair(c) && c.items_total > 0).map((c) => c.id);
  const items = fannedOut.length ? await openItemsOf(em, fannedOut, limit * 10) : [];
  const outbox = await unsentRows(em, graceSec, limit);
  // Fanned-out commands whose items are all finished but that were never settled (a crash in between).
  const openCommands = new Set(items.map((i) => i.command_id));
  for (const id of fannedOut) if (!openCommands.has(id)) await finalizeIfDone(ctx, id);
  const q = ctx.queues;
  // Job ids carry the acceptance (seq): a job left by an acceptance that was taken back never counts.
  const missC = await missingJobs(q.connection, q.commands, whole.map((c) => jobIds.command(c.id, c.seq)));
  // An open pair is covered while its own job or its range job is waiting, active or delayed. A
  // pair whose own job failed without settling it is failed now; one whose range job finished
  // without settling it (a failed hand-over, an old worker) gets its own job; a pair with neither
  // job (Redis lost them) gets its range job back.
  // Every fan-out stores its range size; a row without one (none is written so now) is one range,
  // the same in every process whatever its settings.
  const ranged = items.map((i) => ({ ...i, ...rangeOf(i.idx, i.items_total, i.range_size || i.items_total) }));
  const rangeId = (i: (typeof ranged)[number]) => jobIds.pairRange(i.command_id, i.from, i.to);
  const ownId = (i: (typeof ranged)[number]) => jobIds.pair(i.command_id, i.idx);
  const ranges = await jobPresence(q.connection, q.pairs, ranged.map(rangeId));
  const owns = await jobPresence(q.connection, q.pairs, ranged.map(ownId));
  const addAlone: typeof ranged = [];
  const addR = new Map<string, (typeof ranged)[number]>();
  for (const i of ranged) {
    const own = owns.get(ownId(i))!;
    const range = ranges.get(rangeId(i))!;
    if (own.state === 'live' || (own.state === 'missing' && range.state === 'live')) continue;
    if (own.state === 'finished') {
      await failPairFinally(ctx, { commandId: i.command_id, idx: i.idx }, own.failedReason ?? 'its job finished without settling the pair');
    } else if (range.state === 'finished') {
      addAlone.push(i);
    } else {
      addR.set(rangeId(i), i);
    }
  }
  const missM = await missingJobs(q.connection, q.mail, outbox.map((id) => jobIds.mail(id)));
  const addC = whole.filter((c) => missC.has(jobIds.command(c.id, c.seq)));
  const addM = outbox.filter((id) => missM.has(jobIds.mail(id)));
  await enqueueCommands(q, addC);
  for (const [type, ranges] of byType([...addR.values()])) await enqueuePairRanges(q, type, ranges.map((i) => ({ commandId: i.command_id, from: i.from, to: i.to })));
  for (const [type, alone] of byType(addAlone)) await enqueuePairs(q, type, alone.map((i) => ({ commandId: i.command_id, idx: i.idx })));
  await enqueueMail(q, addM);
  // The lifecycle sweep's job scheduler: a Redis flush loses it (what it works on is in Postgres).
  const schedulers = (await q.lifecycle.getJobScheduler(LIFECYCLE_SCHEDULER_ID)) ? 0 : 1;
  if (schedulers) await upsertLifecycleScheduler(ctx);
  // Webhook subscriptions with a delivery due for a while and no delivery job (Redis lost it, or its NOTIFY was missed).
  const dueHooks = await webhooksWithDueDeliveries(em, graceSec, limit);
  const missW = await missingJobs(q.connection, q.webhooks, dueHooks.map((id) => jobIds.webhook(id)));
  const addW = dueHooks.filter((id) => missW.has(jobIds.webhook(id)));
  await enqueueWebhookDeliveries(q, addW);
  const report = { commands: addC.length, pairs: addR.size + addAlone.length, mail: addM.length, schedulers, webhooks: addW.length };
  if (report.commands + report.pairs + report.mail + report.schedulers + report.webhooks > 0) ctx.logger.warn(report, 'reconciler re-enqueued lost jobs');
  return report;
}

/** Runs the reconciler every RECONCILE_INTERVAL_MS until stopped. */
export function startReconciler(ctx: AppContext, onReport?: (r: ReconcileReport) => void): { stop(): Promise<void> } {
  let running: Promise<void> | null = null;
  let stopped = false;
  const tick = () => {
    if (running || stopped) return;
    running = reconcileOnce(ctx)
      .then((r) => onReport?.(r))
      .catch((err) => ctx.logger.warn({ err }, 'reconciler pass failed; next pass retries'))
      .finally(() => { running = null; });
  };
  const timer = setInterval(tick, ctx.config.reconcileIntervalMs);
  timer.unref();
  tick();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
