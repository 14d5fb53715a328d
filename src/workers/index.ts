import { Worker, type Job, type Processor } from 'bullmq';
import { Cluster } from 'ioredis';
import type { AppContext } from '../context.js';
import { createTransport } from '../mail/transport.js';
import { QUEUES, workerConnection, type QueueName } from '../jobs/queues.js';
import { parsePayload } from '../jobs/contracts.js';
import { markCommandFailed, processCommandJob } from './commands.js';
import { PartnerTurns, wakeNextAfter } from './command-order.js';
import { publishSettled } from '../jobs/command-events.js';
import { processCreditJob, reportGroupFinished } from './credit-jobs.js';
import { isUnrecoverable } from './failures.js';
import { InlineMail } from './inline-mail.js';
import { processLifecycleSweep } from './lifecycle.js';
import { failMailFinally, outboxLoader, processMailJob, sentMarker } from './mail.js';
import { failPairFinally, pairBatcher, processPairJob, splitPairRange } from './pairs.js';
import { startReconciler, type ReconcileReport } from './reconciler.js';
import { processWebhookJob, recheckWebhook } from './webhooks.js';
import { listenForDeliveries } from '../db/webhook-store.js';
import { enqueueWebhookDeliveries } from '../jobs/enqueue.js';

export interface WorkerHooks {
  /** Called after every finished attempt (metrics); `final` is false for a failed attempt that will be retried. */
  onJob?: (queue: QueueName, job: Job, outcome: 'completed' | 'failed', final: boolean, err?: Error) => void;
  onReconcile?: (r: ReconcileReport) => void;
  /** Emails a pair batch sent itself right after its commit (those sent by mail jobs are counted through onJob). */
  onEmailsSent?: (n: number) => void;
}

export interface RunningWorkers {
  workers: Worker[];
  /** Consuming: every worker runs and none is closing. */
  isConsuming(): boolean;
  close(timeoutMs: number): Promise<void>;
}

/**
 * SMTP connections (and sends at once) for the grant emails that run and range jobs send themselves
 * right after their commit. 16: with 8 the end-to-end benchmark's worker waited on SMTP round trips
 * (0.55–0.59× the bare worker; 0.69× with 16, same harness).
 */
export const INLINE_MAIL_CONNECTIONS = 16;

const isFinalFailure = (job: Job, err: Error) => isUnrecoverable(err) || job.attemptsMade >= (job.opts.attempts ?? 1);

async function recordExhausted(ctx: AppContext, queue: QueueName, job: Job, err: Error): Promise<void> {
  if (queue === QUEUES.commands) {
    const d = parsePayload('command', job.data);
    if (!d.ok) return;
    await markCommandFailed(ctx.orm.em.fork(), d.data.commandId, { code: 'INTERNAL_ERROR', message: err.message });
    await wakeNextAfter(ctx, d.data.commandId);
    await publishSettled(ctx.queues, d.data.commandId);
  } else if (queue === QUEUES.pairs) {
    if ((job.data as { from?: unknown }).from !== undefined) await splitPairRange(ctx, job.name, job.data);
    else await failPairFinally(ctx, job.data, err.message);
  } else if (queue === QUEUES.mail) {
    await failMailFinally(ctx, job.data, err.message);
  }
}

/** Starts one BullMQ worker per queue, plus the reconciler, against the shared Redis and Postgres. */
export function startWorkers(ctx: AppContext, hooks: WorkerHooks = {}): RunningWorkers {
  const transport = createTransport(ctx.config.smtpUrl);
  // Grant emails sent by the pair jobs get a pool of their own: a send that starts has a connection.
  const inlineTransport = createTransport(ctx.config.smtpUrl, { maxConnections: INLINE_MAIL_CONNECTIONS });
  const inlineMail = new InlineMail(ctx, inlineTransport, INLINE_MAIL_CONNECTIONS, hooks.onEmailsSent);
  const pairs = pairBatcher(ctx, ctx.config.pairBatchSize, inlineMail);
  // One command job of a partner at a time in this process; the runs' settled commands, remembered.
  const turns = new PartnerTurns();
  const outboxRows = outboxLoader(ctx, ctx.config.pairBatchSize);
  const sentRows = sentMarker(ctx, ctx.config.pairBatchSize);
  const processors: Record<QueueName, Processor> = {
    [QUEUES.commands]: (job, token) => processCommandJob(ctx, job, token, { mail: inlineMail, turns }),
    [QUEUES.pairs]: (job) => processPairJob(ctx, job.data, { type: job.name, batcher: pairs, mail: inlineMail, retaken: job.attemptsStarted > 1 || job.stalledCounter > 0, firstAttempt: job.attemptsMade === 0 }),
    [QUEUES.mail]: (job) => processMailJob(ctx, transport, job.data, outboxRows, sentRows, job.attemptsMade),
    [QUEUES.credit]: (job, token) => processCreditJob(ctx, job, token),
    [QUEUES.lifecycle]: (job) => processLifecycleSweep(ctx, job.data),
    [QUEUES.webhooks]: (job, token) => processWebhookJob(ctx, job, token),
  };
  // On a Redis Cluster each worker gets a Cluster client, which BullMQ does not close: we do.
  const clusterClients: Cluster[] = [];
  const workers = (Object.entries(processors) as [QueueName, Processor][]).map(([name, processor]) => {
    const connection = workerConnection({ url: ctx.config.redisUrl, cluster: ctx.queues.cluster });
    if (connection instanceof Cluster) clusterClients.push(connection);
    const w = new Worker(name, processor, {
      connection,
      prefix: ctx.queues.prefixOf(name),
      concurrency: name === QUEUES.pairs || name === QUEUES.mail ? Math.max(ctx.config.workerConcurrency, ctx.config.pairBatchSize) : ctx.config.workerConcurrency,
      lockDuration: ctx.config.jobLockMs,
      stalledInterval: ctx.config.jobLockMs,
      maxStalledCount: 3,
    });
    w.on('error', (err) => ctx.logger.warn({ err, queue: name }, 'worker connection error'));
    w.on('completed', (job) => hooks.onJob?.(name, job, 'completed', true));
    // A delivery job that ended while an event was being committed: add it again (see recheckWebhook).
    if (name === QUEUES.webhooks) w.on('completed', (job) => void recheckWebhook(ctx, job.data).catch((err: unknown) => ctx.logger.debug({ err }, 'webhook recheck failed; the reconciler will')));
    if (name === QUEUES.credit) {
      const report = (job: Job) => reportGroupFinished(ctx, job).catch((err: unknown) => ctx.logger.debug({ err }, 'run progress not updated'));
      w.on('completed', (job) => void report(job));
      w.on('failed', (job, err) => { if (job && isFinalFailure(job, err)) void report(job); });
    }
    w.on('failed', (job, err) => {
      if (!job) return;
      const final = isFinalFailure(job, err);
      hooks.onJob?.(name, job, 'failed', final, err);
      ctx.logger[final ? 'warn' : 'info']({ queue: name, jobId: job.id, attempt: job.attemptsMade, reason: err.message }, final ? 'job failed' : 'job attempt failed; will retry');
      // A transient failure that used up its attempts: the log must say failed too (and the partner's next command may go).
      if (final && !isUnrecoverable(err)) {
        recordExhausted(ctx, name, job, err).catch((e) => ctx.logger.error({ err: e }, 'could not record a failed job'));
      }
    });
    return w;
  });
  const reconciler = startReconciler(ctx, hooks.onReconcile);
  // A committed webhook event names its subscriptions (NOTIFY): their delivery jobs are added at once.
  const deliveries = listenForDeliveries(ctx.config.databaseUrl,
    (webhookId) => void enqueueWebhookDeliveries(ctx.queues, [webhookId]).catch((err: unknown) => ctx.logger.debug({ err, webhookId }, 'webhook job not added; the reconciler will')),
    (err) => ctx.logger.warn({ err }, 'webhook LISTEN connection lost; reconnecting (the reconciler covers the gap)'));
  let closing = false;
  // "Consuming", not only connected: a worker whose queue has work must have finished a job lately.
  const lastProgress = new Map<string, number>(workers.map((w) => [w.name, Date.now()]));
  const busy = new Map<string, boolean>();
  for (const w of workers) {
    const tick = () => lastProgress.set(w.name, Date.now());
    w.on('completed', tick);
    w.on('failed', tick);
    w.on('drained', () => { tick(); busy.set(w.name, false); });
    w.on('active', () => busy.set(w.name, true));
  }
  const stuckAfterMs = Math.max(60_000, ctx.config.jobLockMs * 2);
  return {
    workers,
    isConsuming: () => !closing && workers.every((w) => w.isRunning() && !w.isPaused() && !(busy.get(w.name) && Date.now() - (lastProgress.get(w.name) ?? 0) > stuckAfterMs)),
    async close(timeoutMs) {
      closing = true;
      await reconciler.stop();
      await deliveries.close();
      // Drain with a bound: after timeoutMs, force-close (unfinished jobs are retaken by another worker after the lock expires).
      const graceful = Promise.all(workers.map((w) => w.close()));
      const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), timeoutMs).unref());
      if ((await Promise.race([graceful.then(() => 'ok' as const), timer])) === 'timeout') {
        ctx.logger.warn({ timeoutMs }, 'workers did not drain in time; forcing close');
        await Promise.all(workers.map((w) => w.close(true)));
      }
      transport.close();
      inlineTransport.close();
      for (const c of clusterClients) c.disconnect();
    },
  };
}
