import { createHash } from 'node:crypto';
import type { Em } from '../db/orm.js';
import { decideGrant, type Decision } from '../domain/access.js';
import { addPortalUsers, expireGrantLinks, loadAccess, lockClientEmails, touchLastIssuedAt, upsertAccess, type PairKey } from '../db/access-store.js';

/** A pair as a command names it. */
export interface PairRef extends PairKey {
  commandId: string;
  /** The command's issuedAt, when given. */
  issuedAt: Date | null;
}

export interface PairResult {
  decision: Decision;
  /** Outbox rows to enqueue after commit. */
  outboxIds: string[];
}

/** How a grant link's token is stored (never the token itself): SHA-256, base64url. */
export const hashToken = (token: string) => createHash('sha256').update(token).digest('base64url');

/**
 * Applies `access.grant` in the caller's transaction (from the command, or from the email's link):
 * pending → active, the email joins the client's portal users and the pair's open grant links
 * expire. An already active access is `unchanged` (only the newest command seen is remembered);
 * no pending access fails with NOT_FOUND. Serialised with every other operation on the same
 * (client, email).
 */
export async function applyGrant(tx: Em, p: PairRef): Promise<PairResult> {
  await lockClientEmails(tx, [p]);
  const access = await loadAccess(tx, p);
  const decision = decideGrant(access, p.issuedAt);
  if (decision.outcome === 'active') {
    await upsertAccess(tx, [{ ...p, state: 'active' }]);
    await addPortalUsers(tx, p.hubId, [p.email]);
    await expireGrantLinks(tx, [p]);
  } else if (decision.outcome === 'unchanged' && p.issuedAt) {
    await touchLastIssuedAt(tx, [p]);
  }
  return { decision, outboxIds: [] };
}
