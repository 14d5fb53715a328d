import type { Em } from '../db/orm.js';
import { decideGrant, decideLinkAnswer, linkState, type Decision, type LinkFacts, type LinkState } from '../domain/access.js';
import { loadAccess, lockClientEmails, touchLastIssuedAt, upsertAccess, type PairKey } from '../db/access-store.js';
import { insertAppliedCommand } from '../db/command-log.js';
import { declineRequest, findLink, findLinksOfRequest, insertPartnerNotices, markLinkAnswered, partnerNoticeKey, type LinkRow } from '../db/lifecycle-store.js';
import { hashToken, type GrantAllRef } from '../lib/grant-link.js';
import { insertEvents } from '../db/webhook-store.js';
import { accessEvent } from '../webhooks/events.js';

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

export { hashToken } from '../lib/grant-link.js';

/**
 * Applies `access.grant` in the caller's transaction (the platform's command, or the client's grant
 * link): pending → active with `granted_at` (the pair itself is the employee's portal membership:
 * it ends when the pair is revoked, removed, terminated or expires; nothing joins `portal_user`,
 * which is the platform's set), and the partner is told (`partner.granted`, to its notifyEmail). An
 * already active access is `unchanged` (only the newest command seen is remembered); no pending
 * access fails with NOT_FOUND. Serialised with every other operation on the same (client, email).
 */
export async function applyGrant(tx: Em, p: PairRef): Promise<PairResult> {
  await lockClientEmails(tx, [p]);
  const access = await loadAccess(tx, p);
  const decision = decideGrant(access, p.issuedAt);
  const outboxIds: string[] = [];
  if (decision.outcome === 'active') {
    await upsertAccess(tx, [{ ...p, state: 'active', granted: true }]);
    await insertEvents(tx, [accessEvent('access.active', p, p.commandId)]);
    const seq = access?.requestSeq ?? 0;
    outboxIds.push(...await insertPartnerNotices(tx, [{ ...p, kind: 'granted', seq, key: partnerNoticeKey('granted', { ...p, seq }, p.commandId) }]));
  } else if (decision.outcome === 'unchanged' && p.issuedAt) {
    await touchLastIssuedAt(tx, [p]);
  }
  return { decision, outboxIds };
}

/** The client's answer on the grant page. */
export type LinkAnswer = 'grant' | 'decline';

/** What the page behind a link says, and to whom (the names and the client's locale); no row: an unknown link. */
export interface LinkOutcome {
  page: 'confirm' | 'granted' | 'declined' | Exclude<LinkState, 'open'> | 'unknown';
  link?: LinkRow;
  /** Outbox rows to enqueue after commit. */
  outboxIds: string[];
}

const tokenShape = /^[A-Za-z0-9_-]{20,100}$/;
const at = (v: string | null) => (v === null ? null : new Date(v));

function linkFacts(row: LinkRow): LinkFacts {
  return {
    tokenSeq: row.tokenSeq,
    usedAt: at(row.usedAt),
    decided: row.decided,
    withdrawnAt: at(row.withdrawnAt),
    tokenExpiresAt: new Date(row.tokenExpiresAt),
    access: row.accessState === null ? null : { state: row.accessState, requestSeq: row.accessSeq ?? 0, expiresAt: at(row.accessExpiresAt) },
  };
}

/** What the page of a grant link shows now (GET: changes nothing). */
export async function viewLink(em: Em, token: string, now: Date): Promise<LinkOutcome> {
  const row = tokenShape.test(token) ? await findLink(em, hashToken(token)) : undefined;
  if (!row) return { page: 'unknown', outboxIds: [] };
  const d = decideLinkAnswer(linkFacts(row), 'grant', now);
  return { page: d.outcome === 'refused' ? d.page : 'confirm', link: row, outboxIds: [] };
}

/**
 * The client answers through a grant link (POST), in one transaction: an open link's `grant` applies
 * `access.grant` (as the platform's command would), its `decline` makes the pair `declined`; the
 * link is used once (`decided`), the partner is told, and the answer is logged as an applied
 * `access.grant` command (`via: grant-link`, `decision`) for the audit trail. A link that is not
 * open changes nothing and says why. Two answers at once: one wins, the other finds the link used.
 */
export async function answerLink(em: Em, token: string, answer: LinkAnswer, now: Date): Promise<LinkOutcome> {
  if (!tokenShape.test(token)) return { page: 'unknown', outboxIds: [] };
  return answerLinkOfHash(em, hashToken(token), answer, now);
}

/** {@link answerLink} by the link's stored hash. */
async function answerLinkOfHash(em: Em, hash: string, answer: LinkAnswer, now: Date): Promise<LinkOutcome> {
  return em.transactional(async (tx) => {
    // The (client, email) lock first, as every pair operation takes it, then the link's row.
    const peek = await findLink(tx, hash);
    if (!peek) return { page: 'unknown', outboxIds: [] };
    await lockClientEmails(tx, [peek]);
    const row = (await findLink(tx, hash, { lock: true }))!;
    const d = decideLinkAnswer(linkFacts(row), answer, now);
    if (d.outcome === 'refused') return { page: d.page, link: row, outboxIds: [] };
    const commandId = `grant-link.${hash.slice(0, 32)}`;
    const pair = { partnerId: row.partnerId, hubId: row.hubId, email: row.email };
    let outboxIds: string[];
    if (d.outcome === 'active') {
      outboxIds = (await applyGrant(tx, { ...pair, commandId, issuedAt: null })).outboxIds;
    } else {
      if (await declineRequest(tx, { ...pair, seq: row.tokenSeq, commandId })) await insertEvents(tx, [accessEvent('access.declined', pair, commandId)]);
      outboxIds = await insertPartnerNotices(tx, [{ ...pair, kind: 'declined', seq: row.tokenSeq, key: partnerNoticeKey('declined', { ...pair, seq: row.tokenSeq }) }]);
    }
    await markLinkAnswered(tx, hash, d.outcome === 'active' ? 'granted' : 'declined');
    await insertAppliedCommand(tx, {
      id: commandId, partnerId: row.partnerId, type: 'access.grant', bodyHash: hash, tokenName: 'grant-link',
      payload: { type: 'access.grant', commandId, clientHubId: row.hubId, employeeEmail: row.email, decision: answer },
      result: { outcome: d.outcome, via: 'grant-link' },
    });
    return { page: d.outcome === 'active' ? 'granted' : 'declined', link: row, outboxIds };
  });
}

// ---- a digest's "grant all" link ------------------------------------------------------------------

/** One person of a digest, as the "grant all" page lists them. */
export interface AllPerson { email: string; name: string | null }

/** What the page behind a "grant all" link says: the people it can still grant (`confirm`), those it granted now (`granted`), or that none is open (`used`). */
export interface AllOutcome {
  page: 'confirm' | 'granted' | 'used' | 'unknown';
  people: AllPerson[];
  names?: { partner: string; client: string };
  /** The client's locale. */
  locale?: string;
  /** Outbox rows to enqueue after commit (the partner told of each grant). */
  outboxIds: string[];
}

/** The digest's links whose requests can still be answered, one per person (its latest request). */
async function openLinksOf(em: Em, ref: GrantAllRef, now: Date): Promise<{ rows: (LinkRow & { tokenHash: string })[]; open: (LinkRow & { tokenHash: string })[] }> {
  const rows = await findLinksOfRequest(em, ref);
  const open = rows.filter((r) => linkState(linkFacts(r), now) === 'open');
  return { rows, open };
}

const personOf = (r: LinkRow): AllPerson => ({ email: r.email, name: r.employeeName });
const namesOf = (rows: readonly LinkRow[]) => (rows[0] ? { names: { partner: rows[0].partnerName, client: rows[0].clientName }, locale: rows[0].locale } : {});

/** What the page of a "grant all" link shows now (GET: changes nothing). */
export async function viewAll(em: Em, ref: GrantAllRef | null, now: Date): Promise<AllOutcome> {
  if (!ref) return { page: 'unknown', people: [], outboxIds: [] };
  const { rows, open } = await openLinksOf(em, ref, now);
  if (!rows.length) return { page: 'unknown', people: [], outboxIds: [] };
  return { page: open.length ? 'confirm' : 'used', people: open.map(personOf), ...namesOf(rows), outboxIds: [] };
}

/**
 * The client grants every open request of the digest (POST): each pair's own link is answered as
 * its own grant would be ({@link answerLink}: one transaction each, used once, the partner told), so
 * a pair is granted once however often the page is posted, and a link answered meanwhile (granted,
 * declined, withdrawn, expired) is left as it is.
 */
export async function answerAll(em: Em, ref: GrantAllRef | null, now: Date): Promise<AllOutcome> {
  if (!ref) return { page: 'unknown', people: [], outboxIds: [] };
  const { rows, open } = await openLinksOf(em, ref, now);
  if (!rows.length) return { page: 'unknown', people: [], outboxIds: [] };
  const granted: AllPerson[] = [];
  const outboxIds: string[] = [];
  for (const link of open) {
    const out = await answerLinkOfHash(em, link.tokenHash, 'grant', now);
    outboxIds.push(...out.outboxIds);
    if (out.page === 'granted') granted.push(personOf(link));
  }
  return { page: granted.length ? 'granted' : 'used', people: granted, ...namesOf(rows), outboxIds };
}
