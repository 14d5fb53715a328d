import { createHash } from 'node:crypto';
import type { Em } from '../db/orm.js';
import { decideGrant, type AccessFacts, type Decision } from '../domain/access.js';

export interface PairRef {
  partnerId: string;
  hubId: string;
  email: string;
  commandId: string;
  /** The command's issuedAt, when given. */
  issuedAt: Date | null;
}

export interface PairResult {
  decision: Decision;
  /** Outbox rows to enqueue after commit. */
  outboxIds: string[];
}

export const hashToken = (token: string) => createHash('sha256').update(token).digest('base64url');

/** Serialises every operation on one (client, email) across partners for the rest of the transaction. */
async function lockPair(tx: Em, hubId: string, email: string): Promise<void> {
  await tx.execute('select pg_advisory_xact_lock(hashtextextended(?, 0))', [`${hubId}\n${email}`]);
}

async function loadAccess(tx: Em, p: PairRef): Promise<AccessFacts | null> {
  const [a] = await tx.execute<{ state: AccessFacts['state']; last_issued_at: string | null }[]>(
    'select state, last_issued_at from access where partner_id = ? and hub_id = ? and email = ?',
    [p.partnerId, p.hubId, p.email],
  );
  return a ? { state: a.state, lastIssuedAt: a.last_issued_at ? new Date(a.last_issued_at) : null } : null;
}

/** Records the newest command seen on the pair, so a late older command is superseded. */
async function writeAccess(tx: Em, p: PairRef, state: AccessFacts['state']): Promise<void> {
  await tx.execute(
    `insert into access (partner_id, hub_id, email, state, last_issued_at, command_id) values (?, ?, ?, ?, ?, ?)
     on conflict (partner_id, hub_id, email) do update set
       state = excluded.state,
       last_issued_at = greatest(access.last_issued_at, excluded.last_issued_at),
       command_id = excluded.command_id,
       updated_at = now()`,
    [p.partnerId, p.hubId, p.email, state, p.issuedAt?.toISOString() ?? null, p.commandId],
  );
}

async function touchIssuedAt(tx: Em, p: PairRef): Promise<void> {
  if (!p.issuedAt) return;
  await tx.execute(
    'update access set last_issued_at = greatest(last_issued_at, ?::timestamptz) where partner_id = ? and hub_id = ? and email = ?',
    [p.issuedAt.toISOString(), p.partnerId, p.hubId, p.email],
  );
}

/** Applies `access.grant`: pending → active, and the email joins the client's portal users. */
export async function applyGrant(tx: Em, p: PairRef): Promise<PairResult> {
  await lockPair(tx, p.hubId, p.email);
  const access = await loadAccess(tx, p);
  const decision = decideGrant(access, p.issuedAt);
  if (decision.outcome === 'active') {
    await writeAccess(tx, p, 'active');
    await tx.execute('insert into portal_user (hub_id, email) values (?, ?) on conflict do nothing', [p.hubId, p.email]);
    await expireGrantTokens(tx, p.partnerId, { hubId: p.hubId, email: p.email });
  } else if (decision.outcome === 'unchanged') {
    await touchIssuedAt(tx, p);
  }
  return { decision, outboxIds: [] };
}

/** Grant links of revoked or granted pairs stop working (set-based). */
export async function expireGrantTokens(tx: Em, partnerId: string, where: { hubId?: string; email?: string }): Promise<void> {
  await tx.execute(
    `update grant_token set expires_at = least(expires_at, now()) where partner_id = ? and used_at is null and expires_at > now()
       and (?::text is null or hub_id = ?) and (?::text is null or email = ?)`,
    [partnerId, where.hubId ?? null, where.hubId ?? null, where.email ?? null, where.email ?? null],
  );
}

/**
 * Revokes, in one set-based statement, every live access of this partner matching the filter
 * (an employee on every client, or every employee on a client), except pairs that a newer command
 * already touched. Returns the revoked pairs.
 */
export async function revokeAllAccess(tx: Em, q: { partnerId: string; email?: string; hubId?: string; commandId: string; issuedAt: Date | null }): Promise<{ hub_id: string; email: string }[]> {
  // One statement: revoke, and expire the open grant links of exactly the revoked pairs.
  return tx.execute<{ hub_id: string; email: string }[]>(
    `with revoked as (
       update access set state = 'revoked', updated_at = now(), command_id = ?,
              last_issued_at = greatest(last_issued_at, ?::timestamptz)
        where partner_id = ? and state <> 'revoked'
          and (?::text is null or email = ?) and (?::text is null or hub_id = ?)
          and (?::timestamptz is null or last_issued_at is null or last_issued_at <= ?::timestamptz)
        returning partner_id, hub_id, email),
     expired as (
       update grant_token g set expires_at = least(g.expires_at, now())
         from revoked r
        where g.partner_id = r.partner_id and g.hub_id = r.hub_id and g.email = r.email and g.used_at is null and g.expires_at > now())
     select hub_id, email from revoked`,
    [q.commandId, q.issuedAt?.toISOString() ?? null, q.partnerId, q.email ?? null, q.email ?? null, q.hubId ?? null, q.hubId ?? null, q.issuedAt?.toISOString() ?? null, q.issuedAt?.toISOString() ?? null],
  );
}
