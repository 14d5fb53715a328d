/**
 * Request ids and replay markers (contract §4): every response carries `X-Request-Id` (the caller's
 * when it sent a valid one, else a generated one), error bodies carry the same id as `requestId`, the
 * request's log line carries it, and a 200 replay of a known commandId says `Idempotent-Replayed: true`.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { loadConfig, type Config } from '../../config/index.js';
import { startApp, type RunningApp } from '../../src/app.js';
import { dropDatabase } from '../../src/db/orm.js';
import { dropQueues, makeApi, startService, testEnv, TOKENS, waitFor, type Api, type Reply, type TestService } from '../helpers/harness.js';
import { startSmtp, type TestSmtp } from '../helpers/smtp.js';

const LIMIT = 2048;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('request ids and replay markers (one API-only service, its log lines captured)', () => {
  let smtp: TestSmtp;
  let config: Config;
  let app: RunningApp;
  let api: Api;
  const lines: Record<string, unknown>[] = [];

  beforeAll(async () => {
    smtp = await startSmtp();
    config = loadConfig(testEnv(smtp.url, { ROLES: 'api', BODY_LIMIT_BYTES: String(LIMIT), LOG_LEVEL: 'info' }));
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n')) if (l.startsWith('{')) lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    });
    app = await startApp(config, { logger: pino({ level: 'info' }, sink) });
    api = makeApi(app.url!);
  });

  afterAll(async () => {
    await app?.close();
    await smtp?.close();
    if (config) {
      await dropQueues(config.redisUrl, config.queuePrefix);
      await dropDatabase(config.databaseUrl);
    }
  });

  /** The request log line (`msg: "request"`) of the request with this id. */
  const requestLine = async (id: string) => {
    await waitFor(() => lines.some((l) => l.msg === 'request' && l.reqId === id), { what: `the log line of request ${id}` });
    return lines.find((l) => l.msg === 'request' && l.reqId === id)!;
  };

  it('when the caller sends a valid X-Request-Id, then the reply echoes it, the error body carries it and so does the log line', async () => {
    const id = 'trace-A.b_c:9-1';
    const r = await api.request('GET', '/v1/commands/no-such-command', { headers: { 'x-request-id': id } });
    expect(r.status).toBe(404);
    expect(r.headers.get('x-request-id')).toBe(id);
    expect(r.body.error).toMatchObject({ code: 'NOT_FOUND', requestId: id });
    expect(await requestLine(id)).toMatchObject({ reqId: id, status: 404 });

    const longest = 'x'.repeat(128);
    const ok = await api.request('GET', '/healthz', { token: null, headers: { 'x-request-id': longest } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('x-request-id')).toBe(longest);
  });

  it('when no X-Request-Id is sent, then each reply gets its own generated one, the same in the error body', async () => {
    const a = await api.get('/v1/commands/no-such-command');
    const b = await api.get('/v1/commands/no-such-command');
    const ids = [a.headers.get('x-request-id'), b.headers.get('x-request-id')];
    for (const id of ids) expect(id).toMatch(UUID);
    expect(ids[0]).not.toBe(ids[1]);
    expect(a.body.error.requestId).toBe(ids[0]);
    expect(b.body.error.requestId).toBe(ids[1]);
    expect(await requestLine(ids[0]!)).toMatchObject({ status: 404 });
  });

  it('when the X-Request-Id is empty, too long or has characters outside [A-Za-z0-9._:-], then a generated one is used instead', async () => {
    for (const bad of ['', 'x'.repeat(129), 'has space', 'semi;colon', 'slash/id', 'per%25cent', 'a,b']) {
      const r = await api.request('GET', '/v1/commands/no-such-command', { headers: { 'x-request-id': bad } });
      const got = r.headers.get('x-request-id');
      expect({ bad, status: r.status, generated: UUID.test(got ?? ''), echoed: got === bad }).toEqual({ bad, status: 404, generated: true, echoed: false });
      expect(r.body.error.requestId).toBe(got);
    }
  });

  it('when a request is refused with 400, 401, 403, 404, 413 or 415, then the reply carries X-Request-Id and the error body the same requestId', async () => {
    const sends: [string, number, () => Promise<Reply>][] = [
      ['400 invalid command', 400, () => api.post('p-100', { type: 'no.such' })],
      ['400 malformed JSON', 400, () => api.request('POST', '/v1/partners/p-100/commands', { rawBody: '{"type":', headers: { 'content-type': 'application/json' } })],
      ['401 no token', 401, () => api.post('p-100', { type: 'credit.recalculate' }, null as unknown as string)],
      ['401 unknown token', 401, () => api.get('/v1/partners/p-100/clients', 'tok-unknown-000000')],
      ['403 other partner', 403, () => api.post('p-100', { type: 'credit.recalculate' }, TOKENS.other)],
      ['404 unknown route', 404, () => api.get('/v1/no-such-route')],
      ['404 unknown command', 404, () => api.get('/v1/commands/no-such-command')],
      ['413 body over the limit', 413, () => api.post('p-100', { type: 'partner.upsert', name: 'x'.repeat(LIMIT) })],
      ['415 text/plain', 415, () => api.request('POST', '/v1/partners/p-100/commands', { rawBody: '{"type":"credit.recalculate"}', headers: { 'content-type': 'text/plain' } })],
    ];
    for (const [what, status, send] of sends) {
      const r = await send();
      const id = r.headers.get('x-request-id');
      expect({ what, status: r.status, generated: UUID.test(id ?? ''), requestId: r.body?.error?.requestId }).toEqual({ what, status, generated: true, requestId: id });
    }
    // With the caller's id, the refusal carries that id.
    const own = await api.request('POST', '/v1/partners/p-100/commands', { token: null, body: { type: 'credit.recalculate' }, headers: { 'x-request-id': 'caller-401' } });
    expect([own.status, own.headers.get('x-request-id'), own.body.error.requestId]).toEqual([401, 'caller-401', 'caller-401']);
  });

  it('when a known commandId is posted again with the same body, then the 200 replay says Idempotent-Replayed: true, and a new command does not', async () => {
    const cmd = { type: 'partner.upsert', commandId: 'rid-replay-1', name: 'Replay Partner' };
    const first = await api.post('p-100', cmd);
    expect(first.status).toBe(202);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    expect(first.headers.get('x-request-id')).toMatch(UUID);
    const again = await api.post('p-100', cmd);
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('x-request-id')).toMatch(UUID);
    // The same id with another body is a 409, not a replay.
    const reused = await api.post('p-100', { ...cmd, name: 'Another Name' });
    expect(reused.status).toBe(409);
    expect(reused.headers.get('idempotent-replayed')).toBeNull();
  });

  it('when a batch is posted again whole, then the 200 replay says Idempotent-Replayed: true; a batch with a new command is 202 without it', async () => {
    const commands = [
      { type: 'credit.recalculate', commandId: 'rid-batch-1' },
      { type: 'credit.recalculate', commandId: 'rid-batch-2' },
    ];
    const first = await api.batch('p-100', commands);
    expect(first.status).toBe(202);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const again = await api.batch('p-100', commands);
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    const mixed = await api.batch('p-100', [...commands, { type: 'credit.recalculate', commandId: 'rid-batch-3' }]);
    expect(mixed.status).toBe(202);
    expect(mixed.headers.get('idempotent-replayed')).toBeNull();
  });
});

describe('request ids under the rate limit', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startService({ ROLES: 'api', RATE_LIMIT_PER_MINUTE: '2' });
  });
  afterAll(async () => {
    await svc?.close();
  });

  it('when a token is over the rate limit, then the 429 carries X-Request-Id and the same requestId', async () => {
    const replies: Reply[] = [];
    for (let i = 0; i < 3; i++) replies.push(await svc.api.request('GET', '/v1/commands/no-such-command', { headers: { 'x-request-id': `limited-${i}` } }));
    expect(replies.map((r) => r.status)).toEqual([404, 404, 429]);
    const limited = replies[2]!;
    expect(limited.headers.get('x-request-id')).toBe('limited-2');
    expect(limited.body.error).toMatchObject({ code: 'RATE_LIMITED', requestId: 'limited-2' });
  });
});
