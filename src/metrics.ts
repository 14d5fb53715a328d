import { Counter, Histogram, Registry, Gauge, collectDefaultMetrics } from 'prom-client';
import type { Job } from 'bullmq';
import type { Queues, QueueName } from './queues/index.js';

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
  readonly reenqueued = new Counter({ name: 'pap_reconciler_reenqueued_total', help: 'Jobs the reconciler re-enqueued because Redis had lost them', labelNames: ['kind'], registers: [this.registry] });

  constructor(queues?: Queues) {
    collectDefaultMetrics({ register: this.registry, prefix: 'pap_process_' });
    if (queues) {
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
    if (outcome === 'failed') this.failures.inc({ ...labels, code: errorCode(err) });
    // A mail job that found its row already sent (a replay) sent nothing.
    if (queue === 'mail' && !(job.returnvalue as { replayed?: boolean } | null)?.replayed) this.emails.inc({ outcome: outcome === 'completed' ? 'sent' : 'failed' });
  }
}

/** The code of a failure: `CODE: message` for permanent ones, TRANSIENT_EXHAUSTED otherwise. */
export function errorCode(err?: Error): string {
  const m = /^([A-Z][A-Z0-9_]+): /.exec(err?.message ?? '');
  return m?.[1] ?? 'TRANSIENT_EXHAUSTED';
}
