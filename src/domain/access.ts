import { DomainError } from './errors.js';

/** A pair's states (contract §6). `pending` and `active` are live: they count for conflicts. */
export type AccessState = 'pending' | 'active' | 'declined' | 'expired' | 'revoked';
export type PairOutcome = 'pending' | 'active' | 'unchanged' | 'revoked' | 'superseded' | 'resent' | 'throttled' | 'extended';

/** Whether a state holds the client's email for the partner (the conflict rule counts these only). */
export const isLive = (state: AccessState): boolean => state === 'pending' || state === 'active';

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
  /** The sequence of the pair's current request (each new request bumps it; 0: never asked). */
  requestSeq?: number;
  /** When the client was last emailed about this pair. */
  lastEmailAt?: Date | null;
  /** The end of a time-bound access (null: none). */
  accessUntil?: Date | null;
}

export interface AssignFacts {
  employee: EmployeeFacts | null;
  client: ClientFacts | null;
  /** This partner's access row for the pair, if any. */
  access: AccessFacts | null;
  /** Whether the same email is pending/active for the same client under another partner. */
  linkedToOtherPartner: boolean;
  /** Whether the email is one of the client's portal users as the platform reports them (a grant's membership does not count). */
  isPortalUser: boolean;
  /** The command's issuedAt, when the caller gave one. */
  issuedAt: Date | null;
  /** The partner asks clients itself (`manual`): a new pair is pending without an email. Default: false. */
  manualRequests?: boolean;
  /** Whether the platform knows the client's contact for access requests. Default: true. */
  clientHasContact?: boolean;
}

export type Decision =
  | {
    /** `resent`: a new request of a pending, declined or expired pair; `extended`: a new end, same state. */
    outcome: 'pending' | 'active' | 'revoked' | 'resent' | 'extended';
    state: AccessState;
    /** A pending pair: whether the client is emailed a new request (false in manual mode). */
    emailClient?: boolean;
  }
  | { outcome: 'unchanged' | 'superseded' | 'throttled' };

/**
 * A command older than the last one applied to the pair changes nothing (contract §4 "Ordering").
 * Only commands that carry `issuedAt` are compared.
 */
export function isSuperseded(access: AccessFacts | null, issuedAt: Date | null): boolean {
  return issuedAt !== null && access?.lastIssuedAt != null && issuedAt.getTime() < access.lastIssuedAt.getTime();
}

/**
 * Decides one `access.assign` pair. Invariants: a pair already pending/active for this partner is
 * `unchanged` (no second email); a `declined`, `expired` or `revoked` pair is decided like a new
 * one; an email live for the client under another partner is refused with
 * EMAIL_LINKED_TO_OTHER_PARTNER (never naming that partner); a portal user as the platform reports
 * them becomes `active` at once; anybody else is `pending`: without an email for a `manual`
 * partner, else with one email to the client's platform contact, and a client without a contact
 * refuses the pair with NO_CLIENT_CONTACT. Throws a DomainError for refusals that retrying cannot fix.
 */
export function decideAssignment(f: AssignFacts): Decision {
  if (!f.employee) throw new DomainError('UNKNOWN_EMPLOYEE');
  if (!f.client) throw new DomainError('UNKNOWN_CLIENT');
  if (isSuperseded(f.access, f.issuedAt)) return { outcome: 'superseded' };
  if (f.employee.status !== 'active' || !f.employee.tagged) throw new DomainError('NOT_A_PARTNER_EMPLOYEE');
  if (f.client.status !== 'active') throw new DomainError('CLIENT_TERMINATED');
  if (f.access && isLive(f.access.state)) return { outcome: 'unchanged' };
  if (f.linkedToOtherPartner) throw new DomainError('EMAIL_LINKED_TO_OTHER_PARTNER');
  if (f.isPortalUser) return { outcome: 'active', state: 'active' };
  if (f.manualRequests === true) return { outcome: 'pending', state: 'pending', emailClient: false };
  if (f.clientHasContact === false) throw new DomainError('NO_CLIENT_CONTACT');
  return { outcome: 'pending', state: 'pending', emailClient: true };
}

/** Decides one `access.revoke` pair: a live (pending or active) access becomes `revoked`, anything else is `unchanged`. */
export function decideRevoke(access: AccessFacts | null, issuedAt: Date | null): Decision {
  if (isSuperseded(access, issuedAt)) return { outcome: 'superseded' };
  if (access && isLive(access.state)) return { outcome: 'revoked', state: 'revoked' };
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

// ---- the life of a request (contract §6) -------------------------------------------------------

/** How long after the client's last email a resend is `throttled` (contract §4 `access.resend`). */
export const RESEND_THROTTLE_MS = 3600_000;

/**
 * Decides one `access.resend` pair at `now`. A `pending`, `declined` or `expired` pair is asked
 * again (`resent`: a new request sequence, link and email; the old link dies), unless the client
 * was emailed about it less than an hour ago (`throttled`). Any other pair, a pair never asked, and
 * every pair of a `manual` partner (who asks clients itself) is `unchanged`. A pair that becomes
 * live again (declined, expired) is refused like an assignment would be: NOT_A_PARTNER_EMPLOYEE,
 * CLIENT_TERMINATED, EMAIL_LINKED_TO_OTHER_PARTNER; a client without a contact: NO_CLIENT_CONTACT.
 * Employee and client facts are checked only when given (a caller that loads them).
 */
export function decideResend(f: AssignFacts, now: Date): Decision {
  if (isSuperseded(f.access, f.issuedAt)) return { outcome: 'superseded' };
  const state = f.access?.state;
  if (state !== 'pending' && state !== 'declined' && state !== 'expired') return { outcome: 'unchanged' };
  if (f.manualRequests === true) return { outcome: 'unchanged' };
  const last = f.access?.lastEmailAt;
  if (last && now.getTime() - last.getTime() < RESEND_THROTTLE_MS) return { outcome: 'throttled' };
  if (f.employee && (f.employee.status !== 'active' || !f.employee.tagged)) throw new DomainError('NOT_A_PARTNER_EMPLOYEE');
  if (f.client && f.client.status !== 'active') throw new DomainError('CLIENT_TERMINATED');
  if (state !== 'pending' && f.linkedToOtherPartner) throw new DomainError('EMAIL_LINKED_TO_OTHER_PARTNER');
  if (f.clientHasContact === false) throw new DomainError('NO_CLIENT_CONTACT');
  return { outcome: 'resent', state: 'pending', emailClient: true };
}

/**
 * Decides one `access.extend` pair: a `pending` or `active` pair gets the new end (`extended`,
 * its ending notices start again); any other pair is `unchanged`.
 */
export function decideExtend(access: AccessFacts | null, issuedAt: Date | null): Decision {
  if (isSuperseded(access, issuedAt)) return { outcome: 'superseded' };
  if (access?.state === 'pending' || access?.state === 'active') return { outcome: 'extended', state: access.state };
  return { outcome: 'unchanged' };
}

/** What a grant link knows when it is opened: its own row and the pair's current request. */
export interface LinkFacts {
  /** The request sequence the link was made for. */
  tokenSeq: number;
  usedAt: Date | null;
  decided: 'granted' | 'declined' | null;
  withdrawnAt: Date | null;
  /** When the link itself stops working. */
  tokenExpiresAt: Date;
  /** The pair's access row, if any. */
  access: { state: AccessState; requestSeq: number; expiresAt: Date | null } | null;
}

/** What a link's page says: it can be answered (`open`), or why not. */
export type LinkState = 'open' | 'used' | 'expired' | 'withdrawn';

/**
 * The state of a grant link at `now`. A link answers only its own request: used once (granted or
 * declined) it is `used`; a newer request, a revoke or a withdrawal make it `withdrawn`; a request
 * past its expiry (or already `expired` by the sweep) is `expired`; a request answered some other
 * way (the platform's `access.grant`, a portal-user sync) is `used`.
 */
export function linkState(f: LinkFacts, now: Date): LinkState {
  if (f.usedAt || f.decided) return 'used';
  if (f.withdrawnAt || !f.access || f.access.requestSeq !== f.tokenSeq) return 'withdrawn';
  switch (f.access.state) {
    case 'pending': {
      const expired = f.tokenExpiresAt.getTime() <= now.getTime() || (f.access.expiresAt !== null && f.access.expiresAt.getTime() <= now.getTime());
      return expired ? 'expired' : 'open';
    }
    case 'expired': return 'expired';
    case 'active':
    case 'declined': return 'used';
    case 'revoked': return 'withdrawn';
  }
}

/**
 * Decides the client's answer through a grant link at `now`: an open link's `grant` makes the pair
 * `active`, its `decline` makes it `declined`; a link that is not open changes nothing and says why
 * (`used`, `expired`, `withdrawn`).
 */
export function decideLinkAnswer(f: LinkFacts, answer: 'grant' | 'decline', now: Date): { outcome: 'active' | 'declined'; state: 'active' | 'declined' } | { outcome: 'refused'; page: Exclude<LinkState, 'open'> } {
  const s = linkState(f, now);
  if (s !== 'open') return { outcome: 'refused', page: s };
  return answer === 'grant' ? { outcome: 'active', state: 'active' } : { outcome: 'declined', state: 'declined' };
}

/** Decides a decline through a grant link: an open link's pending pair becomes `declined`; else the page says why not. */
export const decideDecline = (f: LinkFacts, now: Date) => decideLinkAnswer(f, 'decline', now);
