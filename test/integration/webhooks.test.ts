/**
 * Webhooks (contract §8) end to end: a receiver HTTP server on loopback, a service with
 * WEBHOOK_ALLOW_PRIVATE=true (so it may send there) and short retries, and a service without it.
 * Signatures are checked with the receiver side of the same Standard Webhooks library
 * (`Webhook.verify`). The crash and Redis-flush cases run the service as child processes.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import pg from 'pg';
import { Webhook } from 'standardwebhooks';
import { dropDatabase } from '../../src/db/orm.js';
import { grantToken } from '../../src/lib/grant-link.js';
import { apiTokens, dropQueues, makeApi, spawnService, startService, testEnv, TOKENS, waitFor, type Api, type ChildService, type TestService } from '../helpers/harness.js';
import { startSmtp, type TestSmtp } from '../helpers/smtp.js';

/** A token that may manage p-100's webhooks and nothing else. */
const HOOKS_TOKEN = 'tok-hooks-p100-000000';
const TOKENS_WITH_HOOKS = JSON.stringify([...apiTokens, { token: HOOKS_TOKEN, name: 'hooks', partners: ['p-100'], scopes: ['webhooks:write'] }]);

// ---- the receiver -------------------------------------------------------------------------------

interface Received { path: string; headers: Record<string, string>; body: string; status: number | 'held' }

/**
 * What the receiver answers the n-th request (0-based) to a path: a status, or `hold` (no answer
 * until the test releases it). Unscripted paths answer 200.
 */
type Script = (n: number) => number | 'hold';

interface Receiver {
  url: string;
  received: Received[];
  script(path: string, s: Script): void;
  /** Requests to a path, in arrival order. */
  at(path: string): Received[];
  /** Requests to a path that were answered 2xx, in order. */
  acked(path: string): Received[];
  /** Answers every held request (with `status`) and stops holding. */
  release(status: number): void;
  close(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const received: Received[] = [];
  const scripts = new Map<string, Script>();
  const counts = new Map<string, number>();
  const held: { res: ServerResponse; entry: Received }[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      const n = counts.get(path) ?? 0;
      counts.set(path, n + 1);
      const answer = (scripts.get(path) ?? (() => 200))(n);
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(',') : v ?? '']));
      const entry: Received = { path, headers, body: Buffer.concat(chunks).toString('utf8'), status: answer === 'hold' ? 'held' : answer };
      received.push(entry);
      if (answer === 'hold') held.push({ res, entry });
      else res.writeHead(answer).end();
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    received,
    script: (path, s) => { scripts.set(path, s); },
    at: (path) => received.filter((r) => r.path === path),
    acked: (path) => received.filter((r) => r.path === path && typeof r.status === 'number' && r.status >= 200 && r.status < 300),
    release(status) {
      for (const h of held.splice(0)) {
        h.entry.status = status;
        if (!h.res.destroyed) h.res.writeHead(status).end();
      }
    },
    close: () => new Promise<void>((resolve) => {
      for (const h of held.splice(0)) h.res.destroy();
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

/** The body of a received webhook, verified with the subscription's secret (throws if the signature does not hold). */
function verified(secret: string, r: Received): { id: string; type: string; partnerId: string; createdAt: string; data: Record<string, unknown> } {
  return new Webhook(secret).verify(r.body, r.headers) as ReturnType<typeof verified>;
}

// ---- set-up -------------------------------------------------------------------------------------

let receiver: Receiver;
let svc: TestService;
let strict: TestService;

beforeAll(async () => {
  receiver = await startReceiver();
  svc = await startService({ WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_BASE_MS: '100', LIFECYCLE_SWEEP_MS: '250', API_TOKENS: TOKENS_WITH_HOOKS });
  strict = await startService({ ROLES: 'api', API_TOKENS: TOKENS_WITH_HOOKS });
}, 60_000);

afterAll(async () => {
  await svc?.close();
  await strict?.close();
  await receiver?.close();
});

const ok = async (s: TestService, partnerId: string, command: Record<string, unknown>) => {
  const r = await s.api.apply(partnerId, command);
  expect({ type: command.type, state: r.state, error: r.error }).toEqual({ type: command.type, state: 'completed', error: undefined });
  return r;
};
const subscribe = (api: Api, partnerId: string, body: unknown, token: string = TOKENS.admin) => api.request('POST', `/v1/partners/${partnerId}/webhooks`, { token, body });
/** A partner and a subscription of it to `events` at `path` of the receiver; returns its id and secret. */
async function partnerWithHook(partnerId: string, path: string, events: string[]): Promise<{ id: string; secret: string }> {
  await ok(svc, partnerId, { type: 'partner.upsert', commandId: `up-${partnerId}`, name: `Partner ${partnerId}` });
  const r = await subscribe(svc.api, partnerId, { url: `${receiver.url}${path}`, events });
  expect(r.status).toBe(201);
  return { id: r.body.id, secret: r.body.secret };
}
const countRows = async (s: TestService, table: 'webhook' | 'webhook_event' | 'webhook_delivery') => Number((await s.sql<{ n: string }>(`select count(*) as n from ${table}`))[0]!.n);

// ---- tests --------------------------------------------------------------------------------------

describe('webhook subscriptions (contract §8)', () => {
  it('when a partner subscribes, then it gets 201 with a whsec_ secret once, the list shows the webhook without the secret, and DELETE ends it (204, then 404)', async () => {
    await ok(svc, 'p-100', { type: 'partner.upsert', commandId: 'up-p-100', name: 'Acme' });
    const created = await subscribe(svc.api, 'p-100', { url: `${receiver.url}/listed`, events: ['access.pending', 'access.pending', 'command.failed'], description: 'CRM' }, HOOKS_TOKEN);
    expect(created.status).toBe(201);
    expect(created.body).toEqual({ id: expect.stringMatching(/^wh_[0-9a-f]{24}$/), url: `${receiver.url}/listed`, events: ['access.pending', 'command.failed'], description: 'CRM', createdAt: expect.any(String), secret: expect.stringMatching(/^whsec_[A-Za-z0-9+/]{43}=$/) });
    expect(Buffer.from(created.body.secret.slice('whsec_'.length), 'base64')).toHaveLength(32);

    const list = await svc.api.get('/v1/partners/p-100/webhooks', HOOKS_TOKEN);
    expect(list.status).toBe(200);
    const mine = list.body.webhooks.find((w: { id: string }) => w.id === created.body.id);
    expect(mine).toEqual({ id: created.body.id, url: `${receiver.url}/listed`, events: ['access.pending', 'command.failed'], description: 'CRM', createdAt: created.body.createdAt });
    expect(JSON.stringify(list.body)).not.toContain('whsec_');
    expect(list.body.nextCursor).toBeNull();

    const del = await svc.api.request('DELETE', `/v1/partners/p-100/webhooks/${created.body.id}`, { token: HOOKS_TOKEN });
    expect(del.status).toBe(204);
    const after = await svc.api.get('/v1/partners/p-100/webhooks', HOOKS_TOKEN);
    expect(after.body.webhooks.map((w: { id: string }) => w.id)).not.toContain(created.body.id);
    expect((await svc.api.request('DELETE', `/v1/partners/p-100/webhooks/${created.body.id}`, { token: HOOKS_TOKEN })).status).toBe(404);
  });

  it('when the URL is bad, the events unknown or empty, or a field unknown, then 400 VALIDATION_FAILED names the path and nothing is stored', async () => {
    await ok(svc, 'p-100', { type: 'partner.upsert', commandId: 'up-p-100', name: 'Acme' });
    const before = await countRows(svc, 'webhook');
    const cases: [unknown, string][] = [
      [{ url: 'ftp://hooks.example.com/x', events: ['access.pending'] }, 'url'],
      [{ url: 'not a url', events: ['access.pending'] }, 'url'],
      [{ url: 'https://user:secret@hooks.example.com/x', events: ['access.pending'] }, 'url'],
      [{ url: `https://hooks.example.com/${'a'.repeat(2048)}`, events: ['access.pending'] }, 'url'],
      [{ url: 'https://hooks.example.com/x', events: ['access.pending', 'access.nope'] }, 'events.1'],
      [{ url: 'https://hooks.example.com/x', events: [] }, 'events'],
      [{ url: 'https://hooks.example.com/x' }, 'events'],
      [{ events: ['access.pending'] }, 'url'],
      [{ url: 'https://hooks.example.com/x', events: ['access.pending'], secret: 'mine' }, 'secret'],
    ];
    for (const [body, path] of cases) {
      const r = await subscribe(svc.api, 'p-100', body);
      expect({ body, status: r.status, code: r.body.error.code }).toEqual({ body, status: 400, code: 'VALIDATION_FAILED' });
      expect(r.body.error.issues.map((i: { path: string }) => i.path)).toContain(path);
    }
    expect(await countRows(svc, 'webhook')).toBe(before);
  });

  it('when WEBHOOK_ALLOW_PRIVATE is not set, then a target on loopback, private or link-local addresses is refused with 400 and nothing is stored', async () => {
    // An api-only service applies no command: the partner is written straight into its database.
    await strict.sql(`insert into partner (id, name) values ('p-100', 'Acme') on conflict do nothing`);
    const targets = [
      `${receiver.url}/refused`, 'http://localhost:8080/', 'http://api.localhost/', 'http://[::1]:8080/', 'http://10.1.2.3/', 'http://172.20.0.1/',
      'http://192.168.1.10/', 'http://169.254.169.254/latest/meta-data', 'http://0.0.0.0/', 'http://[::ffff:127.0.0.1]/', 'http://[fd00::1]/',
      'http://[fe80::1]/', 'http://2130706433/', 'http://0x7f.1/',
    ];
    for (const url of targets) {
      const r = await subscribe(strict.api, 'p-100', { url, events: ['access.pending'] });
      expect({ url, status: r.status, code: r.body.error?.code, issue: r.body.error?.issues?.[0]?.path }).toEqual({ url, status: 400, code: 'VALIDATION_FAILED', issue: 'url' });
    }
    expect(await countRows(strict, 'webhook')).toBe(0);
    // A public name is accepted (its addresses are checked again at every send).
    expect((await subscribe(strict.api, 'p-100', { url: 'https://hooks.example.com/in', events: ['access.pending'] })).status).toBe(201);
  });

  it('when a token lacks webhooks:write, acts for another partner, or names another partner\'s webhook, then 403 or 404 and nothing changes', async () => {
    await ok(svc, 'p-100', { type: 'partner.upsert', commandId: 'up-p-100', name: 'Acme' });
    const theirs = await partnerWithHook('p-200', '/theirs', ['command.completed']);
    const body = { url: `${receiver.url}/x`, events: ['access.pending'] };
    const before = await countRows(svc, 'webhook');
    expect((await subscribe(svc.api, 'p-100', body, TOKENS.crm)).status).toBe(403);
    expect((await subscribe(svc.api, 'p-200', body, HOOKS_TOKEN)).status).toBe(403);
    expect((await svc.api.get('/v1/partners/p-100/webhooks', TOKENS.reader)).status).toBe(403);
    expect((await subscribe(svc.api, 'p-unknown', body)).status).toBe(404);
    expect(await countRows(svc, 'webhook')).toBe(before);

    // p-100's token, p-100's path, p-200's webhook: unknown.
    expect((await svc.api.request('DELETE', `/v1/partners/p-100/webhooks/${theirs.id}`, { token: HOOKS_TOKEN })).status).toBe(404);
    expect((await svc.api.get(`/v1/partners/p-100/webhooks/${theirs.id}/deliveries`, HOOKS_TOKEN)).status).toBe(404);
    expect((await svc.api.request('POST', `/v1/partners/p-100/webhooks/${theirs.id}/deliveries/1/redeliver`, { token: HOOKS_TOKEN })).status).toBe(404);
    const still = await svc.api.get('/v1/partners/p-200/webhooks');
    expect(still.body.webhooks.map((w: { id: string }) => w.id)).toContain(theirs.id);
  });
});

describe('webhook deliveries (contract §8)', () => {
  it('when each kind of change happens to a subscribed partner, then every event type arrives once with a valid Standard Webhooks signature and the contract\'s body', async () => {
    const hook = await partnerWithHook('p-ev', '/all', [
      'access.pending', 'access.active', 'access.declined', 'access.expired', 'access.revoked', 'access.conflict', 'command.completed', 'command.failed', 'credit.recalculated',
    ]);
    await ok(svc, 'p-rival', { type: 'partner.upsert', commandId: 'up-p-rival', name: 'Rival' });
    await ok(svc, 'p-rival', { type: 'employee.tag', commandId: 'ev-rival-tag', email: 'bob@ev.test' });
    await ok(svc, 'p-rival', { type: 'client.upsert', commandId: 'ev-rival-c4', hubId: 'ev-c4', name: 'Four', contactEmail: 'boss@c4.test' });
    await ok(svc, 'p-rival', { type: 'access.assign', commandId: 'ev-rival-assign', clientHubIds: ['ev-c4'], employeeEmails: ['bob@ev.test'] });

    for (const email of ['ann@ev.test', 'bob@ev.test']) await ok(svc, 'p-ev', { type: 'employee.tag', commandId: `ev-tag-${email.split('@')[0]}`, email });
    for (const hub of ['ev-c1', 'ev-c2', 'ev-c3', 'ev-c4']) await ok(svc, 'p-ev', { type: 'client.upsert', commandId: `ev-up-${hub}`, hubId: hub, name: hub, contactEmail: `boss@${hub}.test` });
    await ok(svc, 'p-ev', { type: 'access.assign', commandId: 'ev-assign-1', clientHubIds: ['ev-c1', 'ev-c2'], employeeEmails: ['ann@ev.test'] });
    await ok(svc, 'p-ev', { type: 'access.grant', commandId: 'ev-grant', clientHubId: 'ev-c1', employeeEmail: 'ann@ev.test' });
    const [{ seq }] = await svc.sql<{ seq: number }>(`select request_seq as seq from access where partner_id = 'p-ev' and hub_id = 'ev-c2'`) as [{ seq: number }];
    const token = grantToken(svc.config.grantLinkSecret, { partnerId: 'p-ev', hubId: 'ev-c2', email: 'ann@ev.test', seq });
    const declined = await svc.api.request('POST', `/v1/grants/${token}`, { token: null, rawBody: 'decision=decline', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(declined.status).toBe(200);
    await ok(svc, 'p-ev', { type: 'access.revoke', commandId: 'ev-revoke', clientHubIds: ['ev-c1'], employeeEmails: ['ann@ev.test'] });
    await ok(svc, 'p-ev', { type: 'access.assign', commandId: 'ev-assign-until', clientHubIds: ['ev-c3'], employeeEmails: ['ann@ev.test'], accessUntil: new Date(Date.now() + 1500).toISOString() });
    const conflict = await svc.api.apply('p-ev', { type: 'access.assign', commandId: 'ev-conflict', clientHubIds: ['ev-c4'], employeeEmails: ['bob@ev.test'] });
    expect(conflict.state).toBe('failed');
    await ok(svc, 'p-ev', { type: 'credit.recalculate', commandId: 'ev-credit' });

    const types = ['access.pending', 'access.active', 'access.declined', 'access.expired', 'access.revoked', 'access.conflict', 'command.completed', 'command.failed', 'credit.recalculated'];
    await waitFor(() => types.every((t) => receiver.acked('/all').some((r) => verified(hook.secret, r).type === t)), { timeoutMs: 20_000, what: 'every event type at the receiver' });

    const events = receiver.acked('/all').map((r) => ({ r, body: verified(hook.secret, r) }));
    for (const { r, body } of events) {
      expect(r.headers['webhook-id']).toBe(body.id);
      expect(body.id).toMatch(/^evt_[0-9a-f]{32}$/);
      expect(Math.abs(Number(r.headers['webhook-timestamp']) - Date.now() / 1000)).toBeLessThan(60);
      expect(r.headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
      expect(r.headers['content-type']).toBe('application/json');
      expect(Object.keys(body)).toEqual(['id', 'type', 'partnerId', 'createdAt', 'data']);
      expect(body.partnerId).toBe('p-ev');
      expect(new Date(body.createdAt).toISOString()).toBe(body.createdAt);
      // A wrong secret does not verify.
      expect(() => new Webhook(`whsec_${Buffer.alloc(32, 1).toString('base64')}`).verify(r.body, r.headers)).toThrow();
    }
    const ids = events.map((e) => e.body.id);
    expect(new Set(ids).size).toBe(ids.length);
    const access = (type: string, hub: string) => events.filter((e) => e.body.type === type && e.body.data.clientHubId === hub).map((e) => e.body.data);
    expect(access('access.pending', 'ev-c1')).toEqual([{ clientHubId: 'ev-c1', employeeEmail: 'ann@ev.test', commandId: 'ev-assign-1' }]);
    expect(access('access.active', 'ev-c1')).toEqual([{ clientHubId: 'ev-c1', employeeEmail: 'ann@ev.test', commandId: 'ev-grant' }]);
    expect(access('access.declined', 'ev-c2')).toEqual([{ clientHubId: 'ev-c2', employeeEmail: 'ann@ev.test', commandId: expect.stringMatching(/^grant-link\./) }]);
    expect(access('access.revoked', 'ev-c1')).toEqual([{ clientHubId: 'ev-c1', employeeEmail: 'ann@ev.test', commandId: 'ev-revoke' }]);
    expect(access('access.expired', 'ev-c3')).toEqual([{ clientHubId: 'ev-c3', employeeEmail: 'ann@ev.test', commandId: null }]);
    expect(access('access.conflict', 'ev-c4')).toEqual([{ clientHubId: 'ev-c4', employeeEmail: 'bob@ev.test', commandId: 'ev-conflict' }]);
    const command = (type: string, id: string) => events.filter((e) => e.body.type === type && e.body.data.commandId === id).map((e) => e.body.data);
    expect(command('command.completed', 'ev-revoke')).toEqual([{ commandId: 'ev-revoke', commandType: 'access.revoke', state: 'completed', result: expect.objectContaining({ pairs: 1, outcome: 'revoked' }), error: null }]);
    expect(command('command.completed', 'ev-grant')).toEqual([{ commandId: 'ev-grant', commandType: 'access.grant', state: 'completed', result: { outcome: 'active' } }]);
    expect(command('command.failed', 'ev-conflict')).toEqual([{ commandId: 'ev-conflict', commandType: 'access.assign', state: 'failed', result: expect.anything(), error: expect.objectContaining({ code: 'EMAIL_LINKED_TO_OTHER_PARTNER' }) }]);
    // The rival partner's identity is not in p-ev's events.
    expect(JSON.stringify(events.map((e) => e.body))).not.toContain('p-rival');
    const credit = events.filter((e) => e.body.type === 'credit.recalculated' && e.body.data.commandId === 'ev-credit').map((e) => e.body.data);
    expect(credit).toEqual([expect.objectContaining({ commandId: 'ev-credit', month: expect.stringMatching(/^\d{4}-\d{2}$/), tier: expect.any(String), soldTierCredit: expect.any(Number) })]);
    // The rival (no subscription) has no event written at all.
    expect(await svc.sql(`select id from webhook_event where partner_id = 'p-rival'`)).toEqual([]);
  }, 40_000);

  it('when the receiver answers 500 twice and then 200, then it gets the event three times with the same webhook-id, and the delivery log says so', async () => {
    const hook = await partnerWithHook('p-flaky', '/flaky', ['command.completed']);
    receiver.script('/flaky', (n) => (n < 2 ? 500 : 200));
    await ok(svc, 'p-flaky', { type: 'employee.tag', commandId: 'flaky-tag', email: 'x@flaky.test' });
    await waitFor(() => receiver.acked('/flaky').length === 1, { timeoutMs: 15_000, what: 'the third attempt to be acknowledged' });
    const got = receiver.at('/flaky');
    expect(got.map((r) => r.status)).toEqual([500, 500, 200]);
    expect(new Set(got.map((r) => r.headers['webhook-id'])).size).toBe(1);
    for (const r of got) expect(verified(hook.secret, r).data.commandId).toBe('flaky-tag');

    // The receiver has answered; the worker records the attempt right after, so the log is polled for it.
    const deliveries = () => svc.api.get(`/v1/partners/p-flaky/webhooks/${hook.id}/deliveries`);
    let log = await deliveries();
    await waitFor(async () => {
      log = await deliveries();
      return log.body.deliveries?.[0]?.state === 'delivered';
    }, { timeoutMs: 10_000, what: 'the delivery log to record the acknowledged attempt' });
    expect(log.status).toBe(200);
    expect(log.body).toEqual({
      deliveries: [{
        id: expect.stringMatching(/^\d+$/), eventId: got[0]!.headers['webhook-id'], eventType: 'command.completed', state: 'delivered', attempts: 3, lastStatus: 200, lastError: null,
        lastAttemptAt: expect.any(String), nextRetryAt: null, createdAt: expect.any(String), deliveredAt: expect.any(String),
      }],
      nextCursor: null,
    });

    // Redeliver: once more, the same webhook-id.
    const again = await svc.api.request('POST', `/v1/partners/p-flaky/webhooks/${hook.id}/deliveries/${log.body.deliveries[0].id}/redeliver`);
    expect(again.status).toBe(202);
    expect(again.body).toEqual({ deliveryId: log.body.deliveries[0].id, state: 'pending' });
    await waitFor(() => receiver.acked('/flaky').length === 2, { timeoutMs: 10_000, what: 'the redelivery' });
    expect(receiver.acked('/flaky')[1]!.headers['webhook-id']).toBe(got[0]!.headers['webhook-id']);
    expect(verified(hook.secret, receiver.acked('/flaky')[1]!).id).toBe(got[0]!.headers['webhook-id']);
    expect((await svc.api.request('POST', `/v1/partners/p-flaky/webhooks/${hook.id}/deliveries/999999/redeliver`)).status).toBe(404);
  }, 30_000);

  it('when the receiver answers 410 Gone, then the subscription ends: it is no longer listed, its pending deliveries are dropped and no later event is written for it', async () => {
    const hook = await partnerWithHook('p-gone', '/gone', ['command.completed']);
    // The first request is held until a second event is pending behind it; then the receiver says 410.
    receiver.script('/gone', (n) => (n === 0 ? 'hold' : 410));
    await ok(svc, 'p-gone', { type: 'employee.tag', commandId: 'gone-1', email: 'a@gone.test' });
    await waitFor(() => receiver.at('/gone').length === 1, { timeoutMs: 10_000, what: 'the first delivery' });
    await ok(svc, 'p-gone', { type: 'employee.tag', commandId: 'gone-2', email: 'b@gone.test' });
    receiver.release(410);
    await waitFor(async () => (await svc.api.get('/v1/partners/p-gone/webhooks')).body.webhooks.length === 0, { timeoutMs: 10_000, what: 'the subscription to end' });
    expect(receiver.at('/gone')).toHaveLength(1);
    const log = await svc.api.get(`/v1/partners/p-gone/webhooks/${hook.id}/deliveries`);
    expect(log.body.deliveries.map((d: { state: string; lastStatus: number | null }) => [d.state, d.lastStatus])).toEqual([['dropped', null], ['dropped', 410]]);
    await ok(svc, 'p-gone', { type: 'employee.tag', commandId: 'gone-3', email: 'c@gone.test' });
    // The completed command wrote its event in the same transaction, or (no live subscription) none at all.
    expect(await svc.sql(`select data->>'commandId' as c from webhook_event where partner_id = 'p-gone' order by seq`)).toEqual([{ c: 'gone-1' }, { c: 'gone-2' }]);
    expect((await svc.api.request('POST', `/v1/partners/p-gone/webhooks/${hook.id}/deliveries/${log.body.deliveries[0].id}/redeliver`)).status).toBe(404);
    expect(receiver.at('/gone')).toHaveLength(1);
  }, 20_000);

  it('when an employee with 250 accesses is removed (the cascade) or a client terminated, then one access.revoked per pair arrives, and events nobody subscribed to are not written', async () => {
    const hook = await partnerWithHook('p-cascade', '/cascade', ['access.revoked']);
    await ok(svc, 'p-cascade', { type: 'partner.upsert', commandId: 'up-p-cascade-manual', name: 'Cascade', accessRequests: 'manual' });
    const hubs = Array.from({ length: 250 }, (_, i) => `cas-${i}`);
    const setup = await svc.api.batch('p-cascade', [
      { type: 'employee.tag', commandId: 'cas-tag', email: 'leaver@cascade.test' },
      { type: 'employee.tag', commandId: 'cas-tag-2', email: 'stayer@cascade.test' },
      ...hubs.map((hubId) => ({ type: 'client.upsert', commandId: `cas-up-${hubId}`, hubId, name: hubId })),
      { type: 'access.assign', commandId: 'cas-assign', clientHubIds: hubs, employeeEmails: ['leaver@cascade.test'] },
      { type: 'access.assign', commandId: 'cas-assign-2', clientHubIds: ['cas-0'], employeeEmails: ['stayer@cascade.test'] },
    ]);
    expect(setup.status).toBe(202);
    expect((await svc.api.waitCommand('cas-assign-2')).state).toBe('completed');
    await ok(svc, 'p-cascade', { type: 'employee.remove', commandId: 'cas-remove', email: 'leaver@cascade.test' });
    await ok(svc, 'p-cascade', { type: 'client.terminate', commandId: 'cas-terminate', hubId: 'cas-0' });
    await waitFor(() => receiver.acked('/cascade').length >= 251, { timeoutMs: 30_000, what: 'every revoked pair at the receiver' });
    const got = receiver.acked('/cascade').map((r) => verified(hook.secret, r));
    expect(got.every((g) => g.type === 'access.revoked')).toBe(true);
    expect(got.filter((g) => g.data.commandId === 'cas-remove').map((g) => g.data.clientHubId).sort()).toEqual([...hubs].sort());
    expect(got.filter((g) => g.data.commandId === 'cas-terminate').map((g) => g.data)).toEqual([{ clientHubId: 'cas-0', employeeEmail: 'stayer@cascade.test', commandId: 'cas-terminate' }]);
    // Only what was subscribed to was written: no pending or command events of this partner.
    expect(await svc.sql(`select distinct type from webhook_event where partner_id = 'p-cascade'`)).toEqual([{ type: 'access.revoked' }]);
  }, 60_000);

  it('when a burst of commands of one partner happens while the first delivery is being retried, then the events arrive in the order they happened, each acknowledged once before the next is sent', async () => {
    const hook = await partnerWithHook('p-order', '/order', ['command.completed', 'access.pending']);
    receiver.script('/order', (n) => (n === 0 ? 500 : 200));
    await ok(svc, 'p-order', { type: 'client.upsert', commandId: 'order-client', hubId: 'order-c', name: 'Order', contactEmail: 'boss@order.test' });
    const commands = Array.from({ length: 25 }, (_, i) => ({ type: 'employee.tag', commandId: `order-${String(i).padStart(2, '0')}`, email: `e${i}@order.test` }));
    const batch = await svc.api.batch('p-order', [...commands, { type: 'access.assign', commandId: 'order-assign', clientHubIds: ['order-c'], employeeEmails: commands.map((c) => c.email) }]);
    expect(batch.status).toBe(202);
    await svc.api.waitCommand('order-assign');
    const expected = ['order-client', ...commands.map((c) => c.commandId), ...commands.map(() => 'order-assign'), 'order-assign'];
    await waitFor(() => receiver.acked('/order').length >= expected.length, { timeoutMs: 20_000, what: 'every event of the burst' });
    const got = receiver.at('/order').map((r) => ({ status: r.status, body: verified(hook.secret, r) }));
    // The first attempt failed; nothing else was sent until it was retried and acknowledged.
    expect(got[0]!.status).toBe(500);
    expect(got[1]!.body.id).toBe(got[0]!.body.id);
    const acked = got.slice(1);
    expect(acked.every((g) => g.status === 200)).toBe(true);
    expect(acked.map((g) => g.body.data.commandId)).toEqual(expected);
    expect(acked.map((g) => g.body.type)).toEqual(['command.completed', ...commands.map(() => 'command.completed'), ...commands.map(() => 'access.pending'), 'command.completed']);
    // The pending pairs in the order of the command's items.
    expect(acked.filter((g) => g.body.type === 'access.pending').map((g) => g.body.data.employeeEmail)).toEqual(commands.map((c) => c.email));
    const [{ order }] = await svc.sql<{ order: string[] }>(`select json_agg(id order by seq) as order from webhook_event where partner_id = 'p-order'`) as [{ order: string[] }];
    expect(acked.map((g) => g.body.id)).toEqual(order);
  }, 40_000);
});

// ---- crash and Redis flush (child processes) ----------------------------------------------------

describe('webhook deliveries across a crash and a Redis flush', () => {
  const children: ChildService[] = [];
  const envs: Record<string, string>[] = [];
  const pools: pg.Pool[] = [];
  let smtp: TestSmtp;

  beforeAll(async () => {
    smtp = await startSmtp();
  });
  afterAll(async () => {
    await Promise.all(children.map((c) => c.kill('SIGKILL')));
    await Promise.all(pools.map((p) => p.end()));
    await smtp?.close();
    for (const env of envs) {
      await dropQueues(env.REDIS_URL!, env.QUEUE_PREFIX!);
      await dropDatabase(env.DATABASE_URL!);
    }
  });

  async function stack() {
    const env = testEnv(smtp.url, { JOB_LOCK_MS: '2000', RECONCILE_INTERVAL_MS: '300', RECONCILE_GRACE_MS: '500', WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_BASE_MS: '100' });
    envs.push(env);
    const spawn = async (roles: string) => {
      const child = spawnService({ ...env, ROLES: roles });
      children.push(child);
      return { child, url: await child.url };
    };
    let pool: pg.Pool | null = null;
    const sql = async <T>(q: string, params: unknown[] = []): Promise<T[]> => {
      if (!pool) {
        pool = new pg.Pool({ connectionString: env.DATABASE_URL, max: 2 });
        pools.push(pool);
      }
      return (await pool.query(q, params)).rows as T[];
    };
    return { env, spawn, sql };
  }

  it('when the worker is SIGKILLed while a delivery is in flight, then after a restart every event committed before and after the crash is delivered, in order, retries keeping their webhook-id', async () => {
    const { spawn, sql } = await stack();
    const { url } = await spawn('api');
    const api = makeApi(url);
    let { child: worker } = await spawn('worker');
    expect((await api.apply('p-crash', { type: 'partner.upsert', name: 'Crash' })).state).toBe('completed');
    const hook = await subscribe(api, 'p-crash', { url: `${receiver.url}/crash`, events: ['command.completed'] });
    expect(hook.status).toBe(201);
    receiver.script('/crash', (n) => (n === 0 ? 'hold' : 200));

    const tags = Array.from({ length: 10 }, (_, i) => ({ type: 'employee.tag', commandId: `crash-${i}`, email: `e${i}@crash.test` }));
    expect((await api.batch('p-crash', tags.slice(0, 5))).status).toBe(202);
    // The first delivery is at the receiver, unanswered: the worker is in the middle of it.
    await waitFor(() => receiver.at('/crash').length === 1, { timeoutMs: 15_000, what: 'the first delivery to be in flight' });
    await worker.kill('SIGKILL');
    receiver.release(200);
    // Changes committed while no worker runs.
    expect((await api.batch('p-crash', tags.slice(5))).status).toBe(202);

    ({ child: worker } = await spawn('worker'));
    await waitFor(async () => Number((await sql<{ n: string }>(`select count(*) as n from webhook_delivery where state = 'delivered'`))[0]!.n) === 10, { timeoutMs: 30_000, what: 'every delivery after the restart' });
    const secret = hook.body.secret as string;
    const got = receiver.at('/crash').map((r) => verified(secret, r));
    const firstSeen = [...new Map(got.map((g) => [g.id, g.data.commandId])).values()];
    expect(firstSeen).toEqual(tags.map((t) => t.commandId));
    // At least once: the one in flight at the crash (never answered to the killed worker) came again, with the same webhook-id.
    const first = got.filter((g) => g.data.commandId === 'crash-0');
    expect(first.length).toBeGreaterThanOrEqual(2);
    expect(new Set(first.map((g) => g.id)).size).toBe(1);
    const events = await sql<{ id: string }>(`select id from webhook_event order by seq`);
    expect(new Set(got.map((g) => g.id))).toEqual(new Set(events.map((e) => e.id)));
  }, 60_000);

  it('when the delivery jobs waiting for their retry are lost in a flush of the queue keys, then a worker started afterwards delivers every event, in order', async () => {
    const { env, spawn, sql } = await stack();
    const { url } = await spawn('api');
    const api = makeApi(url);
    const { child: worker } = await spawn('worker');
    expect((await api.apply('p-flush', { type: 'partner.upsert', name: 'Flush' })).state).toBe('completed');
    const hook = await subscribe(api, 'p-flush', { url: `${receiver.url}/flush`, events: ['command.completed'] });
    expect(hook.status).toBe(201);
    // A receiver that fails for now: the delivery job waits in Redis for its retry.
    receiver.script('/flush', () => 503);
    expect((await api.batch('p-flush', Array.from({ length: 6 }, (_, i) => ({ type: 'employee.tag', commandId: `flush-${i}`, email: `e${i}@flush.test` })))).status).toBe(202);
    await waitFor(async () => receiver.at('/flush').length >= 2 && Number((await sql<{ n: string }>(`select count(*) as n from webhook_delivery`))[0]!.n) === 6, { timeoutMs: 15_000, what: 'failed attempts and every event written' });
    await worker.kill('SIGKILL');
    await dropQueues(env.REDIS_URL!, env.QUEUE_PREFIX!);
    receiver.script('/flush', () => 200);
    await spawn('worker');
    await waitFor(async () => Number((await sql<{ n: string }>(`select count(*) as n from webhook_delivery where state = 'delivered'`))[0]!.n) === 6, { timeoutMs: 30_000, what: 'every delivery after the flush' });
    const got = receiver.acked('/flush').map((r) => verified(hook.body.secret, r).data.commandId);
    expect(got).toEqual(Array.from({ length: 6 }, (_, i) => `flush-${i}`));
  }, 60_000);
});
