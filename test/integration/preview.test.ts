/**
 * The dry run (contract §9): `POST …/commands:preview` answers what one access.assign,
 * access.revoke or access.resend would do to each pair now, decided by the worker's own code, and
 * changes nothing: every table's rows, every Redis key under the queue prefix and the SMTP server
 * are the same afterwards (counted).
 */
import { Redis } from 'ioredis';
import { REDIS_URL, startService, TOKENS, waitFor, type TestService } from '../helpers/harness.js';

const P = 'p-100';
const RIVAL = 'p-200';
const CONFLICT = 'cora@acme.test'; // live for c-1 under the rival partner
const ACTIVE = 'ann@acme.test'; // already active for c-1 here
const NEW = 'bo@acme.test'; // tagged, never assigned

describe('the dry run of a pair command', () => {
  let svc: TestService;
  let redis: Redis;

  beforeAll(async () => {
    // No scheduler: nothing is added to Redis on a timer while the world is counted.
    svc = await startService({ ROLES: 'api,worker' });
    redis = new Redis(REDIS_URL);
    const { api } = svc;
    for (const [id, name] of [[P, 'Acme Partners'], [RIVAL, 'Rival Agency']] as const) expect((await api.apply(id, { type: 'partner.upsert', name })).state).toBe('completed');
    for (const p of [P, RIVAL]) {
      expect((await api.apply(p, { type: 'client.upsert', hubId: 'c-1', name: 'Client One', contactEmail: 'boss@c1.test', portalUserEmails: [ACTIVE] }, TOKENS.platform)).state).toBe('completed');
    }
    for (const email of [CONFLICT, ACTIVE, NEW]) expect((await api.apply(P, { type: 'employee.tag', email })).state).toBe('completed');
    expect((await api.apply(RIVAL, { type: 'employee.tag', email: CONFLICT })).state).toBe('completed');
    expect((await api.apply(RIVAL, { type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: [CONFLICT] })).items[0].outcome).toBe('pending');
    expect((await api.apply(P, { type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: [ACTIVE] })).items[0].outcome).toBe('active');
    // Settled: the rival's grant email sent, nothing left to run.
    await waitFor(() => svc.smtp.messages.length === 1, { what: 'the rival\'s grant email' });
    await waitFor(async () => (await svc.sql<{ n: number }>(`select count(*)::int as n from outbox where state <> 'sent'`))[0]!.n === 0
      && (await svc.sql<{ n: number }>(`select count(*)::int as n from command where state in ('waiting', 'active')`))[0]!.n === 0, { what: 'every command and email to finish' });
  });
  afterAll(async () => {
    redis?.disconnect();
    await svc?.close();
  });

  /**
   * What any effect would change: every table's row count and content, every Redis key under the
   * queue prefix with its type and size (the rate limiter's counters and BullMQ's stalled-check
   * marker live and expire on their own), and the emails the SMTP server got.
   */
  async function world(): Promise<Record<string, unknown>> {
    const out: Record<string, unknown> = {};
    const tables = await svc.sql<{ table_name: string }>(`select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' order by table_name`);
    for (const { table_name: t } of tables) {
      const [row] = await svc.sql<{ n: number; digest: string | null }>(`select count(*)::int as n, md5(string_agg(x::text, '|' order by x::text)) as digest from "${t}" x`);
      out[`table ${t}`] = row;
    }
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = await redis.scan(cursor, 'MATCH', `${svc.config.queuePrefix}:*`, 'COUNT', 1000);
      cursor = next;
      keys.push(...found);
    } while (cursor !== '0');
    const lasting = keys.filter((k) => !k.includes(':rate-limit:') && !k.endsWith(':stalled-check')).sort();
    out['redis keys'] = lasting.length;
    for (const k of lasting) {
      const type = await redis.type(k);
      const size = type === 'list' ? await redis.llen(k) : type === 'zset' ? await redis.zcard(k) : type === 'hash' ? await redis.hlen(k) : type === 'set' ? await redis.scard(k) : type === 'stream' ? await redis.xlen(k) : type === 'string' ? await redis.strlen(k) : 0;
      out[`redis ${k}`] = `${type}:${size}`;
    }
    out.emails = svc.smtp.messages.length;
    return out;
  }

  const preview = (command: unknown, token: string = TOKENS.crm) => svc.api.request('POST', `/v1/partners/${P}/commands:preview`, { token, body: command });

  it('when a batch with a conflicting, an active and a new pair is previewed, then it answers the three outcomes and changes nothing at all', async () => {
    const before = await world();
    const r = await preview({ type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: [CONFLICT, ACTIVE, NEW] });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      type: 'access.assign',
      items: [
        { clientHubId: 'c-1', employeeEmail: CONFLICT, error: { code: 'EMAIL_LINKED_TO_OTHER_PARTNER', message: 'Their email address is already linked to another partner record for this client.' } },
        { clientHubId: 'c-1', employeeEmail: ACTIVE, outcome: 'unchanged' },
        { clientHubId: 'c-1', employeeEmail: NEW, outcome: 'pending' },
      ],
    });
    // The other partner is never named.
    expect(JSON.stringify(r.body)).not.toMatch(/p-200|Rival/);
    expect(await world()).toEqual(before);
    // Still nothing later: no job or email was left behind to happen after the answer.
    expect((await svc.api.get(`/v1/partners/${P}/conflicts`)).body.conflicts).toEqual([]);
    expect(await world()).toEqual(before);
  });

  it('when a revoke and a resend are previewed, then they answer as the worker would decide them, and nothing changes', async () => {
    const before = await world();
    const revoke = await preview({ type: 'access.revoke', clientHubIds: ['c-1'], employeeEmails: [ACTIVE, NEW] });
    expect(revoke.status).toBe(200);
    expect(revoke.body.items.map((i: { outcome?: string }) => i.outcome)).toEqual(['revoked', 'unchanged']);
    const resend = await preview({ type: 'access.resend', clientHubIds: ['c-1'], employeeEmails: [ACTIVE, NEW] });
    expect(resend.status).toBe(200);
    expect(resend.body).toEqual({ type: 'access.resend', items: [{ clientHubId: 'c-1', employeeEmail: ACTIVE, outcome: 'unchanged' }, { clientHubId: 'c-1', employeeEmail: NEW, outcome: 'unchanged' }] });
    // Later pairs see earlier ones, as in the worker's batch: assign then revoke of the same new pair.
    const twice = await preview({ type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: [NEW, NEW] });
    expect(twice.body.items.map((i: { outcome?: string }) => i.outcome)).toEqual(['pending', 'unchanged']);
    expect(await world()).toEqual(before);
  });

  it('when another type, an invalid body, a token without commands:write or another partner is used, then 400/403/404 and nothing changes', async () => {
    const before = await world();
    const tag = await preview({ type: 'employee.tag', email: 'x@acme.test' });
    expect(tag.status).toBe(400);
    expect(tag.body.error).toMatchObject({ code: 'VALIDATION_FAILED', issues: [{ path: 'type', message: expect.stringContaining('access.assign') }] });
    expect((await preview({ type: 'access.extend', clientHubIds: ['c-1'], employeeEmails: [NEW], accessUntil: null })).status).toBe(400);
    const invalid = await preview({ type: 'access.assign', clientHubIds: [], employeeEmails: ['nope'] });
    expect(invalid.status).toBe(400);
    expect(invalid.body.error.issues.map((i: { path: string }) => i.path).sort()).toEqual(['clientHubIds', 'employeeEmails.0']);
    expect((await preview({ type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: [NEW] }, TOKENS.reader)).status).toBe(403);
    expect((await preview({ type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: [NEW] }, TOKENS.platform)).status).toBe(403);
    expect((await preview({ type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: [NEW] }, TOKENS.other)).status).toBe(403);
    const unknown = await svc.api.request('POST', '/v1/partners/p-none/commands:preview', { body: { type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: [NEW] } });
    expect(unknown.status).toBe(404);
    expect((await svc.api.request('POST', `/v1/partners/${P}/commands:preview`, { token: TOKENS.crm, rawBody: 'x', headers: { 'content-type': 'text/plain' } })).status).toBe(415);
    expect(await world()).toEqual(before);
  });
});
