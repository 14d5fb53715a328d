import { UnrecoverableError } from 'bullmq';
import { DomainError } from '../domain/errors.js';
import { isDatabaseUnavailable, sqlState } from '../db/errors.js';
import { formatFailure } from '../lib/failure-code.js';
import { parsePayload, type JobData, type JobKind } from '../jobs/contracts.js';

/** A failure that retrying cannot fix, outside the domain rules (SMTP 5xx, a forged job). */
export class PermanentError extends Error {
  override name = 'PermanentError';
  constructor(readonly code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export type FailureKind = { kind: 'permanent'; code: string; message: string } | { kind: 'transient' };

/**
 * Postgres refusing a value itself, whatever else the database holds: a data exception (class 22: a
 * number or date out of range, text it cannot store), a CHECK or NOT NULL violation. The same
 * statement fails again on every attempt. A unique, foreign-key or exclusion violation (23505,
 * 23503, 23P01) is left out: it can be a race with another writer that a retry resolves.
 */
function isRefusedValue(err: unknown): boolean {
  const code = sqlState(err);
  return code.startsWith('22') || code === '23514' || code === '23502';
}

/**
 * The one place that decides retry or not. Domain refusals, permanent infrastructure errors and
 * values Postgres refuses fail the job at once (their code kept; a refused value is
 * VALIDATION_FAILED); everything else is transient and retried with backoff: serialization
 * failures, deadlocks, unique violations, SMTP 4xx, unknown errors, and every state in which
 * Postgres cannot write now (`isDatabaseUnavailable`: unreachable, shutting down, out of
 * resources, a read-only transaction of class 25 after a failover).
 */
export function classify(err: unknown): FailureKind {
  if (err instanceof DomainError || err instanceof PermanentError) return { kind: 'permanent', code: err.code, message: err.message };
  if (isRefusedValue(err)) {
    const constraint = (err as { constraint?: unknown }).constraint;
    const what = typeof constraint === 'string' ? `, constraint ${constraint}` : '';
    return { kind: 'permanent', code: 'VALIDATION_FAILED', message: `The database refused a value of this command (SQLSTATE ${sqlState(err)}${what}).` };
  }
  const e = err as { responseCode?: number } | null;
  if (typeof e?.responseCode === 'number' && e.responseCode >= 500 && e.responseCode < 600) {
    return { kind: 'permanent', code: 'SMTP_REJECTED', message: (err as Error).message };
  }
  return { kind: 'transient' };
}

/**
 * The error BullMQ sees for a permanent failure: fails the job at once, message `CODE: message`.
 * It has no stack: BullMQ keeps `err.stack` of every failed attempt, and the dashboard would show
 * our source paths under a refusal that is the caller's business, once per attempt. With none it
 * shows the reason alone (the failedReason), once.
 */
export function toUnrecoverable(f: { code: string; message: string }): UnrecoverableError {
  const err = new UnrecoverableError(formatFailure(f));
  err.stack = '';
  return err;
}

/** Whether BullMQ fails the job at once for this error, whatever attempts are left. */
export const isUnrecoverable = (err: Error) => err instanceof UnrecoverableError || err.name === 'UnrecoverableError';

/**
 * A job's payload, parsed with its contract (jobs/contracts.ts). A payload that does not fit (a job
 * forged into Redis, a corrupt one) fails the job at once: `VALIDATION_FAILED: …`.
 */
export function payloadOf<K extends JobKind>(kind: K, data: unknown): JobData<K> {
  const r = parsePayload(kind, data);
  if (!r.ok) throw toUnrecoverable({ code: 'VALIDATION_FAILED', message: r.message });
  return r.data;
}

/** Whether a database error is a unique violation of `constraint` (by its SQLSTATE and constraint name, never its text). */
export function isUniqueViolation(err: unknown, constraint: string): boolean {
  return sqlState(err) === '23505' && (err as { constraint?: unknown }).constraint === constraint;
}

/**
 * A database failure that says nothing about the rows (unreachable, deadlock, serialization, lock
 * timeout): a batch that meets it is retried whole with backoff, rather than split into one job per
 * member as a batch is when a row of it fails (a unique violation, a value out of range).
 */
export function isTransientDatabaseError(err: unknown): boolean {
  return isDatabaseUnavailable(err) || ['40001', '40P01', '55P03'].includes(sqlState(err));
}
