/** Errors of the intake and reads that map to an HTTP status (contract §3, §4). */
export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const serviceUnavailable = (what: 'queue' | 'database', cause: unknown) =>
  new HttpError(503, 'SERVICE_UNAVAILABLE', `The ${what} is unreachable; nothing was accepted. Try again.`, {}, { cause });

/** Whether an error means Postgres could not be reached (as opposed to a bad statement). */
export function isDatabaseUnavailable(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | null;
  const code = e?.code ?? '';
  return ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', '57P01', '57P02', '57P03', '53300'].includes(code)
    || code.startsWith('08')
    || /Connection terminated|timeout exceeded when trying to connect/i.test(e?.message ?? '');
}
