import type { Em } from '../../db/orm.js';
import type { Issue } from '../../commands/schemas.js';
import { listRequests as listRequestRows, listUpcomingRenewals, type RequestCursor } from '../../db/read-store.js';

/**
 * The reads of contract §5 about access requests and renewals: `GET …/requests` (the requests that
 * wait for a client, with their age; `employees:read`) and `GET …/renewals` (the clients behind
 * `alerts.upcomingRenewals`).
 */

const requestStates = ['pending', 'declined', 'expired'] as const;
type RequestState = (typeof requestStates)[number];

/** The query of `GET …/requests`, checked. */
export interface RequestsQuery { state: RequestState; olderThanSecs: number | null; limit: number; after: RequestCursor | null }

const encodeCursor = (c: RequestCursor) => Buffer.from(JSON.stringify([c.requestedAt, c.hubId, c.email])).toString('base64url');
function decodeCursor(s: string): RequestCursor | null {
  try {
    const v: unknown = JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
    if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === 'string' && x.length <= 300)) return null;
    const [requestedAt, hubId, email] = v as [string, string, string];
    return /^\d{4}-\d{2}-\d{2}[ T][0-9:.]+([+-][0-9:]+|Z)?$/.test(requestedAt) ? { requestedAt, hubId, email } : null;
  } catch {
    return null;
  }
}

/**
 * Checks `state` (pending, declined or expired; default pending), `olderThanDays` (a number of
 * days ≥ 0, decimals allowed), `limit` (1–1000, default 100) and `cursor` (a `nextCursor`).
 */
export function parseRequestsQuery(q: Record<string, unknown>): { ok: true; query: RequestsQuery } | { ok: false; issues: Issue[] } {
  const issues: Issue[] = [];
  const one = (k: string) => (Array.isArray(q[k]) ? undefined : (q[k] as string | undefined));
  const state = one('state') ?? 'pending';
  if (!(requestStates as readonly string[]).includes(state)) issues.push({ path: 'state', message: `must be one of ${requestStates.join(', ')}` });
  const older = one('olderThanDays');
  const olderDays = older === undefined ? null : Number(older);
  if (olderDays !== null && (older!.trim() === '' || !Number.isFinite(olderDays) || olderDays < 0 || olderDays > 36_500)) issues.push({ path: 'olderThanDays', message: 'must be a number of days from 0 to 36500' });
  const rawLimit = one('limit');
  const limit = rawLimit === undefined ? 100 : Number(rawLimit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) issues.push({ path: 'limit', message: 'must be an integer from 1 to 1000' });
  const rawCursor = one('cursor');
  const after = rawCursor === undefined ? null : decodeCursor(rawCursor);
  if (rawCursor !== undefined && after === null) issues.push({ path: 'cursor', message: 'is not a cursor this list gave' });
  for (const k of Object.keys(q)) if (!['state', 'olderThanDays', 'limit', 'cursor'].includes(k) || Array.isArray(q[k])) issues.push({ path: k, message: Array.isArray(q[k]) ? 'must be given once' : 'unknown parameter' });
  if (issues.length) return { ok: false, issues };
  return { ok: true, query: { state: state as RequestState, olderThanSecs: olderDays === null ? null : olderDays * 86_400, limit, after } };
}

const iso = (v: string | null) => (v === null ? null : new Date(v).toISOString());

/** Contract §5: the partner's requests in a state, oldest first, with their age; one page and the cursor of the next. */
export async function listRequests(em: Em, partnerId: string, q: RequestsQuery) {
  const found = await listRequestRows(em, partnerId, { ...q, limit: q.limit + 1 });
  const page = found.slice(0, q.limit);
  const last = page.at(-1);
  return {
    requests: page.map((r) => ({
      clientHubId: r.hubId,
      employeeEmail: r.email,
      state: r.state,
      requestedAt: iso(r.requestedAt),
      expiresAt: iso(r.expiresAt),
      lastEmailAt: iso(r.lastEmailAt),
      reminders: r.reminders,
      ageSeconds: Math.floor(r.ageSeconds),
    })),
    nextCursor: found.length > q.limit && last ? encodeCursor({ requestedAt: last.cursorAt, hubId: last.hubId, email: last.email }) : null,
  };
}

/** Contract §5: the clients behind `alerts.upcomingRenewals` (renewal within RENEWAL_ALERT_DAYS from today, UTC), soonest first. */
export async function listRenewals(em: Em, partnerId: string, opts: { now: Date; renewalAlertDays: number }) {
  const rows = await listUpcomingRenewals(em, partnerId, opts.now.toISOString().slice(0, 10), opts.renewalAlertDays);
  return { renewals: rows.map((r) => ({ hubId: r.hubId, name: r.name, renewalDate: r.renewalDate, renewalOwner: r.renewalOwner ?? null, products: r.products })) };
}
