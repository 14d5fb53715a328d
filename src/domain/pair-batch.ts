import { decideAssignment, decideExtend, decideResend, decideRevoke, laterOf, type AccessFacts, type AccessState, type AssignFacts, type ClientFacts, type Decision, type EmployeeFacts } from './access.js';
import { DomainError } from './errors.js';

/** One pair of a pair command (`access.assign`, `access.revoke`, `access.resend`, `access.extend`), as a batch applies it. */
export interface BatchPair {
  partnerId: string;
  hubId: string;
  email: string;
  commandId: string;
  /** The item's position in its command. */
  idx: number;
  /** The command's issuedAt, when given. */
  issuedAt: Date | null;
  type: 'access.assign' | 'access.revoke' | 'access.resend' | 'access.extend';
}

/** What the database holds about one pair when its batch starts. */
export interface PairFacts {
  /** The employee (assigns only; null when unknown or not read). */
  employee: EmployeeFacts | null;
  /** The client (assigns only; null when unknown or not read). */
  client: ClientFacts | null;
  /** The partners holding a live (pending or active) access to the client for this email. */
  live: readonly string[];
  /** Whether the email is one of the client's portal users as the platform reports them. */
  portal: boolean;
  /** This partner's access row for the pair. */
  access: AccessFacts | null;
  /** The partner asks its clients itself (`accessRequests: manual`). Default: false. */
  manualRequests?: boolean;
  /** Whether the platform knows the client's contact for access requests. Default: true. */
  clientHasContact?: boolean;
  /** The end that the pair's `access.assign` or `access.extend` asks for (`accessUntil`; null: none). */
  accessUntil?: Date | null;
}

export type PairOutcomeOrError = { ok: true; decision: Decision; outboxId?: string } | { ok: false; error: DomainError };

/**
 * What a newly decided state resets on the pair: its request (a new `requestSeq` when the client is
 * emailed, null when not) and its end (`accessUntil`, null: none). Absent on writes that only move
 * the state (a revoke).
 */
export interface FreshPair { requestSeq: number | null; accessUntil: Date | null }

/**
 * An access row to write: a new state, or (state null) only the newest command seen on it.
 * `until`: a new end of the pair without a new request (`access.extend`; null: no end).
 */
export interface PlannedWrite { pair: BatchPair; state: AccessState | null; issuedAt: Date | null; fresh?: FreshPair; until?: { accessUntil: Date | null } }

/** A new request to the client: a grant link for `seq` and a place in the client's email (`i`: the pair's index in the batch). */
export interface PlannedRequest { pair: BatchPair; i: number; seq: number }

/** What applying a batch must write, decided without I/O. */
export interface PairBatchPlan {
  /** One result per pair, in order. */
  results: PairOutcomeOrError[];
  /** Access rows whose state is written (one per partner, client and email; the last pair that wrote it). */
  stateWrites: (PlannedWrite & { state: AccessState })[];
  /** Access rows of which only `last_issued_at` moves. */
  touches: PlannedWrite[];
  /** Pairs revoked: their open grant links are withdrawn. */
  revoked: BatchPair[];
  /** New requests that email the client: only those still pending with that request when the batch ends. */
  requests: PlannedRequest[];
  /** Pairs refused because the email is linked to another partner for the client. */
  conflicts: BatchPair[];
}

const pk = (p: { partnerId: string; hubId: string; email: string }) => `${p.partnerId}\n${p.hubId}\n${p.email}`;
const hk = (p: { hubId: string; email: string }) => `${p.hubId}\n${p.email}`;

/**
 * Decides a batch of pairs in order with the pure access rules: a later pair of the batch sees the
 * effect of the earlier ones (an assign then a revoke of the same pair, two partners racing for one
 * email). `facts[i]` is what the database held for `pairs[i]` when the batch started. Returns each
 * pair's outcome or refusal and the writes that apply them; the caller writes them in one
 * transaction. Refusals that retrying cannot fix are returned as DomainErrors, not thrown.
 * A request that emails the client takes the pair's next `requestSeq`; only a request the pair
 * still has when the batch ends is sent (an assign then a revoke of the same pair sends nothing).
 * `now` is when the batch applies (a resend within an hour of the pair's last email is throttled).
 */
export function planPairBatch(pairs: readonly BatchPair[], facts: readonly PairFacts[], now: Date): PairBatchPlan {
  // The batch's own view of the world, updated as each pair is decided.
  const access = new Map<string, AccessFacts | null>();
  const live = new Map<string, Set<string>>();
  pairs.forEach((p, i) => {
    const f = facts[i]!;
    if (!access.has(pk(p))) access.set(pk(p), f.access);
    if (!live.has(hk(p))) live.set(hk(p), new Set(f.live));
  });
  const writes = new Map<string, PlannedWrite>();
  const requests: PlannedRequest[] = [];
  const plan: PairBatchPlan = { results: [], stateWrites: [], touches: [], revoked: [], requests: [], conflicts: [] };

  pairs.forEach((p, i) => {
    const f = facts[i]!;
    const current = access.get(pk(p)) ?? null;
    const liveHere = live.get(hk(p))!;
    let decision: Decision;
    const asked = (): AssignFacts => ({
      employee: f.employee, client: f.client, access: current, linkedToOtherPartner: [...liveHere].some((x) => x !== p.partnerId),
      isPortalUser: f.portal, issuedAt: p.issuedAt, manualRequests: f.manualRequests ?? false, clientHasContact: f.clientHasContact ?? true,
    });
    try {
      switch (p.type) {
        case 'access.assign': decision = decideAssignment(asked()); break;
        case 'access.resend': decision = decideResend(asked(), now); break;
        case 'access.extend': decision = decideExtend(current, p.issuedAt); break;
        case 'access.revoke': decision = decideRevoke(current, p.issuedAt); break;
      }
    } catch (err) {
      if (!(err instanceof DomainError)) throw err;
      if (err.code === 'EMAIL_LINKED_TO_OTHER_PARTNER') plan.conflicts.push(p);
      plan.results.push({ ok: false, error: err });
      return;
    }
    plan.results.push({ ok: true, decision });
    if (decision.outcome === 'superseded') return;
    const prior = writes.get(pk(p));
    const issuedAt = laterOf(prior?.issuedAt ?? null, p.issuedAt);
    const lastIssuedAt = laterOf(current?.lastIssuedAt ?? null, p.issuedAt);
    if ('state' in decision && decision.outcome === 'extended') {
      // A new end, same state and request: merged into what the batch already writes on the pair.
      const until = f.accessUntil ?? null;
      const w: PlannedWrite = { ...prior, pair: prior?.pair ?? p, state: decision.state, issuedAt };
      if (w.fresh) w.fresh = { ...w.fresh, accessUntil: until };
      else w.until = { accessUntil: until };
      writes.set(pk(p), w);
      access.set(pk(p), { ...current, state: decision.state, lastIssuedAt, accessUntil: until });
    } else if ('state' in decision) {
      const seq = (current?.requestSeq ?? 0) + (decision.emailClient === true ? 1 : 0);
      // A resend keeps the pair's end; an assignment sets the end it asks for.
      const accessUntil = decision.outcome === 'resent' ? current?.accessUntil ?? null : f.accessUntil ?? null;
      const fresh: FreshPair | undefined = decision.state === 'revoked' ? undefined : { requestSeq: decision.emailClient === true ? seq : null, accessUntil };
      writes.set(pk(p), { pair: p, state: decision.state, issuedAt, ...(fresh ? { fresh } : {}) });
      access.set(pk(p), { ...current, state: decision.state, lastIssuedAt, requestSeq: seq, accessUntil, ...(decision.emailClient === true ? { lastEmailAt: now } : {}) });
      if (decision.state === 'revoked') {
        liveHere.delete(p.partnerId);
        plan.revoked.push(p);
      } else {
        liveHere.add(p.partnerId);
      }
      if (decision.emailClient === true) requests.push({ pair: p, i, seq });
    } else if (p.issuedAt && (current || p.type === 'access.revoke')) {
      // unchanged: remember the newest command seen on the pair (a revoke of a pair that never existed too)
      writes.set(pk(p), { ...prior, pair: prior?.pair ?? p, state: prior?.state ?? (current ? null : 'revoked'), issuedAt });
      access.set(pk(p), { ...current, state: current?.state ?? 'revoked', lastIssuedAt });
    }
  });

  for (const w of writes.values()) {
    if (w.state !== null) plan.stateWrites.push({ ...w, state: w.state });
    else plan.touches.push(w);
  }
  // A request is sent only when the batch leaves the pair pending with it.
  plan.requests = requests.filter((r) => {
    const w = writes.get(pk(r.pair));
    return w?.state === 'pending' && w.fresh?.requestSeq === r.seq;
  });
  return plan;
}
