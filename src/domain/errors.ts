/** Stable error codes of the public contract (§4) that a command or pair can fail with. */
export type DomainErrorCode =
  | 'EMAIL_LINKED_TO_OTHER_PARTNER'
  | 'NOT_A_PARTNER_EMPLOYEE'
  | 'UNKNOWN_CLIENT'
  | 'UNKNOWN_EMPLOYEE'
  | 'UNKNOWN_PARTNER'
  | 'CLIENT_TERMINATED'
  | 'NOT_FOUND'
  | 'NO_CLIENT_CONTACT'
  | 'VALIDATION_FAILED';

const messages: Record<DomainErrorCode, string> = {
  EMAIL_LINKED_TO_OTHER_PARTNER: 'Their email address is already linked to another partner record for this client.',
  NOT_A_PARTNER_EMPLOYEE: 'This user is not a partner employee (not tagged, or removed from the partner account).',
  UNKNOWN_CLIENT: 'This client is not in the partner\'s client list.',
  UNKNOWN_EMPLOYEE: 'No user with this email belongs to the partner account.',
  UNKNOWN_PARTNER: 'This partner does not exist; create it with partner.upsert first.',
  CLIENT_TERMINATED: 'Services for this client were terminated.',
  NOT_FOUND: 'Nothing to act on.',
  NO_CLIENT_CONTACT: 'The platform knows no contact of this client to ask for access; the access request cannot be sent.',
  VALIDATION_FAILED: 'The command is not valid.',
};

/**
 * An expected, permanent refusal decided by domain rules. Retrying cannot help:
 * the job fails at once and the code and message are kept on the command log.
 */
export class DomainError extends Error {
  override name = 'DomainError';
  constructor(
    readonly code: DomainErrorCode,
    message: string = messages[code],
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
  toJSON(): { code: DomainErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}
