import type { Em } from '../db/orm.js';
import { loadPairFacts } from '../db/access-store.js';
import { partnerExists } from '../db/read-store.js';
import { planPairBatch, type BatchPair } from '../domain/pair-batch.js';
import type { CommandOf } from './schemas.js';

/**
 * The dry run (contract §9): what applying a pair command now would do to each of its pairs, decided
 * by the worker's own code (the facts read of `applyPairBatch`, `loadPairFacts`, and the pure
 * `planPairBatch`), in a read-only transaction. Nothing is written: no command row, no job, no
 * access, no conflict, no email. A conflict answers EMAIL_LINKED_TO_OTHER_PARTNER with the domain's
 * message, which never names the other partner.
 */

/** The pair commands a dry run decides. */
export type PreviewCommand = CommandOf<'access.assign'> | CommandOf<'access.revoke'> | CommandOf<'access.resend'>;

/** One pair's answer: its outcome, or why it would fail. */
export type PreviewItem =
  | { clientHubId: string; employeeEmail: string; outcome: string }
  | { clientHubId: string; employeeEmail: string; error: { code: string; message: string } };

export interface PreviewAnswer { type: PreviewCommand['type']; items: PreviewItem[] }

/** The dry run's commandId on its pairs: a command that is not in the log (its `accessUntil` is not read from there). */
const PREVIEW_COMMAND_ID = 'preview';

/**
 * Decides every pair of `command` (clients × employees, in the order the worker numbers them) for
 * the partner at `now`, as the worker would apply it now; null when the partner does not exist.
 * Later pairs see the effect of earlier ones, as in the worker's batch. Runs in a read-only,
 * repeatable-read transaction: Postgres refuses any write, and every fact comes from one snapshot.
 */
export async function previewPairCommand(em: Em, partnerId: string, command: PreviewCommand, now: Date): Promise<PreviewAnswer | null> {
  const issuedAt = command.issuedAt ? new Date(command.issuedAt) : null;
  const pairs: BatchPair[] = command.clientHubIds.flatMap((hubId) => command.employeeEmails.map((email) => ({ hubId, email })))
    .map(({ hubId, email }, idx) => ({ partnerId, hubId, email, commandId: PREVIEW_COMMAND_ID, idx, issuedAt, type: command.type }));
  return em.fork().transactional(async (tx) => {
    if (!(await partnerExists(tx, partnerId))) return null;
    // The worker's read (see applyPairBatch): everything but a revoke decides with the employee, the
    // client and the partner's request mode. No row locks: the transaction is read-only.
    const facts = await loadPairFacts(tx, pairs.map((p) => ({ ...p, assign: p.type !== 'access.revoke' })), { lock: false });
    const { results } = planPairBatch(pairs, facts, now);
    const items = pairs.map((p, i): PreviewItem => {
      const r = results[i]!;
      const pair = { clientHubId: p.hubId, employeeEmail: p.email };
      return r.ok ? { ...pair, outcome: r.decision.outcome } : { ...pair, error: r.error.toJSON() };
    });
    return { type: command.type, items };
  }, { readOnly: true, isolationLevel: 'repeatable read' });
}
