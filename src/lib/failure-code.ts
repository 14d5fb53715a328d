/**
 * How a permanent job failure carries its code through BullMQ, whose `failedReason` is a plain
 * string: `CODE: message`. The workers' failure mapper writes it with `formatFailure`; metrics and
 * the ops CLI read the code back with `failureCode`, and nothing else reads a failedReason.
 */

/** The code of a job that failed because its retries ran out on transient errors. */
export const TRANSIENT_EXHAUSTED = 'TRANSIENT_EXHAUSTED';

/** The failedReason of a permanent failure: its code, then its message. */
export function formatFailure(f: { code: string; message: string }): string {
  return `${f.code}: ${f.message}`;
}

const leadingCode = /^([A-Z][A-Z0-9_]*): /;

/**
 * The code that `formatFailure` put at the start of a failedReason; TRANSIENT_EXHAUSTED when there
 * is none (the job failed on a transient error after its last attempt).
 */
export function failureCode(failedReason: string | null | undefined): string {
  return leadingCode.exec(failedReason ?? '')?.[1] ?? TRANSIENT_EXHAUSTED;
}
