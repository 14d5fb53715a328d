import { Counter, Histogram, Registry, Gauge, collectDefaultMetrics } from 'prom-client';
import { UnrecoverableError, type Job } from 'bullmq';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Queues, QueueName } from './jobs/queues.js';
import { failureCode, TRANSIENT_EXHAUSTED } from './lib/failure-code.js';

/** The process's Prometheus metrics (contract §7). One instance per process, passed down from the composition root. */
export class Metrics {
  readonly registry = new Registry();
  readonly accepted = new Counter({ name: 'pap_commands_accepted_total', help: 'Commands accepted (2xx, new) by type', labelNames: ['type'], registers: [this.registry] });
  readonly finished = new Counter({ name: 'pap_jobs_finished_total', help: 'Jobs finished by queue, job name and outcome (completed, or failed after their last attempt)', labelNames: ['queue', 'type', 'outcome'], registers: [this.registry] });
  readonly failures = new Counter({ name: 'pap_jobs_failed_total', help: 'Failed jobs by queue, job name and error code', labelNames: ['queue', 'type', 'code'], registers: [this.registry] });
  readonly retries = new Counter({ name: 'pap_job_attempts_failed_total', help: 'Failed attempts that will be retried', labelNames: ['queue', 'type'], registers: [this.registry] });
  readonly duration = new Histogram({ name: 'pap_job_duration_seconds', help: 'Processing time of one job attempt', labelNames: ['queue', 'type'], buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [this.registry] });
  readonly latency = new Histogram({ name: 'pap_accept_to_applied_seconds', help: 'From enqueue (acceptance) to the job finishing', labelNames: ['queue', 'type'], buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300], registers: [this.registry] });
  readonly emails = new Counter({ name: 'pap_emails_total', help: 'Emails by outcome (sent, failed)', labelNames: ['outcome'], registers: [this.registry] });
  readonly webhookDeliveries = new Counter({ name: 'pap_webhook_deliveries_total', help: 'Webhook delivery attempts by outcome (delivered, retry: failed and tried again later, failed: given up after 24 h, gone: the receiver answered 410)', labelNames: ['outcome'], registers: [this.registry] });
  readonly webhookEventsPruned = new Counter({ name: 'pap_webhook_events_pruned_total', help: 'Finished webhook events deleted (with their deliveries) by the lifecycle sweep after WEBHOOK_RETENTION_DAYS', registers: [this.registry] });
  readonly reenqueued = new Counter({ name: 'pap_reconciler_reenqueued_total', help: 'Jobs the reconciler re-enqueued because Redis had lost them', labelNames: ['kind'], registers: [this.registry] });
  readonly httpRequests = new Counter({ name: 'pap_http_requests_total', help: 'HTTP requests by route pattern (never the raw URL), method and status', labelNames: ['route', 'method', 'status'], registers: [this.registry] });
  readonly httpDuration = new Histogram({ name: 'pap_http_request_duration_seconds', help: 'HTTP request duration, from receipt to the response sent, by route pattern and method', labelNames: ['route', 'method'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [this.registry] });
  readonly buildInfo = new Gauge({ name: 'pap_build_info', help: 'Always 1; the version of the running service (package.json)', labelNames: ['version'], registers: [this.registry] });

  /**
   * `queues`: the queue gauges are collected from them at scrape time. `requests`: the access
   * requests' gauges (pairs by state, the oldest pending request), read from Postgres at scrape time.
   */
  constructor(queues?: Queues, requests?: () => Promise<RequestGauges>) {
    collectDefaultMetrics({ register: this.registry, prefix: 'pap_process_' });
    // Gauges that prom-client names *_total, against Prometheus' naming rules (promtool check metrics
    // refuses them); their per-type siblings (…_active_handles{type}, …) sum to the same numbers.
    for (const n of ['handles', 'requests', 'resources']) this.registry.removeSingleMetric(`pap_process_nodejs_active_${n}_total`);
    this.buildInfo.set({ version: SERVICE_VERSION }, 1);
    if (requests) {
      // One query at scrape time for both gauges (contract §7); a failing database leaves them unset rather than stale.
      let pending: Promise<RequestGauges | null> | null = null;
      const read = () => (pending ??= requests().catch(() => null).finally(() => { pending = null; }));
      const byState: Gauge = new Gauge({
        name: 'pap_access_requests',
        help: 'Access pairs by state (pending, active, declined, expired, revoked)',
        labelNames: ['state'],
        registers: [this.registry],
        async collect(): Promise<void> {
          const g = await read();
          if (!g) return byState.reset();
          for (const [state, n] of Object.entries(g.states)) byState.set({ state }, n);
        },
      });
      const oldestPending: Gauge = new Gauge({
        name: 'pap_access_request_oldest_pending_seconds',
        help: 'Age of the oldest pending access request (since its email, or since it became pending), 0 when none waits',
        registers: [this.registry],
        async collect(): Promise<void> {
          const g = await read();
          if (!g) return oldestPending.reset();
          oldestPending.set(g.oldestPendingSeconds);
        },
      });
    }
    if (queues) {
      // One job per queue (a bounded range: LRANGE of one element, one HGETALL), at scrape time.
      const oldest = new Gauge({
        name: 'pap_queue_oldest_waiting_seconds',
        help: 'Age of the oldest job waiting in each queue, 0 when none waits (waiting since it was added, its delay ended or its last attempt started)',
        labelNames: ['queue'],
        registers: [this.registry],
        async collect() {
          const now = Date.now();
          await Promise.all(queues.all().map(async (q) => {
            const jobs = await q.getWaiting(0, 0).catch(() => null);
            if (!jobs) return oldest.remove({ queue: q.name }); // Redis does not answer: no value rather than a stale one
            oldest.set({ queue: q.name }, jobs[0] ? Math.max(0, now - waitingSince(jobs[0])) / 1000 : 0);
          }));
        },
      });
      const depth = new Gauge({
        name: 'pap_queue_jobs',
        help: 'Jobs per queue and state',
        labelNames: ['queue', 'state'],
        registers: [this.registry],
        async collect() {
          for (const q of queues.all()) {
            const counts = await q.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized').catch(() => null);
            if (!counts) continue;
            for (const [state, n] of Object.entries(counts)) depth.set({ queue: q.name, state }, n);
          }
        },
      });
    }
  }

  /** Records one HTTP request: `route` is the route's pattern (`/v1/commands/:commandId`), never the URL. */
  recordHttp(route: string, method: string, status: number, seconds: number): void {
    this.httpRequests.inc({ route, method, status: String(status) });
    this.httpDuration.observe({ route, method }, seconds);
  }

  /** Records one finished attempt of a job (worker `completed`/`failed` events). */
  recordJob(queue: QueueName, job: Job, outcome: 'completed' | 'failed', final: boolean, err?: Error): void {
    const labels = { queue, type: job.name };
    if (job.processedOn && job.finishedOn) this.duration.observe(labels, (job.finishedOn - job.processedOn) / 1000);
    if (outcome === 'failed' && !final) {
      this.retries.inc(labels);
      return;
    }
    this.finished.inc({ ...labels, outcome });
    if (job.finishedOn) this.latency.observe(labels, Math.max(0, job.finishedOn - job.timestamp) / 1000);
    if (outcome === 'failed') this.failures.inc({ ...labels, code: failedJobCode(err) });
    // A mail job that found its row already sent (a replay) sent nothing.
    if (queue === 'mail' && !(job.returnvalue as { replayed?: boolean } | null)?.replayed) this.emails.inc({ outcome: outcome === 'completed' ? 'sent' : 'failed' });
  }
}

/** The access requests' gauges as a store reads them at scrape time. */
export interface RequestGauges { states: Record<string, number>; oldestPendingSeconds: number }

/** The code of a job's final failure: a permanent one (UnrecoverableError) carries it, a transient one ran out of attempts. */
function failedJobCode(err?: Error): string {
  return err instanceof UnrecoverableError || err?.name === 'UnrecoverableError' ? failureCode(err.message) : TRANSIENT_EXHAUSTED;
}

/** The service's version (package.json), as `pap_build_info` shows it. */
export const SERVICE_VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** When a waiting job began to wait: added, its delay over, or (a retry, a stalled job) its last attempt started. */
function waitingSince(job: Job): number {
  return Math.max(job.timestamp + (job.delay ?? 0), job.processedOn ?? 0);
}

export interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

/**
 * `GET /metrics` on a port of its own (METRICS_PORT), for a process without the api role, so its
 * job and email counters can be scraped too. Everything else is 404.
 */
export async function listenMetrics(registry: Registry, port: number, host: string): Promise<MetricsServer> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Not found: only GET /metrics is served here.\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { address, port: bound } = server.address() as AddressInfo;
  return {
    url: `http://${address.includes(':') ? `[${address}]` : address}:${bound}`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
