import { sql } from 'kysely';
import type { Em } from './orm.js';

/**
 * Grant links as the confirmation page reads them (table `grant_token`, with the names of the
 * partner, client and employee it concerns). Links are created and expired by the access store.
 */

/** A grant link with what the page shows (`expiresAt`, `usedAt` as Postgres writes them). */
export interface GrantLinkRow {
  partnerId: string;
  hubId: string;
  email: string;
  expiresAt: string;
  usedAt: string | null;
  partnerName: string;
  clientName: string | null;
  employeeName: string | null;
}

/**
 * The grant link whose token hashes to `tokenHash`, or undefined. With `lock`, its row is locked
 * until the caller's transaction ends (a link is used once).
 */
export async function findGrantLink(em: Em, tokenHash: string, opts: { lock?: boolean } = {}): Promise<GrantLinkRow | undefined> {
  return em.getKysely()
    .selectFrom('grant_token as g')
    .innerJoin('partner as p', 'p.id', 'g.partner_id')
    .leftJoin('client as c', (j) => j.onRef('c.partner_id', '=', 'g.partner_id').onRef('c.hub_id', '=', 'g.hub_id'))
    .leftJoin('employee as e', (j) => j.onRef('e.partner_id', '=', 'g.partner_id').onRef('e.email', '=', 'g.email'))
    .select(['g.partner_id as partnerId', 'g.hub_id as hubId', 'g.email', 'g.expires_at as expiresAt', 'g.used_at as usedAt',
      'p.name as partnerName', 'c.name as clientName', 'e.name as employeeName'])
    .where('g.token_hash', '=', tokenHash)
    .$if(opts.lock === true, (q) => q.forUpdate('g'))
    .$castTo<GrantLinkRow>()
    .executeTakeFirst();
}

/** Marks the grant link used (now). */
export async function markGrantLinkUsed(em: Em, tokenHash: string): Promise<void> {
  await em.getKysely().updateTable('grant_token').set({ used_at: sql`now()` }).where('token_hash', '=', tokenHash).execute();
}
