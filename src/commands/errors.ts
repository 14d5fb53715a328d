import type { Issue } from './schemas.js';

/** The stable codes of the intake's refusals (contract §4). */
export type IntakeErrorCode = 'VALIDATION_FAILED' | 'IDEMPOTENCY_KEY_REUSED' | 'SERVICE_UNAVAILABLE';

/**
 * A refusal of the command log, for the caller: a stable `code`, a message a person can read, and
 * the details the contract shows beside them (for example `issues`). Nothing was accepted. It knows
 * no transport: the HTTP layer and the TypeScript producer map the code to their own answer.
 */
export abstract class IntakeError extends Error {
  abstract readonly code: IntakeErrorCode;
  constructor(message: string, readonly details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The command is not valid: `issues` name the fields (`path`) and what is wrong with each. */
export class ValidationFailed extends IntakeError {
  override name = 'ValidationFailed';
  readonly code = 'VALIDATION_FAILED' as const;
  constructor(readonly issues: Issue[], message = 'The request is not valid.', options?: { cause?: unknown }) {
    super(message, { issues }, options);
  }
}

/** A known commandId came again with another body (or from another partner). */
export class IdempotencyKeyReused extends IntakeError {
  override name = 'IdempotencyKeyReused';
  readonly code = 'IDEMPOTENCY_KEY_REUSED' as const;
  constructor(readonly commandId: string) {
    super(`commandId "${commandId}" was already used with a different body.`, { commandId });
  }
}

/** The database or the queue cannot take the command now; nothing was accepted, trying again may work. */
export class ServiceUnavailable extends IntakeError {
  override name = 'ServiceUnavailable';
  readonly code = 'SERVICE_UNAVAILABLE' as const;
  constructor(readonly what: 'queue' | 'database', cause: unknown) {
    super(`The ${what} is unavailable; nothing was accepted. Try again.`, {}, { cause });
  }
}
