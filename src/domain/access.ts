import { DomainError } from './errors.js';

export type AccessState = 'pending' | 'active' | 'revoked';
export type PairOutcome = 'pending' | 'active' | 'unchanged' | 'revoked' | 'superseded';

export interface EmployeeFacts {
  tagged: boolean;
  status: 'active' | 'removed';
}
export interface ClientFacts {
  status: 'active' | 'terminated';
}
export interface AccessFacts {
  state: AccessState;
  /** The issuedAt of the last command applied to this (partner, client, employee) pair. */
  lastIssuedAt: Date | null;
}

export interface AssignFacts {
  employee: EmployeeFacts | null;
  client: ClientFacts | null;
  /** This partner's access row for the pair, if any. */
  access: AccessFacts | null;
  /** Whether the same email is pending/active for the same client under another partner. */
  linkedToOtherPartner: boolean;
  /** Whether the email is already one of the client's portal users. */
  isPortalUser: boolean;
  /** The command's issuedAt, when the caller gave one. */
  issuedAt: Date | null;
}

export type Decision =
  | { outcome: 'pending' | 'active' | 'revoked'; state: AccessState }
  | { outcome: 'unchanged' | 'superseded' };

/**
 * A command older than the last one applied to the pair changes nothing (contract §4 "Ordering").
 * Only commands that carry `issuedAt` are compared.
 */
export function isSuperseded(access: AccessFacts | null, issuedAt: Date | null): boolean {
  return issuedAt !== null && access?.lastIssuedAt != null && issuedAt.getTime() < access.lastIssuedAt.getTime();
}

/**
 * Decides one `access.assign` pair. Invariants: a pair already pending/active for this partner is
 * `unchanged` (no second email); an email live for the client under another partner is refused with
 * EMAIL_LINKED_TO_OTHER_PARTNER (never naming that partner); a portal user becomes `active` at once,
 * anybody else `pending` (one email). Throws a DomainError for refusals that retrying cannot fix.
 */
export function decideAssignment(f: AssignFacts): Decision {
  if (!f.employee) throw new DomainError('UNKNOWN_EMPLOYEE');
  if (!f.client) throw new DomainError('UNKNOWN_CLIENT');
  if (isSuperseded(f.access, f.issuedAt)) return { outcome: 'superseded' };
  if (f.employee.status !== 'active' || !f.employee.tagged) throw new DomainError('NOT_A_PARTNER_EMPLOYEE');
  if (f.client.status !== 'active') throw new DomainError('CLIENT_TERMINATED');
  if (f.access && f.access.state !== 'revoked') return { outcome: 'unchanged' };
  if (f.linkedToOtherPartner) throw new DomainError('EMAIL_LINKED_TO_OTHER_PARTNER');
  return f.isPortalUser ? { outcome: 'active', state: 'active' } : { outcome: 'pending', state: 'pending' };
}

/** Decides one `access.revoke` pair: a live access becomes `revoked`, anything else is `unchanged`. */
export function decideRevoke(access: AccessFacts | null, issuedAt: Date | null): Decision {
  if (isSuperseded(access, issuedAt)) return { outcome: 'superseded' };
  if (access && access.state !== 'revoked') return { outcome: 'revoked', state: 'revoked' };
  return { outcome: 'unchanged' };
}

/**
 * Decides `access.grant` (from the command or the email's link): `pending` becomes `active`;
 * an already active access is `unchanged`; no pending access is NOT_FOUND.
 */
export function decideGrant(access: AccessFacts | null, issuedAt: Date | null): Decision {
  if (isSuperseded(access, issuedAt)) return { outcome: 'superseded' };
  if (access?.state === 'pending') return { outcome: 'active', state: 'active' };
  if (access?.state === 'active') return { outcome: 'unchanged' };
  throw new DomainError('NOT_FOUND', 'There is no pending access for this client and employee.');
}

/** The later of two instants; the pair remembers the newest command applied to it. */
export function laterOf(a: Date | null, b: Date | null): Date | null {
  if (!a) return b;
  if (!b) return a;
  return a.getTime() >= b.getTime() ? a : b;
}
