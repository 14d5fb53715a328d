import { createHash } from 'node:crypto';
import type { JobsOptions } from 'bullmq';
import { z } from 'zod';
import { commandIdSchema, idPattern } from '../commands/schemas.js';

/**
 * The job contracts: per job, its queue, its name, its payload schema (strict and bounded: a job
 * carries ids only, never emails or names, so Redis can be rebuilt from Postgres), its job id and
 * its options. Jobs are added by `enqueue.ts` only, and every processor parses its payload here
 * first: a payload that does not fit (a job forged into Redis, a corrupt one) fails at once with
 * `VALIDATION_FAILED`.
 */

/** Queue names. */
export const QUEUES = {
  /** One job per accepted command: `{commandId}` (job id per acceptance, see jobIds.command). */
  commands: 'commands',
  /**
   * access.assign / access.revoke pairs: one job per range of a command's pairs (`{commandId, from, to}`,
   * applied in one transaction), and one job per pair (`{commandId, idx}`) for a pair that failed or
   * must be applied on its own, so a refused pair is one failed job with its code.
   */
  pairs: 'pairs',
  /** One job per outbox row: `{outboxId}`. */
  mail: 'mail',
  /** Credit recalculation: the scheduled fan-out, one job per group of partners, and single-partner jobs. */
  credit: 'credit',
  /** The lifecycle sweep (job scheduler `lifecycle-sweep`): request expiry, reminders, time-bound access ends and their notices. */
  lifecycle: 'lifecycle',
  /** Webhook deliveries: one job per subscription with something to send (`{webhookId}`), sending its deliveries one at a time in event order. */
  webhooks: 'webhooks',
} as const;
export type QueueName = (typeof QUEUES)[keyof typeof QUEUES];

/** Retries with exponential backoff for transient failures; refusals fail at once (UnrecoverableError) and skip them. */
export const defaultJobOptions: JobsOptions = {
  attempts: 8,
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: { age: 24 * 3600, count: 5000 },
  removeOnFail: { age: 14 * 24 * 3600, count: 50_000 },
};

/** The first retry delay of a job (the backoff's base). */
export const firstBackoffMs = typeof defaultJobOptions.backoff === 'object' ? defaultJobOptions.backoff.delay ?? 1000 : 1000;

/** The id of the job scheduler of the daily recalculation (`recalculate-all`). */
export const RECALC_SCHEDULER_ID = 'credit-recalculate-daily';

/** The id of the job scheduler of the lifecycle sweep (`lifecycle-sweep` every LIFECYCLE_SWEEP_MS). */
export const LIFECYCLE_SCHEDULER_ID = 'lifecycle-sweep';

/** BullMQ job ids must not contain ':' (commandIds may): '~' is outside the commandId alphabet, so this is one-to-one. */
const safe = (id: string) => id.replaceAll(':', '~');

/** Job ids: deterministic, so a replayed enqueue (or the reconciler) adds nothing twice while the job exists. */
export const jobIds = {
  /**
   * One acceptance of a command: its commandId and its `seq` in the log (digits, last, so the id
   * reads back one way). An acceptance that was taken back (the add timed out: 503) may still have
   * left its job in Redis; a later acceptance of the same commandId gets a new `seq`, so its job is
   * a new one, never that stale job (which finds no row of its own and completes doing nothing).
   */
  command: (commandId: string, seq: string | number) => `c.${safe(commandId)}.${seq}`,
  pair: (commandId: string, idx: number) => `p.${safe(commandId)}.${idx}`,
  pairRange: (commandId: string, from: number, to: number) => `p.${safe(commandId)}.${from}-${to}`,
  mail: (outboxId: string | number) => `m.${outboxId}`,
  /** The one delivery job of a webhook subscription (at most one exists at a time: its deliveries go one by one, in order). */
  webhook: (webhookId: string) => `wh.${safe(webhookId)}`,
  /** One partner's own recalculation in a run. */
  credit: (partnerId: string, runId: string) => `r.${safe(partnerId)}.${runId}`,
  /**
   * One group of one run: the run and the group's members (a digest), so a replayed fan-out over
   * the same partners adds nothing twice, and one over changed partners (a partner created
   * meanwhile) adds the groups that changed rather than skipping anyone.
   */
  recalcGroup: (runId: string, partnerIds: readonly string[]) => `rg.${runId}.${createHash('sha256').update(JSON.stringify(partnerIds)).digest('hex').slice(0, 20)}`,
};

/** @see jobIds.recalcGroup */
export const recalcGroupJobId = jobIds.recalcGroup;

const partnerId = z.string().regex(idPattern);
/** A pair's position in its command (a command has at most 1000 pairs). */
const idx = z.number().int().min(0).max(999);
/** A run of the recalculation: the fan-out job's id, letters and digits only. */
const runId = z.string().regex(/^[A-Za-z0-9]{1,200}$/);

const commandJob = z.object({ commandId: commandIdSchema }).strict();
const pairRangeJob = z.object({ commandId: commandIdSchema, from: idx, to: z.number().int().min(1).max(1000) }).strict()
  .refine((d) => d.from < d.to, { message: 'from must be below to', path: ['to'] });
const pairJob = z.object({ commandId: commandIdSchema, idx }).strict();
const mailJob = z.object({ outboxId: z.string().regex(/^\d{1,19}$/) }).strict();
const recalcAllJob = z.object({
  groupSize: z.number().int().min(1).max(1000).optional(),
  /** Written by the run once its groups are its children: a retry then waits for them instead of fanning out again. */
  fannedOut: z.object({ partners: z.number().int().min(0), groups: z.number().int().min(0) }).strict().optional(),
}).strict();
const recalcGroupJob = z.object({ partnerIds: z.array(partnerId).min(1).max(1000), runId }).strict();
const recalcPartnerJob = z.object({ partnerId, isolatedFrom: z.string().min(1).max(300).optional() }).strict();
const lifecycleSweepJob = z.object({}).strict();
const webhookJob = z.object({ webhookId: z.string().regex(/^wh_[A-Za-z0-9]{8,64}$/) }).strict();

export type CommandJob = z.infer<typeof commandJob>;
export type PairRangeJob = z.infer<typeof pairRangeJob>;
export type PairItemJob = z.infer<typeof pairJob>;
export type PairJob = PairRangeJob | PairItemJob;
export type MailJob = z.infer<typeof mailJob>;
export type RecalcAllJob = z.infer<typeof recalcAllJob>;
export type RecalcGroupJob = z.infer<typeof recalcGroupJob>;
export type RecalcPartnerJob = z.infer<typeof recalcPartnerJob>;
export type CreditJob = RecalcAllJob | RecalcGroupJob | RecalcPartnerJob;
export type LifecycleSweepJob = z.infer<typeof lifecycleSweepJob>;
export type WebhookJob = z.infer<typeof webhookJob>;

/**
 * Every job, by kind. `name` is the BullMQ job name; null for `commands` and `pairs` jobs, which are
 * named by their command's type (shown on the dashboard, and given to the jobs a range hands over). Idempotency keys, retries and what a failure means are documented on each processor and in
 * the README's job catalogue.
 */
export const jobContracts = {
  /** A command to apply. Idempotency key: the commandId (the log row is locked and checked); job id per acceptance (`seq`). */
  command: { queue: QUEUES.commands, name: null, schema: commandJob, jobId: (d: CommandJob, seq: string | number) => jobIds.command(d.commandId, seq), options: defaultJobOptions },
  /** The pairs `[from, to)` of a pair command, applied in one transaction. Idempotency key: (commandId, idx) per pair. */
  pairRange: { queue: QUEUES.pairs, name: null, schema: pairRangeJob, jobId: (d: PairRangeJob) => jobIds.pairRange(d.commandId, d.from, d.to), options: defaultJobOptions },
  /** One pair of a pair command, on its own (a refused pair fails here with its code). Idempotency key: (commandId, idx). */
  pair: { queue: QUEUES.pairs, name: null, schema: pairJob, jobId: (d: PairItemJob) => jobIds.pair(d.commandId, d.idx), options: defaultJobOptions },
  /** One outbox row to send. Idempotency key: the outbox row (a sent row is never sent again). */
  mail: { queue: QUEUES.mail, name: 'send', schema: mailJob, jobId: (d: MailJob) => jobIds.mail(d.outboxId), options: defaultJobOptions },
  /**
   * The scheduler's run (job id: the scheduler's): a flow parent. It adds one `recalculate-partners`
   * child per group, waits for them (waiting-children), and finishes when every group has; its
   * progress is the share of finished groups.
   */
  recalculateAll: { queue: QUEUES.credit, name: 'recalculate-all', schema: recalcAllJob, jobId: null, options: defaultJobOptions },
  /** One group of partners of a run (a child of the run; its failure does not hold the run): one read, one write. */
  recalculatePartners: { queue: QUEUES.credit, name: 'recalculate-partners', schema: recalcGroupJob, jobId: (d: RecalcGroupJob) => jobIds.recalcGroup(d.runId, d.partnerIds), options: defaultJobOptions },
  /** One partner (handed over by its group, or on its own). */
  recalculatePartner: { queue: QUEUES.credit, name: 'recalculate-partner', schema: recalcPartnerJob, jobId: (d: RecalcPartnerJob, run: string) => jobIds.credit(d.partnerId, run), options: defaultJobOptions },
  /**
   * The lifecycle sweep, added by its job scheduler (one place: enqueue.ts upsertLifecycleScheduler)
   * every LIFECYCLE_SWEEP_MS. Set-based steps, each one transaction guarded by the pairs' states and
   * arrays of notices sent, with outbox rows once-only by notification key: running it twice, or
   * two at once, sends nothing twice. A failure retries with backoff; the next tick redoes it anyway.
   */
  lifecycleSweep: { queue: QUEUES.lifecycle, name: 'lifecycle-sweep', schema: lifecycleSweepJob, jobId: null, options: { ...defaultJobOptions, attempts: 3, removeOnComplete: { count: 100 }, removeOnFail: { count: 1000 } } },
  /**
   * A subscription's deliveries, sent one at a time in event order until none is due; while the
   * oldest waits for its retry, the job waits (delayed) with it, holding the later ones. Idempotency
   * key: the delivery row (a delivered one is never sent again; a crash mid-send sends it again,
   * with the same webhook-id). Removed when finished, so the next event can add it again; a
   * failure of the job itself (the database) retries it, and the reconciler re-adds a lost one.
   */
  webhookDeliver: { queue: QUEUES.webhooks, name: 'deliver', schema: webhookJob, jobId: (d: WebhookJob) => jobIds.webhook(d.webhookId), options: { attempts: 5, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: true, removeOnFail: true } },
} as const;

export type JobKind = keyof typeof jobContracts;
export type JobData<K extends JobKind> = z.infer<(typeof jobContracts)[K]['schema']>;

/** The credit job kind of a job name, if it is one. */
export const creditJobKind = (name: string): 'recalculateAll' | 'recalculatePartners' | 'recalculatePartner' | null =>
  name === jobContracts.recalculateAll.name ? 'recalculateAll'
    : name === jobContracts.recalculatePartners.name ? 'recalculatePartners'
      : name === jobContracts.recalculatePartner.name ? 'recalculatePartner' : null;

/** Parses a job's payload with its contract; says what does not fit (bounded) when it does not. */
export function parsePayload<K extends JobKind>(kind: K, data: unknown): { ok: true; data: JobData<K> } | { ok: false; message: string } {
  const schema: z.ZodType = jobContracts[kind].schema;
  const r = schema.safeParse(data);
  if (r.success) return { ok: true, data: r.data as JobData<K> };
  const issues = r.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || 'data'}: ${i.message}`).join('; ');
  return { ok: false, message: `${kind} job payload is invalid: ${issues}`.slice(0, 500) };
}
