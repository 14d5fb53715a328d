import { UnrecoverableError } from 'bullmq';
import { DomainError } from '../domain/errors.js';
import { isDatabaseUnavailable } from '../commands/errors.js';

/** A failure that retrying cannot fix, outside the domain rules (SMTP 5xx, a forged job). */
export class PermanentError extends Error {
  override name = 'PermanentError';
  constructor(readonly code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export type FailureKind = { kind: 'permanent'; code: string; message: string } | { kind: 'transient' };

/**
 * The one place that decides retry or not. Domain refusals and permanent infrastructure errors fail
 * the job at once (their code kept); everything else (serialization failures, deadlocks, lost
 * connections, SMTP 4xx, unknown errors) is transient and retried with backoff.
 */
export function classify(err: unknown): FailureKind {
  if (err instanceof DomainError || err instanceof PermanentError) return { kind: 'permanent', code: err.code, message: err.message };
  const e = err as { responseCode?: number } | null;
  if (typeof e?.responseCode === 'number' && e.responseCode >= 500 && e.responseCode < 600) {
    return { kind: 'permanent', code: 'SMTP_REJECTED', message: (err as Error).message };
  }
  return { kind: 'transient' };
}

/** The error BullMQ sees for a permanent failure: fails the job at once, message `CODE: message`. */
export function toUnrecoverable(f: { code: string; message: string }): UnrecoverableError {
  return new UnrecoverableError(`${f.code}: ${f.message}`);
}

/**
 * A database failure that says nothing about the rows (unreachable, deadlock, serialization, lock
 * timeout): a batch that meets it is retried whole with backoff, rather than split into one job per
 * member as a batch is when a row of it fails (a unique violation, a value out of range).
 */
export function isTransientDatabaseError(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code ?? '';
  return isDatabaseUnavailable(err) || ['40001', '40P01', '55P03'].includes(code);
}
