/**
 * The API's conventions (contract §4–§5): cursor pagination on every list (`limit` default 100, at
 * most 1000, an opaque `cursor`, `nextCursor` null at the end), and the rate limit shared by every
 * API process (counted in Redis).
 */
import { startApp, type RunningApp } from '../../src/app.js';
import { makeApi, startService, TOKENS, type TestService } from '../helpers/harness.js';

const P = 'p-100';
const RIVAL = 'p-200';
const EMPLOYEES = 101; // one more than a default page
const CLIENTS = 5;

describe('cursor pagination of the lists', () => {
  let svc: TestService;
  const emails = Array.from({ length: EMPLOYEES }, (_, i) => `e${String(i).padStart(3, '0')}@acme.test`);
  const hubs = Array.from({ length: CLIENTS }, (_, i) => `c-${i}`);

  beforeAll(async () => {
    svc = await startService();
    const { api } = svc;
    for (const [id, name] of [[P, 'Acme Partners'], [RIVAL, 'Rival Agency']] as const) expect((await api.apply(id, { type: 'partner.upsert', name })).state).toBe('completed');
    const clients = hubs.map((hubId) => ({ type: 'client.upsert', hubId, name: `Client ${hubId}`, contactEmail: `boss@${hubId}.test` }));
    for (const p of [P, RIVAL]) expect((await api.batch(p, clients, TOKENS.platform)).status).toBe(202);
    expect((await api.batch(P, emails.map((email) => ({ type: 'employee.tag', email })))).status).toBe(202);
    expect((await api.apply(RIVAL, { type: 'employee.tag', email: emails[0] })).state).toBe('completed');
    // Three pending requests at p-100; the rival runs into three conflicts on the same pairs.
    expect((await api.apply(P, { type: 'access.assign', clientHubIds: hubs.slice(0, 3), employeeEmails: [emails[0]] })).state).toBe('completed');
    for (const hubId of hubs.slice(0, 3)) {
      expect((await api.apply(RIVAL, { type: 'access.assign', clientHubIds: [hubId], employeeEmails: [emails[0]] })).state).toBe('failed');
    }
  });
  afterAll(async () => {
    await svc?.close();
  });

  /** Every page of a list with `limit`, following nextCursor; the items in the order they came. */
  async function walk(path: string, key: string, limit: number): Promise<{ items: unknown[]; pages: number }> {
    const items: unknown[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const sep = path.includes('?') ? '&' : '?';
      const r: { status: number; body: Record<string, any> } = await svc.api.get(`${path}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      expect({ path, status: r.status }).toEqual({ path, status: 200 });
      expect(r.body[key].length).toBeLessThanOrEqual(limit);
      items.push(...r.body[key]);
      cursor = r.body.nextCursor;
      pages++;
    } while (cursor !== null && pages < 200);
    return { items, pages };
  }

  const lists = [
    { path: `/v1/partners/${P}/employees`, key: 'employees', count: EMPLOYEES },
    { path: `/v1/partners/${P}/clients`, key: 'clients', count: CLIENTS },
    { path: `/v1/partners/${RIVAL}/conflicts`, key: 'conflicts', count: 3 },
    { path: `/v1/partners/${P}/requests`, key: 'requests', count: 3 },
    { path: `/v1/partners/${P}/audit`, key: 'entries', count: 0 },
  ];

  it('when a list is read page by page, then following nextCursor yields every item once, in the order of the whole list, and ends with null', async () => {
    for (const { path, key, count } of lists) {
      const whole = await svc.api.get(`${path}${path.includes('?') ? '&' : '?'}limit=1000`);
      expect(whole.body.nextCursor).toBeNull();
      if (count) expect({ path, n: whole.body[key].length }).toEqual({ path, n: count });
      const paged = await walk(path, key, 2);
      expect({ path, items: paged.items }).toEqual({ path, items: whole.body[key] });
      expect(paged.pages).toBe(Math.max(1, Math.ceil(whole.body[key].length / 2)));
    }
  });

  it('when no limit is given, then a page holds 100 items and says where the next one starts', async () => {
    const first = await svc.api.get(`/v1/partners/${P}/employees`);
    expect(first.body.employees).toHaveLength(100);
    expect(first.body.employees[0].email).toBe(emails[0]);
    expect(first.body.nextCursor).toEqual(expect.any(String));
    const rest = await svc.api.get(`/v1/partners/${P}/employees?cursor=${encodeURIComponent(first.body.nextCursor)}`);
    expect(rest.body.employees.map((e: { email: string }) => e.email)).toEqual([emails[100]]);
    expect(rest.body.nextCursor).toBeNull();
  });

  it('when limit is over 1000, not a whole number or below 1, or the cursor is not one the list gave, then 400 VALIDATION_FAILED naming it', async () => {
    const employeesCursor = (await svc.api.get(`/v1/partners/${P}/employees?limit=1`)).body.nextCursor as string;
    for (const { path } of lists) {
      for (const [query, param] of [['limit=1001', 'limit'], ['limit=0', 'limit'], ['limit=2.5', 'limit'], ['limit=ten', 'limit'], ['cursor=%21%21', 'cursor']] as const) {
        const r = await svc.api.get(`${path}?${query}`);
        expect({ path, query, status: r.status, code: r.body.error?.code, paths: r.body.error?.issues?.map((i: { path: string }) => i.path) }).toEqual({ path, query, status: 400, code: 'VALIDATION_FAILED', paths: [param] });
      }
    }
    // Another list's cursor is not this list's.
    expect((await svc.api.get(`/v1/partners/${RIVAL}/conflicts?cursor=${encodeURIComponent(employeesCursor)}`)).status).toBe(400);
  });
});

describe('the rate limit across API processes', () => {
  let svc: TestService;
  let second: RunningApp;

  beforeAll(async () => {
    svc = await startService({ ROLES: 'api', RATE_LIMIT_PER_MINUTE: '4' });
    second = await startApp({ ...svc.config, roles: new Set(['api']) });
  });
  afterAll(async () => {
    await second?.close();
    await svc?.close();
  });

  it('when one token spreads its requests over two API processes, then they count together: the fifth gets 429 with Retry-After; another token and the probes are not limited', async () => {
    const one = svc.api;
    const two = makeApi(second.url!);
    const replies = [];
    for (const api of [one, two, one, two, one]) replies.push(await api.get(`/v1/partners/${P}/clients`, TOKENS.reader));
    expect(replies.map((r) => r.status)).toEqual([404, 404, 404, 404, 429]);
    const limited = replies[4]!;
    expect(limited.body.error).toMatchObject({ code: 'RATE_LIMITED', requestId: limited.headers.get('x-request-id') });
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await two.get(`/v1/partners/${P}/clients`, TOKENS.reader)).status).toBe(429);
    expect((await two.get(`/v1/partners/${P}/clients`, TOKENS.crm)).status).toBe(404);
    for (let i = 0; i < 6; i++) expect((await two.request('GET', '/healthz', { token: null })).status).toBe(200);
  });
});
