import { DelayedError, type Job } from 'bullmq';
import type { AppContext } from '../context.js';
import { hasPendingDelivery, nextDelivery, recordAttempt, recordGone } from '../db/webhook-store.js';
import { enqueueWebhookDeliveries } from '../jobs/enqueue.js';
import { parsePayload } from '../jobs/contracts.js';
import { SERVICE_VERSION } from '../metrics.js';
import { eventBody } from '../webhooks/events.js';
import { openWebhookSecret, WebhookSecretError, type WebhookSecretKeys } from '../webhooks/secret-box.js';
import { sendWebhook, type AttemptResult } from '../webhooks/sender.js';
import { payloadOf, toUnrecoverable } from './failures.js';

/** Retries of one delivery are at most this far apart. */
export const RETRY_CAP_MS = 3_600_000;
/** A delivery is retried for this long after it became pending (then it is `failed`: given up). */
export const RETRY_FOR_MS = 24 * 3_600_000;
/** Deliveries one run of a job sends before it makes way for the other subscriptions' jobs. */
const MAX_PER_RUN = 100;

/**
 * The wait before the next attempt of a delivery that has failed `failedAttempts` times:
 * `base · 2^(failedAttempts−1)`, at most {@link RETRY_CAP_MS}. With the default base of 5 s:
 * 5 s, 10 s, 20 s, … 40 min 40 s, then hourly, for 24 hours (about 30 attempts).
 */
export function retryDelayMs(failedAttempts: number, baseMs: number): number {
  return Math.min(RETRY_CAP_MS, baseMs * 2 ** Math.min(30, Math.max(0, failedAttempts - 1)));
}

/** What one run of a delivery job did. */
export interface WebhookRun { sent: number; waitMs?: number; ended?: boolean }

type DeliveryJob = Pick<Job, 'data' | 'moveToDelayed'>;

const isSuccess = (r: AttemptResult) => r.status !== null && r.status >= 200 && r.status < 300;

/**
 * A delivery's signing secret, opened from its stored form. One this process cannot open (a wrong
 * or missing key) fails the job at once, `WEBHOOK_SECRET_UNREADABLE: …`, with nothing sent — never a
 * signature made with a wrong key — and no attempt recorded: the delivery stays pending (its
 * partner's retry window is not spent on our configuration), and the reconciler adds the job again
 * until the keys are right.
 */
function signingSecret(keys: WebhookSecretKeys, webhookId: string, stored: string): string {
  try {
    return openWebhookSecret(keys, webhookId, stored);
  } catch (err) {
    throw err instanceof WebhookSecretError ? toUnrecoverable(err) : err;
  }
}

/**
 * The `deliver` job of one subscription (`{webhookId}`): sends its pending deliveries one at a
 * time, oldest event first, each signed with the subscription's secret and its event id as
 * `webhook-id`. A 2xx delivers it and the next one goes; a 410 ends the subscription (its pending
 * deliveries are dropped); any other answer, or none within 5 s, is retried after
 * {@link retryDelayMs} — and the job waits (delayed) until then, so later deliveries stay behind
 * it — until it has been pending for {@link RETRY_FOR_MS}, when it is given up (`failed`) and the
 * next one goes. Idempotency key: the delivery row; a crash between a send and its record sends it
 * again with the same `webhook-id` (at least once).
 */
export async function processWebhookJob(ctx: AppContext, job: DeliveryJob, token?: string): Promise<WebhookRun> {
  const { webhookId } = payloadOf('webhookDeliver', job.data);
  const em = ctx.orm.em.fork();
  const run: WebhookRun = { sent: 0 };
  const waitFor = async (ms: number): Promise<WebhookRun> => {
    if (!token) return { ...run, waitMs: ms };
    await job.moveToDelayed(Date.now() + ms, token);
    throw new DelayedError();
  };
  for (;;) {
    const d = await nextDelivery(em, webhookId);
    if (!d) return run;
    if (d.dueInMs > 0) return waitFor(d.dueInMs);
    if (run.sent >= MAX_PER_RUN) return waitFor(0);
    const result = await sendWebhook({
      url: d.url, secret: signingSecret(ctx.config.webhookSecretKeys, webhookId, d.storedSecret), eventId: d.eventId,
      body: eventBody({ id: d.eventId, type: d.type, partnerId: d.partnerId, createdAt: d.createdAt, data: d.data }),
      allowPrivate: ctx.config.webhookAllowPrivate,
      userAgent: `partner-access-pipeline/${SERVICE_VERSION} (webhooks)`,
    });
    run.sent += 1;
    if (result.status === 410) {
      await em.transactional((tx) => recordGone(tx, { deliveryId: d.deliveryId, webhookId }));
      ctx.metrics.webhookDeliveries.inc({ outcome: 'gone' });
      ctx.logger.info({ webhookId, eventId: d.eventId }, 'webhook receiver answered 410 Gone: subscription ended');
      return { ...run, ended: true };
    }
    const ok = isSuccess(result);
    const delay = retryDelayMs(d.attempts + 1, ctx.config.webhookRetryBaseMs);
    const state = await recordAttempt(em, { deliveryId: d.deliveryId, status: result.status, error: result.error, ok, retryDelayMs: delay, retryForMs: RETRY_FOR_MS });
    const outcome = ok ? 'delivered' : state === 'failed' ? 'failed' : 'retry';
    ctx.metrics.webhookDeliveries.inc({ outcome });
    if (!ok) ctx.logger.info({ webhookId, eventId: d.eventId, attempt: d.attempts + 1, status: result.status, reason: result.error, outcome }, 'webhook delivery attempt failed');
    if (state === 'pending') return waitFor(delay);
  }
}

/**
 * After a delivery job finished (and was removed): if an event was committed while it was ending
 * (its add found the job still there and added nothing), add the job again now.
 */
export async function recheckWebhook(ctx: Pick<AppContext, 'orm' | 'queues'>, data: unknown): Promise<void> {
  const d = parsePayload('webhookDeliver', data);
  if (d.ok && (await hasPendingDelivery(ctx.orm.em.fork(), d.data.webhookId))) await enqueueWebhookDeliveries(ctx.queues, [d.data.webhookId]);
}
