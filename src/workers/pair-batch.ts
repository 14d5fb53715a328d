import { randomBytes } from 'node:crypto';
import type { Em } from '../db/orm.js';
import { decideAssignment, decideRevoke, laterOf, type AccessFacts, type AccessState, type Decision } from '../domain/access.js';
import { DomainError } from '../domain/errors.js';
import { hashToken, type PairRef } from './access.js';

export interface BatchPair extends PairRef {
  type: 'access.assign' | 'access.revoke';
  idx: number;
}

export type PairOutcomeOrError = { ok: true; decision: Decision; outboxId?: string } | { ok: false; error: DomainError };

interface Facts {
  i: number;
  employee: { tagged: boolean; status: 'active' | 'removed' } | null;
  client: { status: 'active' | 'terminated' } | null;
  live: string[] | null;
  portal: boolean;
  access: { state: AccessState; last_issued_at: string | null } | null;
}

/** The notification key of a pair's grant email (once per command and pair), and the same over a command_item row `i` in SQL. */
const pendingKey = (p: { commandId: string; hubId: string; email: string }) => `access.pending:${p.commandId}:${p.hubId}:${p.email}`;
export const PENDING_KEY_SQL = `'access.pending:' || i.command_id || ':' || i.hub_id || ':' || i.email`;

const pk = (p: { partnerId: string; hubId: string; email: string }) => `${p.partnerId}\n${p.hubId}\n${p.email}`;
const hk = (p: { hubId: string; email: string }) => `${p.hubId}\n${p.email}`;
const iso = (d: Date | null) => d?.toISOString() ?? null;

/**
 * Applies a batch of `access.assign` / `access.revoke` pairs in the caller's transaction with a
 * fixed number of set-based statements, whatever the batch size: lock every (client, email) in a
 * stable order, read every fact in one query, decide each pair in order with the pure domain
 * functions (later pairs see the effect of earlier ones in the same batch), then write accesses,
 * grant tokens, outbox rows and conflicts in one statement each. With `mailClaimMs`, the outbox rows
 * are written claimed for that long (the caller sends them right after the commit). The unique index on live
 * (client, email) rows stays the backstop; a violation aborts the batch (the caller retries pair by pair).
 */
export async function applyPairBatch(tx: Em, pairs: BatchPair[], grantTtlDays: number, mailClaimMs: number | null = null): Promise<PairOutcomeOrError[]> {
  await tx.execute(
    `select count(pg_advisory_xact_lock(k)) from (select distinct hashtextextended(x, 0) as k from jsonb_array_elements_text(?::jsonb) as x order by 1) s`,
    [JSON.stringify(pairs.map(hk))],
  );
  const rows = await tx.execute<Facts[]>(
    `select t.i,
       case when t.assign then (select row_to_json(e) from (select tagged, status from employee where partner_id = t.partner_id and email = t.email for share) e) end as employee,
       case when t.assign then (select row_to_json(c) from (select status from client where partner_id = t.partner_id and hub_id = t.hub_id for share) c) end as client,
       (select json_agg(partner_id) from access where hub_id = t.hub_id and email = t.email and state in ('pending', 'active')) as live,
       exists (select 1 from portal_user where hub_id = t.hub_id and email = t.email) as portal,
       (select row_to_json(a) from (select state, last_issued_at from access where partner_id = t.partner_id and hub_id = t.hub_id and email = t.email) a) as access
     from jsonb_to_recordset(?::jsonb) as t(i int, partner_id text, hub_id text, email text, assign boolean)`,
    [JSON.stringify(pairs.map((p, i) => ({ i, partner_id: p.partnerId, hub_id: p.hubId, email: p.email, assign: p.type === 'access.assign' })))],
  );
  const facts = new Map(rows.map((r) => [r.i, r]));

  // The batch's own view of the world, updated as each pair is decided.
  const access = new Map<string, AccessFacts | null>();
  const live = new Map<string, Set<string>>();
  for (const [i, f] of facts) {
    const p = pairs[i]!;
    if (!access.has(pk(p))) access.set(pk(p), f.access ? { state: f.access.state, lastIssuedAt: f.access.last_issued_at ? new Date(f.access.last_issued_at) : null } : null);
    if (!live.has(hk(p))) live.set(hk(p), new Set(f.live ?? []));
  }
  const writes = new Map<string, { p: BatchPair; state: AccessState | null; issuedAt: Date | null }>();
  const pending: { p: BatchPair; token: string; i: number }[] = [];
  const revoked: BatchPair[] = [];
  const conflicts: BatchPair[] = [];
  const results: PairOutcomeOrError[] = [];

  pairs.forEach((p, i) => {
    const f = facts.get(i)!;
    const current = access.get(pk(p)) ?? null;
    const liveHere = live.get(hk(p))!;
    let decision: Decision;
    try {
      decision = p.type === 'access.assign'
        ? decideAssignment({ employee: f.employee, client: f.client, access: current, linkedToOtherPartner: [...liveHere].some((x) => x !== p.partnerId), isPortalUser: f.portal, issuedAt: p.issuedAt })
        : decideRevoke(current, p.issuedAt);
    } catch (err) {
      if (!(err instanceof DomainError)) throw err;
      if (err.code === 'EMAIL_LINKED_TO_OTHER_PARTNER') conflicts.push(p);
      results.push({ ok: false, error: err });
      return;
    }
    results.push({ ok: true, decision });
    if (decision.outcome === 'superseded') return;
    const prior = writes.get(pk(p));
    if ('state' in decision) {
      writes.set(pk(p), { p, state: decision.state, issuedAt: laterOf(prior?.issuedAt ?? null, p.issuedAt) });
      access.set(pk(p), { state: decision.state, lastIssuedAt: laterOf(current?.lastIssuedAt ?? null, p.issuedAt) });
      if (decision.state === 'revoked') {
        liveHere.delete(p.partnerId);
        revoked.push(p);
      } else {
        liveHere.add(p.partnerId);
      }
      if (decision.outcome === 'pending') pending.push({ p, token: randomBytes(32).toString('base64url'), i });
    } else if (p.issuedAt && (current || p.type === 'access.revoke')) {
      // unchanged: remember the newest command seen on the pair (a revoke of a pair that never existed too)
      writes.set(pk(p), { p, state: prior?.state ?? (current ? null : 'revoked'), issuedAt: laterOf(prior?.issuedAt ?? null, p.issuedAt) });
      access.set(pk(p), { state: current?.state ?? 'revoked', lastIssuedAt: laterOf(current?.lastIssuedAt ?? null, p.issuedAt) });
    }
  });

  const stateWrites = [...writes.values()].filter((w) => w.state !== null);
  const touches = [...writes.values()].filter((w) => w.state === null);
  if (stateWrites.length) {
    await tx.execute(
      `insert into access (partner_id, hub_id, email, state, last_issued_at, command_id)
       select t.partner_id, t.hub_id, t.email, t.state, t.issued_at, t.command_id
         from jsonb_to_recordset(?::jsonb) as t(partner_id text, hub_id text, email text, state text, issued_at timestamptz, command_id text)
       on conflict (partner_id, hub_id, email) do update set
         state = excluded.state, last_issued_at = greatest(access.last_issued_at, excluded.last_issued_at),
         command_id = excluded.command_id, updated_at = now()`,
      [JSON.stringify(stateWrites.map((w) => ({ partner_id: w.p.partnerId, hub_id: w.p.hubId, email: w.p.email, state: w.state, issued_at: iso(w.issuedAt), command_id: w.p.commandId })))],
    );
  }
  if (touches.length) {
    await tx.execute(
      `update access a set last_issued_at = greatest(a.last_issued_at, t.issued_at)
         from jsonb_to_recordset(?::jsonb) as t(partner_id text, hub_id text, email text, issued_at timestamptz)
        where a.partner_id = t.partner_id and a.hub_id = t.hub_id and a.email = t.email`,
      [JSON.stringify(touches.map((w) => ({ partner_id: w.p.partnerId, hub_id: w.p.hubId, email: w.p.email, issued_at: iso(w.issuedAt) })))],
    );
  }
  if (revoked.length) {
    await tx.execute(
      `update grant_token g set expires_at = least(g.expires_at, now())
         from jsonb_to_recordset(?::jsonb) as t(partner_id text, hub_id text, email text)
        where g.partner_id = t.partner_id and g.hub_id = t.hub_id and g.email = t.email and g.used_at is null and g.expires_at > now()`,
      [JSON.stringify(revoked.map((p) => ({ partner_id: p.partnerId, hub_id: p.hubId, email: p.email })))],
    );
  }
  if (pending.length) {
    const outbox = await tx.execute<{ id: string; notification_key: string }[]>(
      `with t as (select * from jsonb_to_recordset(?::jsonb) as t(token_hash text, partner_id text, hub_id text, email text, key text, payload jsonb)),
            g as (insert into grant_token (token_hash, partner_id, hub_id, email, expires_at)
                  select token_hash, partner_id, hub_id, email, now() + make_interval(days => ?) from t)
       insert into outbox (notification_key, kind, partner_id, payload, claimed_until)
       select key, 'access.pending', partner_id, payload, now() + make_interval(secs => ?::double precision) from t
       on conflict (notification_key) do nothing returning id, notification_key`,
      [JSON.stringify(pending.map(({ p, token }) => ({
        token_hash: hashToken(token), partner_id: p.partnerId, hub_id: p.hubId, email: p.email,
        key: pendingKey(p), payload: { hubId: p.hubId, email: p.email, token },
      }))), grantTtlDays, mailClaimMs === null ? null : mailClaimMs / 1000],
    );
    const byKey = new Map(outbox.map((o) => [o.notification_key, String(o.id)]));
    for (const { p, i } of pending) {
      const id = byKey.get(pendingKey(p));
      const r = results[i];
      if (id && r?.ok) r.outboxId = id;
    }
  }
  if (conflicts.length) {
    await tx.execute(
      `insert into conflict (partner_id, hub_id, email, command_id)
       select partner_id, hub_id, email, command_id from jsonb_to_recordset(?::jsonb) as t(partner_id text, hub_id text, email text, command_id text)
       on conflict do nothing`,
      [JSON.stringify(conflicts.map((p) => ({ partner_id: p.partnerId, hub_id: p.hubId, email: p.email, command_id: p.commandId })))],
    );
  }
  return results;
}
