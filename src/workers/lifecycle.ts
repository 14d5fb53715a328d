import type { AppContext } from '../context.js';
import type { Em } from '../db/orm.js';
import { endDueAccess, expireDueRequests, noticeEndingAccess, remindDueRequests, type SweepStep } from '../db/lifecycle-store.js';
import { enqueueMailAfterCommit } from '../jobs/enqueue.js';
import { insertEvents, pruneWebhookEvents } from '../db/webhook-store.js';
import { accessEvent } from '../webhooks/events.js';
import { payloadOf } from './failures.js';

/** Pairs one step changes per transaction; a step repeats while it finds a full batch, up to {@link MAX_ROUNDS}. */
export const SWEEP_BATCH = 500;
const MAX_ROUNDS = 20;
/** Webhook events one prune statement deletes (with their deliveries); it repeats while it finds a full batch, up to {@link MAX_ROUNDS}. */
export const PRUNE_BATCH = 5000;

/** What one sweep did, per step (pairs changed; `pruned`: webhook events deleted by retention). */
export interface SweepReport { expired: number; reminded: number; ended: number; ending: number; emails: number; pruned: number }

/**
 * The `lifecycle-sweep` job (its job scheduler runs it every LIFECYCLE_SWEEP_MS). Four set-based
 * steps, each in transactions of up to SWEEP_BATCH pairs: (1) pending requests past their expiry →
 * `expired`, the partner told; (2) reminders to clients GRANT_REMINDER_DAYS before expiry;
 * (3) time-bound accesses past `accessUntil` → `expired`, the partner told; (4) the partner told
 * ACCESS_END_REMINDER_DAYS before a time-bound access ends. Then (5) webhook retention: finished
 * webhook events older than WEBHOOK_RETENTION_DAYS are deleted with their deliveries ({@link pruneWebhookHistory}).
 *
 * Exactly once: each state change or "notice sent" mark commits with its outbox row (unique by
 * notification key), guarded by the state it changes, so a crash before the commit redoes it and
 * one after finds nothing left; the mail jobs go after the commit (the reconciler sends rows whose
 * job was lost). Postgres is the truth: a Redis flush loses only the scheduler, which start-up and
 * the reconciler put back. Idempotency key: the pairs' states and their arrays of notices sent.
 */
export async function processLifecycleSweep(ctx: AppContext, data: unknown): Promise<SweepReport> {
  payloadOf('lifecycleSweep', data);
  const c = ctx.config;
  const steps: [keyof Omit<SweepReport, 'emails' | 'pruned'>, (tx: Em) => Promise<SweepStep>][] = [
    ['expired', (tx) => expireDueRequests(tx, SWEEP_BATCH)],
    ['reminded', (tx) => remindDueRequests(tx, c.grantReminderDays, SWEEP_BATCH)],
    ['ended', (tx) => endDueAccess(tx, SWEEP_BATCH)],
    ['ending', (tx) => noticeEndingAccess(tx, c.accessEndReminderDays, SWEEP_BATCH)],
  ];
  const report: SweepReport = { expired: 0, reminded: 0, ended: 0, ending: 0, emails: 0, pruned: 0 };
  for (const [name, step] of steps) {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const r = await ctx.orm.em.fork().transactional(async (tx) => {
        const done = await step(tx);
        await insertEvents(tx, done.expired.map((pair) => accessEvent('access.expired', pair, null)));
        return done;
      });
      report[name] += r.changed;
      report.emails += r.outboxIds.length;
      await enqueueMailAfterCommit(ctx, r.outboxIds);
      if (r.changed < SWEEP_BATCH) break;
    }
  }
  report.pruned = await pruneWebhookHistory(ctx);
  if (report.expired + report.reminded + report.ended + report.ending + report.pruned > 0) ctx.logger.info({ sweep: report }, 'lifecycle sweep');
  return report;
}

/**
 * Webhook retention, the sweep's last step: deletes finished webhook events (every delivery
 * delivered, given up or dropped, none touched for WEBHOOK_RETENTION_DAYS) with their deliveries,
 * PRUNE_BATCH events per statement (each its own short transaction), repeated while a batch comes
 * back full, at most MAX_ROUNDS times; a larger backlog goes on at the next sweep. An event with a
 * pending delivery is never deleted. Returns the events deleted.
 *
 * Why here and not in the reconciler or on a timer of its own: the reconciler runs in every worker
 * process at once (every RECONCILE_INTERVAL_MS) to rebuild Redis from Postgres, so each process
 * would run the same deletes against the same rows; the lifecycle sweep is one job at a time for
 * the whole deployment, is already the periodic time-based housekeeping over Postgres, is retried
 * when it fails, and its scheduler is put back by the reconciler when Redis loses it. Last, so a
 * failing prune (the job fails and is retried) never holds back expiries and notices.
 */
export async function pruneWebhookHistory(ctx: Pick<AppContext, 'config' | 'orm' | 'metrics'>): Promise<number> {
  let pruned = 0;
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const r = await pruneWebhookEvents(ctx.orm.em.fork(), ctx.config.webhookRetentionDays, PRUNE_BATCH);
    pruned += r.events;
    ctx.metrics.webhookEventsPruned.inc(r.events);
    if (r.events < PRUNE_BATCH) break;
  }
  return pruned;
}
