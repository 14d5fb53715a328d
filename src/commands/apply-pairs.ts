import { randomBytes } from 'node:crypto';
import type { Em } from '../db/orm.js';
import { planPairBatch, type BatchPair, type PairOutcomeOrError } from '../domain/pair-batch.js';
import { createGrantLinks, expireGrantLinks, loadPairFacts, lockClientEmails, recordConflicts, touchLastIssuedAt, upsertAccess } from '../db/access-store.js';
import { grantEmailKey } from '../db/outbox-store.js';
import { hashToken } from './grant.js';

export type { BatchPair, PairOutcomeOrError } from '../domain/pair-batch.js';

/**
 * Applies a batch of `access.assign` / `access.revoke` pairs in the caller's transaction with a
 * fixed number of set-based statements, whatever the batch size: lock every (client, email) in a
 * stable order, read every fact in one query, decide each pair in order (planPairBatch: later pairs
 * see the effect of earlier ones in the same batch), then write accesses, grant links with their
 * outbox rows, and conflicts in one statement each. With `mailClaimMs`, the outbox rows are written
 * claimed for that long (the caller sends them right after the commit). The unique index on live
 * (client, email) rows stays the backstop; a violation aborts the batch (the caller retries pair by pair).
 */
export async function applyPairBatch(tx: Em, pairs: BatchPair[], grantTtlDays: number, mailClaimMs: number | null = null): Promise<PairOutcomeOrError[]> {
  await lockClientEmails(tx, pairs);
  const facts = await loadPairFacts(tx, pairs.map((p) => ({ ...p, assign: p.type === 'access.assign' })));
  const plan = planPairBatch(pairs, facts);
  const { results } = plan;
  if (plan.stateWrites.length) {
    await upsertAccess(tx, plan.stateWrites.map((w) => ({ partnerId: w.pair.partnerId, hubId: w.pair.hubId, email: w.pair.email, state: w.state, issuedAt: w.issuedAt, commandId: w.pair.commandId })));
  }
  if (plan.touches.length) {
    await touchLastIssuedAt(tx, plan.touches.map((w) => ({ partnerId: w.pair.partnerId, hubId: w.pair.hubId, email: w.pair.email, issuedAt: w.issuedAt })));
  }
  if (plan.revoked.length) await expireGrantLinks(tx, plan.revoked);
  if (plan.pending.length) {
    const links = plan.pending.map(({ pair: p }) => {
      const token = randomBytes(32).toString('base64url');
      return { partnerId: p.partnerId, hubId: p.hubId, email: p.email, tokenHash: hashToken(token), notificationKey: grantEmailKey(p), payload: { hubId: p.hubId, email: p.email, token } };
    });
    const outbox = await createGrantLinks(tx, links, grantTtlDays, mailClaimMs === null ? null : mailClaimMs / 1000);
    const byKey = new Map(outbox.map((o) => [o.notification_key, String(o.id)]));
    for (const { pair, i } of plan.pending) {
      const id = byKey.get(grantEmailKey(pair));
      const r = results[i];
      if (id && r?.ok) r.outboxId = id;
    }
  }
  if (plan.conflicts.length) await recordConflicts(tx, plan.conflicts);
  return results;
}
