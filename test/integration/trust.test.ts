import { Writable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { Redis } from 'ioredis';
import { loadConfig, type Config } from '../../config/index.js';
import { startApp, type RunningApp } from '../../src/app.js';
import { dropDatabase, openOrm, type Orm } from '../../src/db/orm.js';
import { jobIds } from '../../src/jobs/contracts.js';
import { hashToken } from '../../src/lib/grant-link.js';
import { dropQueues, makeApi, PG_BASE, REDIS_URL, testEnv, TOKENS, waitFor, type Api } from '../helpers/harness.js';
import { startSmtp, type CapturedMail, type TestSmtp } from '../helpers/smtp.js';

/**
 * The trust model of contract §3 (issue 11, findings 1–8): a partner can never grant itself a
 * client's consent, redirect it, assert portal users or credit, keep a consent its access lost, or
 * read its roster without `employees:read`; the grant token is stored nowhere; managed MRR is live
 * and the same on the dashboard and the client list. Every test drives the service over HTTP as a
 * partner token would, and checks the effect (the 403s of the field table are authz-fields.test.ts).
 */

const contactOf = (hubId: string) => `boss.${hubId}@clients.test`;
const GRANT_LINK = /http:\/\/grants\.test(\/v1\/grants\/([A-Za-z0-9_-]+))/;

describe('the trust model', () => {
  let smtp: TestSmtp;
  let config: Config;
  let app: RunningApp;
  let db: Orm;
  let api: Api;
  /** Every log line the service wrote (debug level: request lines included). */
  const logLines: string[] = [];

  const sql = <T extends object = Record<string, unknown>>(query: string, params: unknown[] = []) => db.em.fork().execute<T[]>(query, params);

  // ---- helpers -------------------------------------------------------------------------------------

  /** Applies a command and expects it to complete. */
  async function ok(partnerId: string, command: Record<string, unknown>, token: string = TOKENS.admin): Promise<any> {
    const s = await api.apply(partnerId, command, token);
    expect({ type: s.type, state: s.state, error: s.error }).toEqual({ type: command.type, state: 'completed', error: undefined });
    return s;
  }
  /** The platform (clients:sync) reports a client's facts. */
  const platform = (partnerId: string, hubId: string, facts: Record<string, unknown> = {}) =>
    ok(partnerId, { type: 'client.upsert', hubId, name: `Client ${hubId}`, contactEmail: contactOf(hubId), ...facts }, TOKENS.platform);
  const assign = (partnerId: string, hubIds: string[], emails: string[], token: string = TOKENS.admin) =>
    api.apply(partnerId, { type: 'access.assign', clientHubIds: hubIds, employeeEmails: emails }, token);

  const outboxOf = (prefix: string) =>
    sql<{ id: string; state: string; payload: Record<string, unknown> }>(`select id, state, payload from outbox where kind = 'access.request' and payload->>'hubId' like ? order by id`, [`${prefix}-%`]);
  /** Waits until the prefix's request emails (outbox rows) are all sent; returns the emails to its clients. */
  async function settledMails(prefix: string, rows: number): Promise<CapturedMail[]> {
    await waitFor(async () => {
      const r = await outboxOf(prefix);
      return r.length === rows && r.every((x) => x.state === 'sent');
    }, { what: `${rows} sent request emails for ${prefix}` });
    return smtp.messages.filter((m) => m.to.includes(`boss.${prefix}-`));
  }
  const linkIn = (mail: CapturedMail) => {
    const m = GRANT_LINK.exec(mail.text);
    expect(m).not.toBeNull();
    return { path: m![1]!, token: m![2]! };
  };
  const accessOf = (partnerId: string, hubId: string, email: string) =>
    sql<{ state: string; granted: boolean }>('select state, granted_at is not null as granted from access where partner_id = ? and hub_id = ? and email = ?', [partnerId, hubId, email]);
  const clients = async (partnerId: string, token: string = TOKENS.admin) => {
    const r = await api.get(`/v1/partners/${partnerId}/clients`, token);
    expect(r.status).toBe(200);
    return r.body.clients as { hubId: string; managed: boolean; managedMrr: number; mrr: number; employees?: unknown[]; employeeCount?: number }[];
  };
  const dashboard = async (partnerId: string) => {
    const r = await api.get(`/v1/partners/${partnerId}/dashboard`);
    expect(r.status).toBe(200);
    return r.body as { managedMrr: number; tier: { creditToNext: number | null } };
  };

  // ---- lifecycle -----------------------------------------------------------------------------------

  beforeAll(async () => {
    smtp = await startSmtp();
    const env = testEnv(smtp.url, { LOG_LEVEL: 'debug' });
    config = loadConfig(env);
    const sink = new Writable({ write(chunk: Buffer, _enc, done) { logLines.push(chunk.toString()); done(); } });
    app = await startApp(config, { logger: pino({ level: 'debug' }, sink) });
    db = await openOrm(config.databaseUrl, { migrate: false, poolMax: 4 });
    api = makeApi(app.url!);
    await ok('p-100', { type: 'partner.upsert', name: 'Acme Partners' });
    await ok('p-200', { type: 'partner.upsert', name: 'Rival Agency' });
  });

  afterAll(async () => {
    await app?.close();
    await db?.close();
    await smtp?.close();
    if (config) {
      await dropQueues(config.redisUrl, config.queuePrefix);
      await dropDatabase(config.databaseUrl);
    }
  });

  // ---- finding 1 -------------------------------------------------------------------------------------

  it('when a partner posts access.grant for its own pending pair, then it is refused and the pair stays pending until the platform reports the client\'s grant', async () => {
    const [hub, ann] = ['t1-c1', 'ann.t1@acme.test'];
    await platform('p-100', hub);
    await ok('p-100', { type: 'employee.tag', email: ann }, TOKENS.crm);
    expect((await assign('p-100', [hub], [ann], TOKENS.crm)).items[0].outcome).toBe('pending');

    const self = await api.post('p-100', { type: 'access.grant', clientHubId: hub, employeeEmail: ann }, TOKENS.crm);
    expect(self.status).toBe(403);
    expect(self.body.error.code).toBe('FORBIDDEN');
    expect(await accessOf('p-100', hub, ann)).toEqual([{ state: 'pending', granted: false }]);

    await ok('p-100', { type: 'access.grant', clientHubId: hub, employeeEmail: ann }, TOKENS.platform);
    expect(await accessOf('p-100', hub, ann)).toEqual([{ state: 'active', granted: true }]);
  });

  // ---- finding 2 -------------------------------------------------------------------------------------

  it('when a partner sets a client\'s contactEmail, then it is refused, and the grant email goes only to the contact the platform reported', async () => {
    const [hub, ann] = ['t2-c1', 'ann.t2@acme.test'];
    await platform('p-100', hub);
    const redirect = await api.post('p-100', { type: 'client.upsert', hubId: hub, name: 'Mine now', contactEmail: 'inbox@acme.test' }, TOKENS.crm);
    expect(redirect.status).toBe(403);
    expect(redirect.body.error.fields).toEqual(['contactEmail']);
    // The partner renames its list entry and another partner lists the client: neither touches the contact.
    await ok('p-100', { type: 'client.upsert', hubId: hub, name: 'Our name for it' }, TOKENS.crm);
    await ok('p-200', { type: 'client.upsert', hubId: hub, name: 'Rival name' }, TOKENS.other);
    expect(await sql('select contact_email from client_account where hub_id = ?', [hub])).toEqual([{ contact_email: contactOf(hub) }]);

    await ok('p-100', { type: 'employee.tag', email: ann }, TOKENS.crm);
    expect((await assign('p-100', [hub], [ann], TOKENS.crm)).items[0].outcome).toBe('pending');
    const mails = await settledMails('t2', 1);
    expect(mails).toHaveLength(1);
    expect(mails[0]!.recipients).toEqual([contactOf(hub)]);
    expect(smtp.messages.filter((m) => m.recipients.includes('inbox@acme.test'))).toEqual([]);
  });

  it('when a pair needs an email and the platform knows no contact of the client, then it fails with NO_CLIENT_CONTACT as a failed job, and nothing is sent', async () => {
    const [hub, ann] = ['t2n-c1', 'ann.t2n@acme.test'];
    await ok('p-100', { type: 'client.upsert', hubId: hub, name: 'Listed by the partner only' }, TOKENS.crm);
    await ok('p-100', { type: 'employee.tag', email: ann }, TOKENS.crm);
    const st = await assign('p-100', [hub], [ann], TOKENS.crm);
    expect(st.state).toBe('failed');
    expect(st.items[0]).toMatchObject({ state: 'failed', error: { code: 'NO_CLIENT_CONTACT' } });
    await waitFor(async () => (await (await app.ctx.queues.pairs.getJob(jobIds.pair(st.commandId, 0)))?.getState()) === 'failed', { what: 'the refused pair job to be failed' });
    const job = (await app.ctx.queues.pairs.getJob(jobIds.pair(st.commandId, 0)))!;
    expect(job.failedReason).toMatch(/^NO_CLIENT_CONTACT: /);
    expect(await outboxOf('t2n')).toEqual([]);
    expect(await accessOf('p-100', hub, ann)).toEqual([]);

    // Once the platform reports the contact, the same assignment asks the client.
    await platform('p-100', hub);
    expect((await assign('p-100', [hub], [ann], TOKENS.crm)).items[0].outcome).toBe('pending');
    expect((await settledMails('t2n', 1))[0]!.recipients).toEqual([contactOf(hub)]);
  });

  it('when a manual partner assigns, then the pair is pending without any email, and it becomes active when the platform\'s portal users come to include the employee', async () => {
    const [hub, ann] = ['tm-c1', 'ann.tm@manual.test'];
    await ok('tm', { type: 'partner.upsert', name: 'Manual Partner', accessRequests: 'manual' });
    await ok('tm', { type: 'client.upsert', hubId: hub, name: 'No contact yet' }); // manual mode needs no contact
    await ok('tm', { type: 'employee.tag', email: ann });
    expect((await assign('tm', [hub], [ann])).items[0].outcome).toBe('pending');
    expect(await accessOf('tm', hub, ann)).toEqual([{ state: 'pending', granted: false }]);

    const sync = await platform('tm', hub, { portalUserEmails: ['someone.else@client.test', ann] });
    expect(sync.result).toMatchObject({ activated: 1 });
    expect(await accessOf('tm', hub, ann)).toEqual([{ state: 'active', granted: false }]);
    expect(await sql(`select count(*)::int as n from outbox where payload->>'hubId' = ?`, [hub])).toEqual([{ n: 0 }]);
  });

  // ---- finding 3 -------------------------------------------------------------------------------------

  it('when partner B asserts its employee as a portal user of A\'s client, then it is refused, and B\'s pair is only pending with an email to the client', async () => {
    const [hub, ann, ben] = ['t3-c1', 'ann.t3@acme.test', 'ben.t3@rival.test'];
    await platform('p-100', hub, { portalUserEmails: [ann] });
    await ok('p-100', { type: 'employee.tag', email: ann }, TOKENS.crm);
    expect((await assign('p-100', [hub], [ann], TOKENS.crm)).items[0].outcome).toBe('active');

    const asserted = await api.post('p-200', { type: 'client.upsert', hubId: hub, name: 'Their client', portalUserEmails: [ben] }, TOKENS.other);
    expect(asserted.status).toBe(403);
    expect(asserted.body.error.fields).toEqual(['portalUserEmails']);
    expect(await sql('select email from portal_user where hub_id = ? order by email', [hub])).toEqual([{ email: ann }]);

    await ok('p-200', { type: 'client.upsert', hubId: hub, name: 'Their client' }, TOKENS.other);
    await ok('p-200', { type: 'employee.tag', email: ben }, TOKENS.other);
    expect((await assign('p-200', [hub], [ben], TOKENS.other)).items[0].outcome).toBe('pending');
    expect((await settledMails('t3', 1))[0]!.recipients).toEqual([contactOf(hub)]);

    // The platform's report replaces the set: a user it no longer lists is no portal user.
    await platform('p-100', hub, { portalUserEmails: ['new.user@client.test'] });
    expect(await sql('select email from portal_user where hub_id = ? order by email', [hub])).toEqual([{ email: 'new.user@client.test' }]);
  });

  // ---- finding 4 -------------------------------------------------------------------------------------

  it('when a granted access is revoked and assigned again, then the client is asked again with a new email, and a removed employee tagged again gets back nothing', async () => {
    const [c1, c2, ann] = ['t4-c1', 't4-c2', 'ann.t4@acme.test'];
    await platform('p-100', c1);
    await platform('p-100', c2);
    await ok('p-100', { type: 'employee.tag', email: ann }, TOKENS.crm);
    expect((await assign('p-100', [c1, c2], [ann], TOKENS.crm)).items.map((i: any) => i.outcome)).toEqual(['pending', 'pending']);
    const first = await settledMails('t4', 2);
    for (const mail of first) expect((await api.request('POST', linkIn(mail).path, { token: null })).status).toBe(200);
    expect(await accessOf('p-100', c1, ann)).toEqual([{ state: 'active', granted: true }]);
    expect(await sql('select * from portal_user where hub_id in (?, ?)', [c1, c2])).toEqual([]); // the grant is the pair, not a portal user

    expect((await api.apply('p-100', { type: 'access.revoke', clientHubIds: [c1], employeeEmails: [ann] }, TOKENS.crm)).items[0].outcome).toBe('revoked');
    expect((await assign('p-100', [c1], [ann], TOKENS.crm)).items[0].outcome).toBe('pending');
    const again = await settledMails('t4', 3);
    expect(again.filter((m) => m.recipients.includes(contactOf(c1)))).toHaveLength(2);

    // Removed, then tagged again: no client of before comes back.
    await ok('p-100', { type: 'employee.remove', email: ann }, TOKENS.crm);
    await ok('p-100', { type: 'employee.tag', email: ann }, TOKENS.crm);
    const employees = await api.get('/v1/partners/p-100/employees', TOKENS.crm);
    expect(employees.body.employees.find((e: { email: string }) => e.email === ann).clients).toEqual([]);
    expect((await assign('p-100', [c2], [ann], TOKENS.crm)).items[0].outcome).toBe('pending');
    expect((await settledMails('t4', 4)).filter((m) => m.recipients.includes(contactOf(c2)))).toHaveLength(2);
  });

  // ---- finding 5 -------------------------------------------------------------------------------------

  it('when three partners manage one client, then each gets a third of its platform MRR in cents, the remainder cent to the lowest partner id, and no partner can set MRR or record sales', async () => {
    const hub = 't5-c1';
    const partners = ['t5-b', 't5-c', 't5-a']; // in no particular order
    const emp = (p: string) => `emp@${p}.test`;
    for (const p of partners) {
      await ok(p, { type: 'partner.upsert', name: `Partner ${p}` });
      await ok(p, { type: 'employee.tag', email: emp(p) });
    }
    for (const p of partners) await platform(p, hub, { mrr: 100, portalUserEmails: partners.map(emp) });
    for (const p of partners) expect((await assign(p, [hub], [emp(p)])).items[0].outcome).toBe('active');

    const expected: Record<string, number> = { 't5-a': 33.34, 't5-b': 33.33, 't5-c': 33.33 };
    for (const p of partners) {
      expect((await dashboard(p)).managedMrr).toBe(expected[p]);
      expect((await clients(p)).find((c) => c.hubId === hub)).toMatchObject({ mrr: 100, managed: true, managedMrr: expected[p] });
    }

    const mrr = await api.post('p-100', { type: 'client.upsert', hubId: 't5-own', name: 'Own', mrr: 99_999 }, TOKENS.crm);
    expect(mrr.status).toBe(403);
    expect(mrr.body.error.fields).toEqual(['mrr']);
    const sale = await api.post('p-100', { type: 'sale.record', saleId: 't5-s1', clientHubId: 't5-own', closedOn: '2026-01-05', mrr: 99_999 }, TOKENS.crm);
    expect(sale.status).toBe(403);
    expect(await sql(`select count(*)::int as n from command where payload->>'hubId' = 't5-own' or payload->>'clientHubId' = 't5-own'`)).toEqual([{ n: 0 }]);
  });

  // ---- finding 6 -------------------------------------------------------------------------------------

  it('when a token without employees:read reads the clients, one client and the audit trail (JSON and CSV), then no employee\'s email or name appears', async () => {
    const [hub, email, name] = ['t6-c1', 'secret.agent@acme.test', 'Sebastian Secret'];
    await platform('p-100', hub);
    await ok('p-100', { type: 'employee.tag', email, name }, TOKENS.crm);
    expect((await assign('p-100', [hub], [email], TOKENS.crm)).items[0].outcome).toBe('pending');
    await api.apply('p-100', { type: 'employee.untag', email: 'nobody.t6@acme.test' }, TOKENS.crm); // a failed entry

    const leaks = (body: unknown) => {
      const text = typeof body === 'string' ? body : JSON.stringify(body);
      return [email, name, 'nobody.t6@acme.test'].filter((s) => text.toLowerCase().includes(s.toLowerCase()));
    };
    const list = await api.get('/v1/partners/p-100/clients', TOKENS.reader);
    const one = await api.get(`/v1/partners/p-100/clients/${hub}`, TOKENS.reader);
    const audit = await api.get('/v1/partners/p-100/audit?limit=500', TOKENS.reader);
    const csv = await api.request('GET', '/v1/partners/p-100/audit?limit=500', { token: TOKENS.reader, headers: { accept: 'text/csv' } });
    for (const r of [list, one, audit, csv]) expect(r.status).toBe(200);
    expect({ list: leaks(list.body), one: leaks(one.body), audit: leaks(audit.body), csv: leaks(csv.body) }).toEqual({ list: [], one: [], audit: [], csv: [] });
    expect(list.body.clients.find((c: { hubId: string }) => c.hubId === hub)).toMatchObject({ employeeCount: 1 });
    expect(list.body.clients.every((c: object) => !('employees' in c))).toBe(true);
    expect(one.body).toMatchObject({ employeeCount: 1 });
    const entry = audit.body.entries.find((e: { type: string; command: { clientHubIds?: string[] } }) => e.type === 'access.assign' && e.command.clientHubIds?.includes(hub));
    expect(entry.command).toEqual({ type: 'access.assign', commandId: entry.commandId, clientHubIds: [hub], employeeCount: 1 });
    // Asking by email, or for the conflicts, would name them too.
    expect((await api.get(`/v1/partners/p-100/audit?email=${encodeURIComponent(email)}`, TOKENS.reader)).status).toBe(403);
    expect((await api.get('/v1/partners/p-100/conflicts', TOKENS.reader)).status).toBe(403);

    // With employees:read, the same reads name them.
    expect(leaks((await api.get('/v1/partners/p-100/clients', TOKENS.crm)).body)).toEqual([email]);
    expect(leaks((await api.get('/v1/partners/p-100/audit?limit=500', TOKENS.crm)).body).sort()).toEqual([email, name, 'nobody.t6@acme.test'].sort());
  });

  // ---- finding 7 -------------------------------------------------------------------------------------

  it('when a grant email was sent and its link opened and used, then its raw token is in no table, no Redis value of the queues, no log line and no metric', async () => {
    const [hub, ann] = ['t7-c1', 'ann.t7@acme.test'];
    await platform('p-100', hub);
    await ok('p-100', { type: 'employee.tag', email: ann, name: 'Ann Seven' }, TOKENS.crm);
    expect((await assign('p-100', [hub], [ann], TOKENS.crm)).items[0].outcome).toBe('pending');
    const [mail] = await settledMails('t7', 1);
    const { path, token } = linkIn(mail!);
    expect(token.length).toBeGreaterThanOrEqual(43);
    expect((await api.request('GET', path, { token: null })).status).toBe(200);
    expect((await api.request('POST', path, { token: null })).status).toBe(200);
    expect(await accessOf('p-100', hub, ann)).toEqual([{ state: 'active', granted: true }]);
    // Only its hash is kept.
    expect(await sql('select count(*)::int as n from grant_token where token_hash = ?', [hashToken(token)])).toEqual([{ n: 1 }]);

    // Postgres: every text and JSON column of every table.
    const columns = await sql<{ table_name: string; column_name: string }>(
      `select table_name, column_name from information_schema.columns
        where table_schema = 'public' and data_type in ('text', 'character varying', 'character', 'json', 'jsonb', 'ARRAY') order by 1, 2`);
    expect(columns.length).toBeGreaterThan(20);
    const columnsHolding = async (value: string) => {
      const found: string[] = [];
      for (const c of columns) {
        const [r] = await sql<{ n: number }>(`select count(*)::int as n from "${c.table_name}" where strpos("${c.column_name}"::text, ?) > 0`, [value]);
        if (r!.n > 0) found.push(`${c.table_name}.${c.column_name}`);
      }
      return found;
    };
    expect(await columnsHolding(token)).toEqual([]);
    expect(await columnsHolding(hashToken(token))).toContain('grant_token.token_hash'); // the scan finds what is there: the hash

    // Redis: every value of every key under the queue prefix (job data, options, results, events).
    const redis = new Redis(REDIS_URL);
    const inRedis: string[] = [];
    let keys = 0;
    try {
      let cursor = '0';
      do {
        const [next, found] = await redis.scan(cursor, 'MATCH', `${config.queuePrefix}:*`, 'COUNT', 1000);
        cursor = next;
        for (const key of found) {
          keys++;
          const type = await redis.type(key);
          const values: string[] = type === 'string' ? [(await redis.get(key)) ?? '']
            : type === 'hash' ? Object.entries(await redis.hgetall(key)).flat()
              : type === 'list' ? await redis.lrange(key, 0, -1)
                : type === 'set' ? await redis.smembers(key)
                  : type === 'zset' ? await redis.zrange(key, '0', '-1')
                    : type === 'stream' ? (await redis.xrange(key, '-', '+')).flatMap(([id, fields]) => [id, ...fields])
                      : [];
          if (key.includes(token) || values.some((v) => v.includes(token))) inRedis.push(key);
        }
      } while (cursor !== '0');
    } finally {
      redis.disconnect();
    }
    expect(keys).toBeGreaterThan(0);
    expect(inRedis).toEqual([]);

    // Logs (debug level, request lines included) and the metrics scrape.
    expect(logLines.length).toBeGreaterThan(0);
    expect(logLines.filter((l) => l.includes(token))).toEqual([]);
    expect(logLines.some((l) => l.includes('/v1/grants/[redacted]'))).toBe(true); // the link's requests were logged, masked
    expect((await (await fetch(`${api.base}/metrics`)).text()).includes(token)).toBe(false);
  });

  // ---- finding 8 -------------------------------------------------------------------------------------

  it('when an employee is untagged and an access revoked, then the dashboard and the client list agree on managed MRR at once, without a recalculation', async () => {
    const [hub, e1, e2] = ['t8-c1', 'one@t8.test', 'two@t8.test'];
    await ok('t8', { type: 'partner.upsert', name: 'Partner t8' });
    await platform('t8', hub, { mrr: 300, portalUserEmails: [e1, e2] });
    for (const e of [e1, e2]) await ok('t8', { type: 'employee.tag', email: e });
    expect((await assign('t8', [hub], [e1, e2])).items.map((i: any) => i.outcome)).toEqual(['active', 'active']);
    await ok('t8', { type: 'credit.recalculate' });
    const agree = async (mrr: number, managed: boolean) => {
      expect((await dashboard('t8')).managedMrr).toBe(mrr);
      expect((await clients('t8')).find((c) => c.hubId === hub)).toMatchObject({ managed, managedMrr: mrr });
    };
    await agree(300, true);

    await ok('t8', { type: 'employee.untag', email: e1 });
    await agree(300, true); // e2 still counts
    await ok('t8', { type: 'access.revoke', clientHubIds: [hub], employeeEmails: [e2] });
    await agree(0, false);
    // The platform's MRR change shows too, once the partner manages the client again.
    await ok('t8', { type: 'employee.tag', email: e1 });
    await platform('t8', hub, { mrr: 450 });
    await agree(450, true);
    // No recalculation ran since the first: the stored snapshot still says 300.
    expect(await sql('select managed_mrr from credit_snapshot where partner_id = ?', ['t8'])).toEqual([{ managed_mrr: '300.00' }]);
  });

  it('when the dashboard is read, then tier.creditToNext is the sold credit still missing to the next tier', async () => {
    await ok('t9', { type: 'partner.upsert', name: 'Partner t9' });
    await platform('t9', 't9-c1');
    await ok('t9', { type: 'sale.record', saleId: 't9-s1', clientHubId: 't9-c1', closedOn: new Date().toISOString().slice(0, 10), mrr: 1234.56 }, TOKENS.platform);
    await ok('t9', { type: 'credit.recalculate' });
    const d = await dashboard('t9');
    expect(d.tier).toEqual({ current: 'Starter', next: 'Gold', creditToNext: 3765.44 });
  });
});

/**
 * The migration to one client record per hubId (issue 11) carries today's data over: the newest
 * write wins where partners disagree, and portal users that a used grant link created are removed
 * (the granted pair keeps its membership through `granted_at`).
 */
describe('the trust migration', () => {
  it('when it runs on data of the earlier schema, then each hubId gets the newest facts, and grant-created portal users become grant memberships', async () => {
    const url = `${PG_BASE}/pap_trustmig_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
    const orm = await openOrm(url, { migrate: false, poolMax: 2 });
    try {
      await orm.migrator.up({ to: 'Migration20261123000001_pair_ranges' });
      const em = orm.em.fork();
      await em.execute(`insert into partner (id, name) values ('p1', 'P1'), ('p2', 'P2');
        insert into client (partner_id, hub_id, name, contact_email, locale, mrr, updated_at) values
          ('p1', 'h1', 'C', 'old@h1.test', 'sv', 100, '2026-01-01'), ('p2', 'h1', 'C2', 'new@h1.test', 'de', 999, '2026-02-01'), ('p1', 'h2', 'D', 'd@h2.test', 'en', 5, '2026-01-01');
        insert into access (partner_id, hub_id, email, state) values ('p1', 'h1', 'e@x.test', 'active'), ('p1', 'h2', 'f@x.test', 'pending');
        insert into portal_user values ('h1', 'e@x.test'), ('h1', 'platform@x.test');
        insert into grant_token (token_hash, partner_id, hub_id, email, expires_at, used_at) values ('t1', 'p1', 'h1', 'e@x.test', now(), now()), ('t2', 'p1', 'h2', 'f@x.test', now() + interval '1 day', null);
        insert into outbox (notification_key, kind, partner_id, payload, state) values ('k1', 'access.pending', 'p1', '{"hubId":"h1","email":"e@x.test","token":"raw"}', 'sent');`);
      await orm.migrator.up();
      expect(await em.execute('select hub_id, contact_email, locale, mrr from client_account order by hub_id')).toEqual([
        { hub_id: 'h1', contact_email: 'new@h1.test', locale: 'de', mrr: '999.00' },
        { hub_id: 'h2', contact_email: 'd@h2.test', locale: 'en', mrr: '5.00' },
      ]);
      expect(await em.execute('select partner_id, hub_id, name from client order by partner_id, hub_id')).toEqual([
        { partner_id: 'p1', hub_id: 'h1', name: 'C' }, { partner_id: 'p1', hub_id: 'h2', name: 'D' }, { partner_id: 'p2', hub_id: 'h1', name: 'C2' },
      ]);
      expect(await em.execute('select hub_id, email from portal_user')).toEqual([{ hub_id: 'h1', email: 'platform@x.test' }]);
      expect(await em.execute(`select hub_id, state, granted_at is not null as granted, expires_at is not null as expiring from access order by hub_id`)).toEqual([
        { hub_id: 'h1', state: 'active', granted: true, expiring: false },
        { hub_id: 'h2', state: 'pending', granted: false, expiring: true },
      ]);
      expect(await em.execute(`select payload from outbox`)).toEqual([{ payload: { hubId: 'h1', email: 'e@x.test' } }]);
    } finally {
      await orm.close();
      await dropDatabase(url);
    }
  });
});
