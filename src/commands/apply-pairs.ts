import type { Em } from '../db/orm.js';
import { planPairBatch, type BatchPair, type PairOutcomeOrError, type PlannedRequest } from '../domain/pair-batch.js';
import { createRequests, expireGrantLinks, loadPairFacts, lockClientEmails, recordConflicts, touchLastIssuedAt, upsertAccess, type RequestEmail } from '../db/access-store.js';
import { laterRequestEmailKey, requestEmailKey, REQUEST_EMAIL_KIND } from '../db/outbox-store.js';
import { grantTokenHash } from '../lib/grant-link.js';
import { insertEvents } from '../db/webhook-store.js';
import { accessEvent, accessEventOfOutcome, type NewEvent } from '../webhooks/events.js';

export type { BatchPair, PairOutcomeOrError } from '../domain/pair-batch.js';

/** What making access requests needs from the configuration (`Config` has both). */
export interface RequestSettings {
  /** A request (and its link) expires this many days after its email. */
  grantTtlDays: number;
  /** The key of the grant links' tokens. */
  grantLinkSecret: string;
}

/**
 * The emails of a batch's new requests: one per command and client (the digest), naming every pair
 * that command newly asks for at that client in this batch, each with its request sequence (the
 * renderer derives each pair's link, and the "grant all" link, from them and the command; no token
 * is written anywhere). Its notification key is the command and the client; should that client's
 * digest of the command exist already (a pair decided later on its own), the email falls back to
 * the key that also names the first of its pairs' items, so it is the same on every replay of the
 * batch and one batch never writes it twice. Returns the emails and, per key, the request whose
 * result carries the outbox id.
 */
export function requestEmails(requests: readonly PlannedRequest[]): { emails: RequestEmail[]; carriers: Map<string, PlannedRequest> } {
  const groups = new Map<string, PlannedRequest[]>();
  for (const r of requests) {
    const g = `${r.pair.commandId}\n${r.pair.partnerId}\n${r.pair.hubId}`;
    groups.set(g, [...(groups.get(g) ?? []), r]);
  }
  const emails: RequestEmail[] = [];
  const carriers = new Map<string, PlannedRequest>();
  for (const group of groups.values()) {
    const first = group.reduce((a, b) => (b.pair.idx < a.pair.idx ? b : a));
    const ref = { commandId: first.pair.commandId, hubId: first.pair.hubId, idx: first.pair.idx };
    const key = requestEmailKey(ref);
    const fallbackKey = laterRequestEmailKey(ref);
    // One line per employee: the latest request of a pair asked twice in the batch.
    const byEmail = new Map(group.map((r) => [r.pair.email, r.seq]));
    emails.push({
      notificationKey: key, fallbackKey, kind: REQUEST_EMAIL_KIND, partnerId: first.pair.partnerId,
      payload: { partnerId: first.pair.partnerId, hubId: first.pair.hubId, commandId: first.pair.commandId, pairs: [...byEmail].map(([email, seq]) => ({ email, seq })) },
    });
    carriers.set(key, first);
    carriers.set(fallbackKey, first);
  }
  return { emails, carriers };
}

/**
 * Applies a batch of pairs (`access.assign`, `access.revoke`, `access.resend`, `access.extend`) in the caller's transaction with a
 * fixed number of set-based statements, whatever the batch size: lock every (client, email) in a
 * stable order, read every fact in one query, decide each pair in order (planPairBatch: later pairs
 * see the effect of earlier ones in the same batch), then write accesses, grant links with their
 * outbox rows (one email per command and client), and conflicts in one statement each. With
 * `mailClaimMs`, the outbox rows are written claimed for that long (the caller sends them right
 * after the commit). The unique index on live (client, email) rows stays the backstop; a violation
 * aborts the batch (the caller retries pair by pair).
 */
export async function applyPairBatch(tx: Em, pairs: BatchPair[], settings: RequestSettings, mailClaimMs: number | null = null, now: Date = new Date()): Promise<PairOutcomeOrError[]> {
  await lockClientEmails(tx, pairs);
  // Everything but a revoke decides with the employee, the client and the partner's request mode.
  const facts = await loadPairFacts(tx, pairs.map((p) => ({ ...p, assign: p.type !== 'access.revoke' })));
  const plan = planPairBatch(pairs, facts, now);
  const { results } = plan;
  if (plan.stateWrites.length) {
    await upsertAccess(tx, plan.stateWrites.map((w) => ({
      partnerId: w.pair.partnerId, hubId: w.pair.hubId, email: w.pair.email, state: w.state, issuedAt: w.issuedAt, commandId: w.pair.commandId,
      ...(w.fresh ? { fresh: { ...w.fresh, ttlDays: settings.grantTtlDays } } : {}),
      ...(w.until ? { until: w.until } : {}),
    })));
  }
  if (plan.touches.length) {
    await touchLastIssuedAt(tx, plan.touches.map((w) => ({ partnerId: w.pair.partnerId, hubId: w.pair.hubId, email: w.pair.email, issuedAt: w.issuedAt })));
  }
  if (plan.revoked.length) await expireGrantLinks(tx, plan.revoked);
  if (plan.requests.length) {
    const links = plan.requests.map(({ pair: p, seq }) => ({
      partnerId: p.partnerId, hubId: p.hubId, email: p.email, seq, commandId: p.commandId,
      tokenHash: grantTokenHash(settings.grantLinkSecret, { partnerId: p.partnerId, hubId: p.hubId, email: p.email, seq }),
    }));
    const { emails, carriers } = requestEmails(plan.requests);
    const outbox = await createRequests(tx, links, emails, settings.grantTtlDays, mailClaimMs === null ? null : mailClaimMs / 1000);
    for (const o of outbox) {
      const carrier = carriers.get(o.notification_key);
      const r = carrier ? results[carrier.i] : undefined;
      if (r?.ok) r.outboxId = String(o.id);
    }
  }
  const conflicts = plan.conflicts.length ? await recordConflicts(tx, plan.conflicts) : [];
  await insertEvents(tx, pairEvents(pairs, results, conflicts));
  return results;
}

const pairKey = (p: { partnerId: string; hubId: string; email: string; commandId: string }) => `${p.partnerId}\n${p.hubId}\n${p.email}\n${p.commandId}`;

/**
 * The webhook events of a batch, in the order of its pairs: `access.pending` / `access.active` /
 * `access.revoked` for each pair that changed, and `access.conflict` for each refused pair that
 * `recordedConflicts` recorded now (a pair refused again by its own job is not reported twice).
 */
function pairEvents(pairs: readonly BatchPair[], results: readonly PairOutcomeOrError[], recordedConflicts: readonly { partnerId: string; hubId: string; email: string; commandId: string }[]): NewEvent[] {
  const fresh = new Set(recordedConflicts.map(pairKey));
  return pairs.flatMap((p, i): NewEvent[] => {
    const r = results[i]!;
    const type = r.ok ? accessEventOfOutcome(r.decision.outcome) : r.error.code === 'EMAIL_LINKED_TO_OTHER_PARTNER' && fresh.delete(pairKey(p)) ? 'access.conflict' : null;
    return type ? [accessEvent(type, p, p.commandId)] : [];
  });
}

/** Records refused pairs for the conflict list, and an `access.conflict` event for each recorded now, in the caller's transaction. */
export async function recordConflictsWithEvents(tx: Em, pairs: readonly BatchPair[]): Promise<void> {
  const recorded = await recordConflicts(tx, pairs);
  await insertEvents(tx, recorded.map((c) => accessEvent('access.conflict', c, c.commandId)));
}
