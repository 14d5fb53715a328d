import { IntakeError, type IntakeErrorCode } from '../commands/errors.js';

/**
 * An error as a producer's caller sees it (contract §3–§4): an HTTP status, a stable code, a
 * message, and details shown beside them in the error body (`issues`, …).
 */
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

/** The one mapping from the command log's error codes to HTTP statuses. */
const intakeStatus: Record<IntakeErrorCode, number> = {
  VALIDATION_FAILED: 400,
  IDEMPOTENCY_KEY_REUSED: 409,
  SERVICE_UNAVAILABLE: 503,
};

/**
 * The HttpError of an error that the producers know how to answer (an HttpError, or a refusal of
 * the command log by its code); null for anything else (an unexpected failure: 500).
 */
export function toHttpError(err: unknown): HttpError | null {
  if (err instanceof HttpError) return err;
  if (err instanceof IntakeError) return new HttpError(intakeStatus[err.code], err.code, err.message, err.details, { cause: err });
  return null;
}

/** Runs a call of the command log and gives its refusals as HttpError (the TypeScript producer's contract). */
export async function asHttpErrors<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw toHttpError(err) ?? err;
  }
}

/** The contract's error body (§4): `{"error":{"code","message",…details}}`. */
export interface ErrorBody { error: { code: string; message: string } & Record<string, unknown> }

/** The status and error body of an error the producers know how to answer; null for any other (a 500). */
export function errorReply(err: unknown): { status: number; body: ErrorBody } | null {
  const e = toHttpError(err);
  return e && { status: e.status, body: { error: { code: e.code, message: e.message, ...e.details } } };
}
