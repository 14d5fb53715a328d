/**
 * Intake over HTTP (contract §3, §4, §5 isolation, §7 health): validation, idempotency, batches,
 * the auth matrix, command status, per-partner isolation of reads, body limit and 503.
 *
 * Every refusal also checks that nothing was recorded: no new row in `command` and no new job in
 * the commands queue.
 */
import { acceptGroup } from '../../src/commands/log.js';
import { toHttpError } from '../../src/producers/errors.js';
import { commandJobOf, startService, TOKENS, waitFor, type Reply, type TestService } from '../helpers/harness.js';

const P1 = 'p-100';
const P2 = 'p-200';
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

interface Footprint { commands: number; jobs: number | null }

/** What intake leaves behind: rows of the command log and jobs of the commands queue (null when Redis is not asked). */
async function footprint(svc: TestService, opts: { jobs?: boolean } = {}): Promise<Footprint> {
  const [row] = await svc.sql<{ n: number }>('select count(*)::int as n from command');
  let jobs: number | null = null;
  if (opts.jobs !== false) {
    const counts = await svc.app.ctx.queues.commands.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized', 'waiting-children');
    jobs = Object.values(counts).reduce((a, b) => a + b, 0);
  }
  return { commands: row!.n, jobs };
}

/** Sends a request that must be refused with this status and code, and checks nothing was recorded. */
async function refused(svc: TestService, send: () => Promise<Reply>, status: number, code: string): Promise<Reply> {
  const before = await footprint(svc);
  const r = await send();
  expect({ status: r.status, code: r.body?.error?.code }).toEqual({ status, code });
  expect(typeof r.body.error.message).toBe('string');
  expect(await footprint(svc)).toEqual(before);
  return r;
}

/** A 400 VALIDATION_FAILED with exactly these issue paths (each issue a {path, message}), nothing recorded. */
async function invalid(svc: TestService, send: () => Promise<Reply>, paths: string[]): Promise<Reply> {
  const r = await refused(svc, send, 400, 'VALIDATION_FAILED');
  const issues = r.body.error.issues as { path: unknown; message: unknown }[];
  expect(Array.isArray(issues)).toBe(true);
  for (const i of issues) {
    expect(typeof i.path).toBe('string');
    expect(typeof i.message).toBe('string');
    expect((i.message as string).length).toBeGreaterThan(0);
  }
  expect([...new Set(issues.map((i) => i.path as string))].sort()).toEqual([...paths].sort());
  return r;
}

const emails = (n: number, domain = 'bulk.test') => Array.from({ length: n }, (_, i) => `e${i}@${domain}`);
const hubIds = (n: number) => Array.from({ length: n }, (_, i) => `h-${i}`);
const json = { 'content-type': 'application/json' };

describe('intake, auth and reads (one service with api, workers and scheduler)', () => {
  let svc: TestService;

  beforeAll(async () => {
    svc = await startService();
    const { api } = svc;
    // In sequence: the client's platform record is one per hubId (last write wins), and the reads
    // test below expects p-200's sync (mrr 200) to be the last one applied.
    await api.apply(P1, { type: 'partner.upsert', name: 'Acme Partners', team: { channelAccountManager: { name: 'Cam', email: 'cam@hub.test' } } });
    await api.apply(P1, { type: 'client.upsert', hubId: 'c-1', name: 'Acme Client', contactEmail: 'Boss@C1.Test', mrr: 100 });
    await api.apply(P1, { type: 'employee.tag', email: 'ann@acme.test', name: 'Ann' });
    await api.apply(P2, { type: 'partner.upsert', name: 'Rival Agency' });
    await api.apply(P2, { type: 'client.upsert', hubId: 'c-1', name: 'Rival Client', contactEmail: 'boss@c1.test', mrr: 200 });
  });

  afterAll(async () => {
    await svc?.close();
  });

  /**
   * A finished command of p-100 that the auth and status tests read (a fixed command id: a second call
   * is a replay and adds nothing), so each of them sets up its own state instead of relying on the
   * idempotency tests having run before it.
   */
  const knownCommand = async (): Promise<string> => {
    const id = 'known-p100-1';
    expect((await svc.api.apply(P1, { type: 'employee.tag', commandId: id, email: 'kit@acme.test', name: 'Kit' }, TOKENS.crm)).state).toBe('completed');
    return id;
  };

  describe('validation', () => {
    it('when the type is unknown or missing, then 400 VALIDATION_FAILED on "type" and nothing is recorded', async () => {
      await invalid(svc, () => svc.api.post(P1, { type: 'employee.fire', email: 'a@acme.test' }, TOKENS.crm), ['type']);
      await invalid(svc, () => svc.api.post(P1, { email: 'a@acme.test' }, TOKENS.crm), ['type']);
      await invalid(svc, () => svc.api.post(P1, { type: 42 }, TOKENS.crm), ['type']);
    });

    it('when required fields are missing, then each missing field is an issue with its path', async () => {
      await invalid(svc, () => svc.api.post(P1, { type: 'client.upsert' }, TOKENS.crm), ['hubId', 'name']); // contactEmail is the platform's, optional
      await invalid(svc, () => svc.api.post(P1, { type: 'sale.record', clientHubId: 'c-1' }, TOKENS.platform), ['saleId', 'closedOn', 'mrr']);
      await invalid(svc, () => svc.api.post(P1, { type: 'access.grant' }, TOKENS.platform), ['clientHubId', 'employeeEmail']);
      await invalid(svc, () => svc.api.post(P1, { type: 'team.email', to: 'ceo', subject: 's', body: 'b' }, TOKENS.crm), ['to']);
    });

    it('when a body has a key the command does not define, then 400 with the unknown key in the issue path', async () => {
      const sends: [string, () => Promise<Reply>][] = [
        ['extra', () => svc.api.post(P1, { type: 'employee.tag', email: 'a@acme.test', extra: 1 }, TOKENS.crm)],
        ['team.channelAccountManager.phone', () => svc.api.post(P1, { type: 'partner.upsert', name: 'Acme', team: { channelAccountManager: { name: 'Cam', email: 'cam@hub.test', phone: '1' } } })],
        ['commands.0.tagged', () => svc.api.batch(P1, [{ type: 'employee.untag', email: 'a@acme.test', tagged: false }], TOKENS.crm)],
      ];
      const got: [string, string[]][] = [];
      for (const [expected, send] of sends) {
        const r = await refused(svc, send, 400, 'VALIDATION_FAILED');
        got.push([expected, r.body.error.issues.map((i: { path: string }) => i.path)]);
      }
      expect(got).toEqual(sends.map(([expected]) => [expected, [expected]]));
    });

    it('when an email is not an email, then 400 on that field (also inside arrays)', async () => {
      await invalid(svc, () => svc.api.post(P1, { type: 'employee.tag', email: 'not-an-email' }, TOKENS.crm), ['email']);
      await invalid(svc, () => svc.api.post(P1, { type: 'client.upsert', hubId: 'c-9', name: 'C9', contactEmail: 'c9@', portalUserEmails: ['ok@c9.test', 'nope'] }, TOKENS.platform), ['contactEmail', 'portalUserEmails.1']);
      await invalid(svc, () => svc.api.post(P1, { type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: ['ann@acme.test', 'ann at acme'] }, TOKENS.crm), ['employeeEmails.1']);
      await invalid(svc, () => svc.api.post(P1, { type: 'employee.tag', email: `${'a'.repeat(250)}@acme.test` }, TOKENS.crm), ['email']);
    });

    it('when a string is over its maximum or blank, then 400 on that field; at the maximum it is accepted', async () => {
      await invalid(svc, () => svc.api.post(P1, { type: 'employee.tag', email: 'long@acme.test', name: 'n'.repeat(201) }, TOKENS.crm), ['name']);
      await invalid(svc, () => svc.api.post(P1, { type: 'partner.upsert', name: 'n'.repeat(201) }), ['name']);
      await invalid(svc, () => svc.api.post(P1, { type: 'employee.tag', email: 'blank@acme.test', name: '   ' }, TOKENS.crm), ['name']);
      await invalid(svc, () => svc.api.post(P1, { type: 'client.terminate', hubId: 'h'.repeat(129) }, TOKENS.crm), ['hubId']);
      await invalid(svc, () => svc.api.post(P1, { type: 'client.terminate', hubId: 'has space' }, TOKENS.crm), ['hubId']);
      await invalid(svc, () => svc.api.post(P1, { type: 'team.email', to: 'channelAccountManager', subject: 's'.repeat(201), body: 'b' }, TOKENS.crm), ['subject']);

      const name = 'N'.repeat(200);
      const done = await svc.api.apply(P1, { type: 'employee.tag', email: 'long@acme.test', name }, TOKENS.crm);
      expect(done.state).toBe('completed');
      const employees = await svc.api.get(`/v1/partners/${P1}/employees`, TOKENS.crm);
      expect(employees.body.employees.find((e: { email: string }) => e.email === 'long@acme.test')?.name).toBe(name);
    });

    it('when an array is over its maximum or the pairs exceed 1000, then 400 on that array', async () => {
      await invalid(svc, () => svc.api.post(P1, { type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: emails(1001) }, TOKENS.crm), ['employeeEmails']);
      await invalid(svc, () => svc.api.post(P1, { type: 'access.revoke', clientHubIds: hubIds(1001), employeeEmails: ['ann@acme.test'] }, TOKENS.crm), ['clientHubIds']);
      const pairs = await invalid(svc, () => svc.api.post(P1, { type: 'access.assign', clientHubIds: ['c-1', 'c-2'], employeeEmails: emails(501) }, TOKENS.crm), ['clientHubIds']);
      expect(pairs.body.error.issues[0].message).toMatch(/1000/);
      await invalid(svc, () => svc.api.post(P1, { type: 'access.revoke', clientHubIds: hubIds(40), employeeEmails: emails(26) }, TOKENS.crm), ['clientHubIds']);
      await invalid(svc, () => svc.api.post(P1, { type: 'access.assign', clientHubIds: [], employeeEmails: ['ann@acme.test'] }, TOKENS.crm), ['clientHubIds']);
      await invalid(svc, () => svc.api.post(P1, { type: 'client.upsert', hubId: 'c-9', name: 'C9', contactEmail: 'c9@c9.test', portalUserEmails: emails(1001) }, TOKENS.platform), ['portalUserEmails']);
      await invalid(svc, () => svc.api.post(P1, { type: 'client.upsert', hubId: 'c-9', name: 'C9', contactEmail: 'c9@c9.test', products: Array.from({ length: 101 }, (_, i) => `p${i}`) }, TOKENS.platform), ['products']);
    });

    it('when a date is not a real YYYY-MM-DD (or a month not YYYY-MM), then 400 on that field', async () => {
      const client = { type: 'client.upsert', hubId: 'c-9', name: 'C9', contactEmail: 'c9@c9.test' };
      for (const renewalDate of ['2026-02-30', '2026-13-01', '2026-1-5', '01/02/2026', '2026-01-01T00:00:00Z']) {
        await invalid(svc, () => svc.api.post(P1, { ...client, renewalDate }, TOKENS.platform), ['renewalDate']);
      }
      const sale = { type: 'sale.record', saleId: 's-1', clientHubId: 'c-1', mrr: 10 };
      for (const closedOn of ['2025-02-29', '2026-04-31', 'yesterday', '']) {
        await invalid(svc, () => svc.api.post(P1, { ...sale, closedOn }, TOKENS.platform), ['closedOn']);
      }
      await invalid(svc, () => svc.api.post(P1, { type: 'client.churn', clientHubId: 'c-1', on: '2026-00-10' }, TOKENS.platform), ['on']);
      await invalid(svc, () => svc.api.post(P1, { type: 'credit.recalculate', month: '2026-13' }, TOKENS.crm), ['month']);
      await invalid(svc, () => svc.api.post(P1, { type: 'credit.recalculate', issuedAt: 'last tuesday' }, TOKENS.crm), ['issuedAt']);
      // 2024 is a leap year: its 29 February is a date.
      const leap = await svc.api.post(P1, { ...sale, closedOn: '2024-02-29' }, TOKENS.platform);
      expect(leap.status).toBe(202);
    });

    it('when the commandId has characters outside [A-Za-z0-9._:-], is empty or longer than 128, then 400 on "commandId"', async () => {
      for (const commandId of ['has space', 'a/b', 'ümlaut', '', 'x'.repeat(129), 7]) {
        await invalid(svc, () => svc.api.post(P1, { type: 'credit.recalculate', commandId }, TOKENS.crm), ['commandId']);
      }
      await invalid(svc, () => svc.api.post(P1, { type: 'credit.recalculate' }, TOKENS.crm, { 'idempotency-key': 'has space' }), ['Idempotency-Key']);
      await invalid(svc, () => svc.api.post(P1, { type: 'credit.recalculate' }, TOKENS.crm, { 'idempotency-key': 'k'.repeat(129) }), ['Idempotency-Key']);
      const ok = await svc.api.post(P1, { type: 'credit.recalculate', commandId: `Az09._:-${'k'.repeat(120)}` }, TOKENS.crm);
      expect(ok.status).toBe(202);
      expect(ok.body.commandId).toHaveLength(128);
    });

    it('when the body is not a JSON object, then 400 VALIDATION_FAILED and nothing is recorded', async () => {
      for (const rawBody of ['[]', '[{"type":"credit.recalculate"}]', '"credit.recalculate"', '42', 'null', 'true']) {
        await invalid(svc, () => svc.api.request('POST', `/v1/partners/${P1}/commands`, { token: TOKENS.crm, rawBody, headers: json }), ['']);
      }
      await invalid(svc, () => svc.api.request('POST', `/v1/partners/${P1}/commands`, { token: TOKENS.crm }), ['']);
    });

    it('when the JSON is malformed, empty or poisons a prototype, then 400 VALIDATION_FAILED and nothing is recorded', async () => {
      for (const rawBody of ['{"type":"employee.tag","email":', '{type: "credit.recalculate"}', '', '{"__proto__":{"admin":true},"type":"credit.recalculate"}']) {
        await refused(svc, () => svc.api.request('POST', `/v1/partners/${P1}/commands`, { token: TOKENS.crm, rawBody, headers: json }), 400, 'VALIDATION_FAILED');
      }
      await refused(svc, () => svc.api.request('POST', `/v1/partners/${P1}/commands:batch`, { token: TOKENS.crm, rawBody: '{"commands":[', headers: json }), 400, 'VALIDATION_FAILED');
    });

    it('when emails arrive in mixed case, then they are stored and shown lower-cased', async () => {
      const tagged = await svc.api.apply(P1, { type: 'employee.tag', email: 'Mixed.Case@Example.TEST', name: 'Mixed' }, TOKENS.crm);
      expect(tagged.state).toBe('completed');
      const [row] = await svc.sql<{ email: string }>(`select payload->>'email' as email from command where id = ?`, [tagged.commandId]);
      expect(row!.email).toBe('mixed.case@example.test');
      const employees = await svc.api.get(`/v1/partners/${P1}/employees`, TOKENS.crm);
      const listed = employees.body.employees.map((e: { email: string }) => e.email);
      expect(listed).toContain('mixed.case@example.test');
      expect(listed.some((e: string) => e !== e.toLowerCase())).toBe(false);

      // Contact email given as Boss@C1.Test in beforeAll.
      const client = await svc.api.get(`/v1/partners/${P1}/clients/c-1`, TOKENS.crm);
      expect(client.body.contactEmail).toBe('boss@c1.test');

      // An upper-cased email in a pair command addresses the same (lower-cased) employee.
      const untag = await svc.api.apply(P1, { type: 'employee.untag', email: 'MIXED.case@example.test' }, TOKENS.crm);
      expect(untag.state).toBe('completed');
      const after = await svc.api.get(`/v1/partners/${P1}/employees`, TOKENS.crm);
      expect(after.body.employees.filter((e: { email: string }) => e.email === 'mixed.case@example.test')).toEqual([
        expect.objectContaining({ email: 'mixed.case@example.test', tagged: false }),
      ]);
    });
  });

  describe('idempotency', () => {
    it('when a new command is posted, then 202 {commandId,type,state,statusUrl} and the statusUrl shows it', async () => {
      const r = await svc.api.post(P1, { type: 'employee.tag', email: 'new@acme.test' }, TOKENS.crm);
      expect(r.status).toBe(202);
      expect(r.body).toEqual({ commandId: expect.stringMatching(/^[A-Za-z0-9._:-]{1,128}$/), type: 'employee.tag', state: 'waiting', statusUrl: `/v1/commands/${r.body.commandId}` });
      const status = await svc.api.get(r.body.statusUrl, TOKENS.crm);
      expect(status.status).toBe(200);
      expect(status.body).toMatchObject({ commandId: r.body.commandId, type: 'employee.tag', partnerId: P1 });
      const again = await svc.api.post(P1, { type: 'employee.tag', email: 'new@acme.test' }, TOKENS.crm);
      expect(again.status).toBe(202);
      expect(again.body.commandId).not.toBe(r.body.commandId);
    });

    it('when the same commandId comes again with the same body, then 200 with its current status and no second job', async () => {
      const id = 'idem-same-1';
      const cmd = { type: 'employee.tag', commandId: id, email: 'bob@acme.test', name: 'Bob' };
      const first = await svc.api.post(P1, cmd, TOKENS.crm);
      expect(first.status).toBe(202);
      const done = await svc.api.waitCommand(id);
      expect(done).toMatchObject({ state: 'completed', attempts: 1 });

      const before = await footprint(svc);
      const again = await svc.api.post(P1, cmd, TOKENS.crm);
      expect(again.status).toBe(200);
      expect(again.body).toEqual({ commandId: id, type: 'employee.tag', state: 'completed', statusUrl: `/v1/commands/${id}` });
      // Keys in another order are the same body.
      const reordered = await svc.api.post(P1, { name: 'Bob', email: 'bob@acme.test', commandId: id, type: 'employee.tag' }, TOKENS.crm);
      expect(reordered.status).toBe(200);
      expect(await footprint(svc)).toEqual(before);

      // A later command of the same partner finishes (per-partner order); the replayed one did not run again.
      await svc.api.apply(P1, { type: 'credit.recalculate' }, TOKENS.crm);
      const status = await svc.api.get(`/v1/commands/${id}`, TOKENS.crm);
      expect(status.body).toMatchObject({ state: 'completed', attempts: 1, finishedAt: done.finishedAt });
      const [rows] = await svc.sql<{ n: number }>('select count(*)::int as n from command where id = ?', [id]);
      expect(rows!.n).toBe(1);
    });

    it('when the same commandId comes with a different body, then 409 IDEMPOTENCY_KEY_REUSED and the first stays as it was', async () => {
      const id = 'idem-diff-1';
      const first = await svc.api.post(P1, { type: 'employee.tag', commandId: id, email: 'cat@acme.test', name: 'Cat' }, TOKENS.crm);
      expect(first.status).toBe(202);
      await refused(svc, () => svc.api.post(P1, { type: 'employee.tag', commandId: id, email: 'cat@acme.test', name: 'Kat' }, TOKENS.crm), 409, 'IDEMPOTENCY_KEY_REUSED');
      await refused(svc, () => svc.api.post(P1, { type: 'employee.untag', commandId: id, email: 'cat@acme.test' }, TOKENS.crm), 409, 'IDEMPOTENCY_KEY_REUSED');
      await refused(svc, () => svc.api.post(P1, { type: 'employee.tag', commandId: id, email: 'cat@acme.test', name: 'Cat', issuedAt: '2026-01-01T00:00:00Z' }, TOKENS.crm), 409, 'IDEMPOTENCY_KEY_REUSED');
      const [row] = await svc.sql<{ name: string; type: string }>(`select type, payload->>'name' as name from command where id = ?`, [id]);
      expect(row).toEqual({ type: 'employee.tag', name: 'Cat' });
    });

    it('when another partner reuses a commandId, then 409 and the first partner\'s command is neither shown nor changed', async () => {
      const id = 'idem-cross-1';
      const cmd = { type: 'credit.recalculate', commandId: id };
      expect((await svc.api.post(P1, cmd, TOKENS.crm)).status).toBe(202);
      const r = await refused(svc, () => svc.api.post(P2, cmd, TOKENS.other), 409, 'IDEMPOTENCY_KEY_REUSED');
      expect(JSON.stringify(r.body)).not.toContain(P1);
      const status = await svc.api.get(`/v1/commands/${id}`, TOKENS.crm);
      expect(status.body.partnerId).toBe(P1);
    });

    it('when the Idempotency-Key header is sent, then it is the commandId; a different body commandId is 400', async () => {
      const key = 'hdr-key-1';
      const cmd = { type: 'employee.tag', email: 'dan@acme.test' };
      const first = await svc.api.post(P1, cmd, TOKENS.crm, { 'idempotency-key': key });
      expect(first.status).toBe(202);
      expect(first.body).toMatchObject({ commandId: key, statusUrl: `/v1/commands/${key}` });
      const [row] = await svc.sql<{ id: string; cid: string }>(`select id, payload->>'commandId' as cid from command where id = ?`, [key]);
      expect(row).toEqual({ id: key, cid: key });

      const before = await footprint(svc);
      const replay = await svc.api.post(P1, cmd, TOKENS.crm, { 'idempotency-key': key });
      expect(replay.status).toBe(200);
      expect(replay.body.commandId).toBe(key);
      const sameInBody = await svc.api.post(P1, { ...cmd, commandId: key }, TOKENS.crm, { 'idempotency-key': key });
      expect(sameInBody.status).toBe(200);
      // The body commandId alone, without the header, names the same command.
      const bodyOnly = await svc.api.post(P1, { ...cmd, commandId: key }, TOKENS.crm);
      expect(bodyOnly.status).toBe(200);
      expect(await footprint(svc)).toEqual(before);

      await invalid(svc, () => svc.api.post(P1, { ...cmd, commandId: 'hdr-other-1' }, TOKENS.crm, { 'idempotency-key': key }), ['commandId']);
      await refused(svc, () => svc.api.post(P1, { type: 'employee.tag', email: 'eve@acme.test' }, TOKENS.crm, { 'idempotency-key': key }), 409, 'IDEMPOTENCY_KEY_REUSED');
      expect((await svc.api.get('/v1/commands/hdr-other-1')).status).toBe(404);
    });
  });

  describe('group commit (requests that arrive together share one transaction)', () => {
    it('when one group holds new commands, the same new id twice, a reused id with another body and another partner\'s id, then each request gets exactly the reply it would get alone', async () => {
      const known = await svc.api.post(P1, { type: 'employee.tag', commandId: 'gc-known', email: 'gc.known@acme.test' }, TOKENS.crm);
      expect(known.status).toBe(202);
      const tag = (commandId: string, email: string) => ({ type: 'employee.tag' as const, commandId, email });
      const before = await footprint(svc);
      const results = await acceptGroup(svc.app.ctx.orm, svc.app.ctx.queues, [
        { partnerId: P1, tokenName: 'crm', commands: [tag('gc-a', 'gc.a@acme.test'), tag('gc-b', 'gc.b@acme.test')] },
        { partnerId: P1, tokenName: 'crm', commands: [tag('gc-twin', 'gc.twin@acme.test')] },
        { partnerId: P1, tokenName: 'crm', commands: [tag('gc-twin', 'gc.twin@acme.test')] },
        { partnerId: P1, tokenName: 'crm', commands: [tag('gc-c', 'gc.c@acme.test'), tag('gc-known', 'gc.other@acme.test')] },
        { partnerId: P2, tokenName: 'other', commands: [tag('gc-known', 'gc.known@acme.test')] },
        { partnerId: P1, tokenName: 'crm', commands: [tag('gc-known', 'gc.known@acme.test')] },
      ]);
      const view = results.map((r) => (r instanceof Error ? { status: toHttpError(r)?.status, code: toHttpError(r)?.code } : r.map((a) => ({ id: a.commandId, created: a.created }))));
      expect(view).toEqual([
        [{ id: 'gc-a', created: true }, { id: 'gc-b', created: true }],
        [{ id: 'gc-twin', created: true }],
        [{ id: 'gc-twin', created: false }],
        { status: 409, code: 'IDEMPOTENCY_KEY_REUSED' },
        { status: 409, code: 'IDEMPOTENCY_KEY_REUSED' },
        [{ id: 'gc-known', created: false }],
      ]);
      // gc-c belonged to a refused request: not recorded. One row and one job per created id.
      expect(await footprint(svc)).toEqual({ commands: before.commands + 3, jobs: before.jobs! + 3 });
      const rows = await svc.sql<{ id: string; partner_id: string; token_name: string }>(`select id, partner_id, token_name from command where id like 'gc-%' order by id`);
      expect(rows).toEqual([
        { id: 'gc-a', partner_id: P1, token_name: 'crm' },
        { id: 'gc-b', partner_id: P1, token_name: 'crm' },
        { id: 'gc-known', partner_id: P1, token_name: 'crm-sync' }, // posted over HTTP with the crm token
        { id: 'gc-twin', partner_id: P1, token_name: 'crm' },
      ]);
      for (const id of ['gc-a', 'gc-b', 'gc-twin']) expect(await commandJobOf(svc, id)).toBeDefined();
    });

    it('when 40 single posts arrive at once over HTTP, one of them reusing an id with another body, then 39 are accepted once each and that one is 409', async () => {
      const first = await svc.api.post(P1, { type: 'employee.tag', commandId: 'gc-http-known', email: 'gc.h@acme.test' }, TOKENS.crm);
      expect(first.status).toBe(202);
      const before = await footprint(svc);
      const replies = await Promise.all([
        ...Array.from({ length: 39 }, (_, i) => svc.api.post(P1, { type: 'employee.tag', commandId: `gc-http-${i}`, email: `gc.h${i}@acme.test` }, TOKENS.crm)),
        svc.api.post(P1, { type: 'employee.tag', commandId: 'gc-http-known', email: 'gc.changed@acme.test' }, TOKENS.crm),
      ]);
      expect(replies.map((r) => r.status)).toEqual([...Array(39).fill(202), 409]);
      expect(replies[39]!.body.error.code).toBe('IDEMPOTENCY_KEY_REUSED');
      expect(await footprint(svc)).toEqual({ commands: before.commands + 39, jobs: before.jobs! + 39 });
    });
  });

  describe('batch', () => {
    const batch = [
      { type: 'employee.tag', commandId: 'b1-tag', email: 'Erin@Acme.test', name: 'Erin' },
      { type: 'client.upsert', commandId: 'b1-client', hubId: 'c-2', name: 'Client Two', contactEmail: 'boss@c2.test' },
      { type: 'access.assign', commandId: 'b1-assign', clientHubIds: ['c-2'], employeeEmails: ['erin@acme.test'] },
    ];

    it('when a valid batch is posted, then 202 {commands:[…]} in order, each is applied, and the same batch again is 200', async () => {
      const r = await svc.api.batch(P1, batch, TOKENS.admin);
      expect(r.status).toBe(202);
      expect(r.body).toEqual({
        commands: batch.map((c) => ({ commandId: c.commandId, type: c.type, state: 'waiting', statusUrl: `/v1/commands/${c.commandId}` })),
      });
      for (const c of batch) expect((await svc.api.waitCommand(c.commandId)).state).toBe('completed');
      const assign = await svc.api.get('/v1/commands/b1-assign', TOKENS.crm);
      expect(assign.body.items).toEqual([{ clientHubId: 'c-2', employeeEmail: 'erin@acme.test', state: 'completed', outcome: 'pending' }]);

      const before = await footprint(svc);
      const again = await svc.api.batch(P1, batch, TOKENS.admin);
      expect(again.status).toBe(200);
      expect(again.body.commands.map((c: { commandId: string; state: string }) => [c.commandId, c.state])).toEqual(batch.map((c) => [c.commandId, 'completed']));
      expect(await footprint(svc)).toEqual(before);
    });

    it('when batch commands have no commandId, then each gets its own generated one', async () => {
      const r = await svc.api.batch(P1, [{ type: 'credit.recalculate' }, { type: 'credit.recalculate' }], TOKENS.crm);
      expect(r.status).toBe(202);
      expect(r.body.commands).toHaveLength(2);
      const [a, b] = r.body.commands;
      expect(a.commandId).not.toBe(b.commandId);
      const [row] = await svc.sql<{ n: number }>('select count(*)::int as n from command where id in (?, ?)', [a.commandId, b.commandId]);
      expect(row!.n).toBe(2);
    });

    it('when one command of a batch is invalid, then 400 with paths under commands.N and none is accepted', async () => {
      await invalid(svc, () => svc.api.batch(P1, [
        { type: 'employee.tag', commandId: 'b2-ok', email: 'frank@acme.test' },
        { type: 'employee.tag', email: 'not-an-email' },
        { type: 'client.terminate' },
        'not an object',
      ], TOKENS.crm), ['commands.1.email', 'commands.2.hubId', 'commands.3']);
      expect((await svc.api.get('/v1/commands/b2-ok')).status).toBe(404);
    });

    it('when a batch has more than 1000 commands, none, or is not {commands:[…]}, then 400 and nothing is accepted', async () => {
      await invalid(svc, () => svc.api.batch(P1, Array.from({ length: 1001 }, () => ({ type: 'credit.recalculate' })), TOKENS.crm), ['commands']);
      await invalid(svc, () => svc.api.batch(P1, [], TOKENS.crm), ['commands']);
      await invalid(svc, () => svc.api.request('POST', `/v1/partners/${P1}/commands:batch`, { token: TOKENS.crm, body: {} }), ['commands']);
      await invalid(svc, () => svc.api.request('POST', `/v1/partners/${P1}/commands:batch`, { token: TOKENS.crm, body: { commands: { type: 'credit.recalculate' } } }), ['commands']);
      await refused(svc, () => svc.api.request('POST', `/v1/partners/${P1}/commands:batch`, { token: TOKENS.crm, body: [{ type: 'credit.recalculate' }] }), 400, 'VALIDATION_FAILED');
      await refused(svc, () => svc.api.request('POST', `/v1/partners/${P1}/commands:batch`, { token: TOKENS.crm, body: { commands: [{ type: 'credit.recalculate' }], atomic: true } }), 400, 'VALIDATION_FAILED');
    });

    it('when one command of a batch reuses a commandId with another body, then 409 and none of the batch is accepted', async () => {
      expect((await svc.api.post(P1, { type: 'credit.recalculate', commandId: 'b3-used' }, TOKENS.crm)).status).toBe(202);
      await refused(svc, () => svc.api.batch(P1, [
        { type: 'credit.recalculate', commandId: 'b3-new' },
        { type: 'credit.recalculate', commandId: 'b3-used', month: '2026-01' },
      ], TOKENS.crm), 409, 'IDEMPOTENCY_KEY_REUSED');
      // Twice within one batch with two bodies is the same mistake.
      await refused(svc, () => svc.api.batch(P1, [
        { type: 'credit.recalculate', commandId: 'b3-dup' },
        { type: 'credit.recalculate', commandId: 'b3-dup', month: '2026-02' },
      ], TOKENS.crm), 409, 'IDEMPOTENCY_KEY_REUSED');
      expect((await svc.api.get('/v1/commands/b3-new')).status).toBe(404);
      expect((await svc.api.get('/v1/commands/b3-dup')).status).toBe(404);
    });
  });

  describe('auth', () => {
    /** Every request answers 401 UNAUTHENTICATED and leaves no trace. */
    const expectUnauthenticated = async (sends: [string, () => Promise<Reply>][]) => {
      const before = await footprint(svc);
      const got: [string, number, string][] = [];
      for (const [what, send] of sends) {
        const r = await send();
        got.push([what, r.status, r.body?.error?.code]);
      }
      expect(got).toEqual(sends.map(([what]) => [what, 401, 'UNAUTHENTICATED']));
      expect(await footprint(svc)).toEqual(before);
    };

    it('when the token is missing, unknown or not a bearer token, then 401 UNAUTHENTICATED everywhere and nothing is recorded', async () => {
      const { api } = svc;
      const known = await knownCommand();
      const tag = { type: 'employee.tag', email: 'mallory@acme.test' };
      const sends: [string, () => Promise<Reply>][] = [
        ['post, no token', () => api.post(P1, tag, null as unknown as string)],
        ['post, unknown token', () => api.post(P1, tag, 'tok-unknown-000000')],
        ['post, Basic scheme', () => api.request('POST', `/v1/partners/${P1}/commands`, { token: null, body: tag, headers: { authorization: `Basic ${TOKENS.admin}` } })],
        ['post, bare token', () => api.request('POST', `/v1/partners/${P1}/commands`, { token: null, body: tag, headers: { authorization: TOKENS.admin } })],
        ['post, token with a suffix', () => api.post(P1, tag, `${TOKENS.admin}x`)],
        ['batch, no token', () => api.request('POST', `/v1/partners/${P1}/commands:batch`, { token: null, body: { commands: [tag] } })],
        ['clients, no token', () => api.get(`/v1/partners/${P1}/clients`, null as unknown as string)],
        ['employees, unknown token', () => api.get(`/v1/partners/${P1}/employees`, 'tok-unknown-000000')],
        ['status, no token', () => api.get(`/v1/commands/${known}`, null as unknown as string)],
      ];
      await expectUnauthenticated(sends);
    });

    it('when an unauthenticated request also has a malformed body or partner id, then it is still 401', async () => {
      const sends: [string, () => Promise<Reply>][] = [
        ['malformed JSON', () => svc.api.request('POST', `/v1/partners/${P1}/commands`, { token: null, rawBody: '{"type":', headers: json })],
        ['invalid command', () => svc.api.post(P1, { type: 'nope' }, null as unknown as string)],
        ['bad partner id', () => svc.api.request('POST', '/v1/partners/bad%20id/commands', { token: null, body: { type: 'credit.recalculate' } })],
      ];
      await expectUnauthenticated(sends);
    });

    it('when a token lacks the partner or the scope, then 403 FORBIDDEN and nothing is recorded', async () => {
      const { api } = svc;
      const known = await knownCommand();
      const tag = { type: 'employee.tag', email: 'mallory@acme.test' };
      const sends: [string, () => Promise<Reply>][] = [
        ['other partner posts to p-100', () => api.post(P1, tag, TOKENS.other)],
        ['other partner batches to p-100', () => api.batch(P1, [tag], TOKENS.other)],
        ['crm posts to p-200', () => api.post(P2, tag, TOKENS.crm)],
        ['crm posts to an unknown partner', () => api.post('p-999', tag, TOKENS.crm)],
        ['reader posts', () => api.post(P1, tag, TOKENS.reader)],
        ['staff posts', () => api.post(P1, tag, TOKENS.staff)],
        ['reader batches', () => api.batch(P1, [tag], TOKENS.reader)],
        ['writer reads clients', () => api.get(`/v1/partners/${P1}/clients`, TOKENS.writer)],
        ['writer reads the dashboard', () => api.get(`/v1/partners/${P1}/dashboard`, TOKENS.writer)],
        ['writer reads a command status', () => api.get(`/v1/commands/${known}`, TOKENS.writer)],
        ['writer reads employees', () => api.get(`/v1/partners/${P1}/employees`, TOKENS.writer)],
        ['reader reads employees', () => api.get(`/v1/partners/${P1}/employees`, TOKENS.reader)],
        ['staff reads clients', () => api.get(`/v1/partners/${P1}/clients`, TOKENS.staff)],
        ['staff reads one client', () => api.get(`/v1/partners/${P1}/clients/c-1`, TOKENS.staff)],
        ['reader reads conflicts', () => api.get(`/v1/partners/${P1}/conflicts`, TOKENS.reader)], // conflicts name employees: employees:read
        ['staff reads the dashboard', () => api.get(`/v1/partners/${P1}/dashboard`, TOKENS.staff)],
        ['staff reads credit', () => api.get(`/v1/partners/${P1}/credit`, TOKENS.staff)],
        ['staff reads a command status', () => api.get(`/v1/commands/${known}`, TOKENS.staff)],
        ['crm posts partner.upsert', () => api.post(P1, { type: 'partner.upsert', name: 'Hijack' }, TOKENS.crm)],
        ['writer posts partner.upsert', () => api.post(P1, { type: 'partner.upsert', name: 'Hijack' }, TOKENS.writer)],
        ['multi posts partner.upsert', () => api.post(P2, { type: 'partner.upsert', name: 'Hijack' }, TOKENS.multi)],
        ['crm batches a partner.upsert among others', () => api.batch(P1, [tag, { type: 'partner.upsert', name: 'Hijack' }], TOKENS.crm)],
      ];
      const before = await footprint(svc);
      const got: [string, number, string][] = [];
      for (const [what, send] of sends) {
        const r = await send();
        got.push([what, r.status, r.body?.error?.code]);
      }
      expect(got).toEqual(sends.map(([what]) => [what, 403, 'FORBIDDEN']));
      expect(await footprint(svc)).toEqual(before);
      const [p] = await svc.sql<{ name: string }>('select name from partner where id = ?', [P1]);
      expect(p!.name).toBe('Acme Partners');
    });

    it('when a token has the scope for the partner, then it is let through (crm and staff read employees, multi acts on both)', async () => {
      const { api } = svc;
      const known = await knownCommand();
      const reads: [string, string, string][] = [
        ['crm reads employees', `/v1/partners/${P1}/employees`, TOKENS.crm],
        ['staff reads employees', `/v1/partners/${P1}/employees`, TOKENS.staff],
        ['reader reads clients', `/v1/partners/${P1}/clients`, TOKENS.reader],
        ['staff reads conflicts', `/v1/partners/${P1}/conflicts`, TOKENS.staff],
        ['reader reads a command status', `/v1/commands/${known}`, TOKENS.reader],
        ['multi reads p-100 clients', `/v1/partners/${P1}/clients`, TOKENS.multi],
        ['multi reads p-200 employees', `/v1/partners/${P2}/employees`, TOKENS.multi],
      ];
      const got: [string, number][] = [];
      for (const [what, path, token] of reads) got.push([what, (await api.get(path, token)).status]);
      expect(got).toEqual(reads.map(([what]) => [what, 200]));
      expect((await api.post(P1, { type: 'credit.recalculate' }, TOKENS.writer)).status).toBe(202);
      expect((await api.post(P2, { type: 'credit.recalculate' }, TOKENS.multi)).status).toBe(202);
    });

    it('when the admin token is used, then it may post partner.upsert and every command, and read everything of every partner', async () => {
      const { api } = svc;
      const known = await knownCommand();
      const created = await api.apply('p-300', { type: 'partner.upsert', name: 'Third Partner' });
      expect(created).toMatchObject({ state: 'completed', partnerId: 'p-300' });
      expect((await api.apply('p-300', { type: 'employee.tag', email: 'zed@third.test' })).state).toBe('completed');
      const batch = await api.batch('p-300', [{ type: 'partner.upsert', name: 'Third Partner Ltd' }, { type: 'credit.recalculate' }]);
      expect(batch.status).toBe(202);
      for (const path of ['employees', 'clients', 'clients/c-1', 'conflicts', 'dashboard', 'credit']) {
        for (const p of [P1, P2]) expect([p, path, (await api.get(`/v1/partners/${p}/${path}`)).status]).toEqual([p, path, 200]);
      }
      expect((await api.get(`/v1/commands/${known}`)).body.partnerId).toBe(P1);
    });
  });

  describe('command status', () => {
    it('when another partner asks for a command, then 404 exactly as for an unknown commandId', async () => {
      const known = await knownCommand();
      const unknown = await svc.api.get('/v1/commands/no-such-command', TOKENS.other);
      expect(unknown.status).toBe(404);
      expect(unknown.body.error.code).toBe('NOT_FOUND');
      const foreign = await svc.api.get(`/v1/commands/${known}`, TOKENS.other);
      expect(foreign.status).toBe(404);
      expect({ ...foreign.body.error, requestId: undefined }).toEqual({ ...unknown.body.error, requestId: undefined }); // each reply has its own request id
    });

    it('when a command has finished, then its status has the contract\'s fields, finishedAt included and no items', async () => {
      const r = await svc.api.post(P1, { type: 'employee.tag', commandId: 'status-1', email: 'gil@acme.test', issuedAt: '2026-03-01T10:00:00+01:00' }, TOKENS.crm);
      expect(r.status).toBe(202);
      await svc.api.waitCommand('status-1');
      const s = await svc.api.get('/v1/commands/status-1', TOKENS.reader);
      expect(s.status).toBe(200);
      expect(s.body).toMatchObject({ commandId: 'status-1', type: 'employee.tag', partnerId: P1, state: 'completed', attempts: 1, issuedAt: '2026-03-01T09:00:00.000Z' });
      expect(s.body.createdAt).toMatch(ISO);
      expect(s.body.finishedAt).toMatch(ISO);
      expect(Date.parse(s.body.finishedAt)).toBeGreaterThanOrEqual(Date.parse(s.body.createdAt));
      expect(s.body).not.toHaveProperty('items');
      expect(s.body).not.toHaveProperty('error');
    });

    it('when a pair command has a failing pair, then it is failed with items per pair and the first error', async () => {
      const done = await svc.api.apply(P1, { type: 'access.assign', commandId: 'status-pairs', clientHubIds: ['c-1', 'c-missing'], employeeEmails: ['ANN@Acme.Test'] }, TOKENS.crm);
      expect(done).toMatchObject({ commandId: 'status-pairs', type: 'access.assign', partnerId: P1, state: 'failed' });
      expect(done.finishedAt).toMatch(ISO);
      expect(done.items).toEqual([
        { clientHubId: 'c-1', employeeEmail: 'ann@acme.test', state: 'completed', outcome: 'pending' },
        { clientHubId: 'c-missing', employeeEmail: 'ann@acme.test', state: 'failed', error: { code: 'UNKNOWN_CLIENT', message: expect.any(String) } },
      ]);
      expect(done.error).toMatchObject({ code: 'UNKNOWN_CLIENT' });
    });
  });

  describe('reads are isolated per partner', () => {
    it('when p-200\'s token reads p-100, then 403 on every read', async () => {
      const got: [string, number, string][] = [];
      for (const path of ['clients', 'clients/c-1', 'employees', 'conflicts', 'dashboard', 'credit']) {
        const r = await svc.api.get(`/v1/partners/${P1}/${path}`, TOKENS.other);
        got.push([path, r.status, r.body?.error?.code]);
      }
      expect(got).toEqual(['clients', 'clients/c-1', 'employees', 'conflicts', 'dashboard', 'credit'].map((p) => [p, 403, 'FORBIDDEN']));
    });

    it('when the same hubId is in two partners\' lists, then each partner sees only its own list entry, and both the client\'s one platform record', async () => {
      // the platform's facts are one record per hubId: the last sync (mrr 200) is what both see
      const mine = await svc.api.get(`/v1/partners/${P1}/clients`, TOKENS.crm);
      expect(mine.body.clients.find((c: { hubId: string }) => c.hubId === 'c-1')).toMatchObject({ name: 'Acme Client', mrr: 200 });
      expect(JSON.stringify(mine.body)).not.toContain('Rival');
      const theirs = await svc.api.get(`/v1/partners/${P2}/clients`, TOKENS.other);
      expect(theirs.body.clients).toEqual([expect.objectContaining({ hubId: 'c-1', name: 'Rival Client', mrr: 200, employees: [] })]);
      const theirEmployees = await svc.api.get(`/v1/partners/${P2}/employees`, TOKENS.other);
      expect(theirEmployees.body).toEqual({ employees: [], nextCursor: null });
    });

    it('when a partner does not exist, then 404 NOT_FOUND for the admin and 403 for a token of other partners', async () => {
      const got: [string, number, string][] = [];
      for (const path of ['clients', 'clients/c-1', 'employees', 'conflicts', 'dashboard', 'credit']) {
        const r = await svc.api.get(`/v1/partners/p-999/${path}`);
        got.push([path, r.status, r.body?.error?.code]);
      }
      expect(got).toEqual(['clients', 'clients/c-1', 'employees', 'conflicts', 'dashboard', 'credit'].map((p) => [p, 404, 'NOT_FOUND']));
      expect((await svc.api.get('/v1/partners/p-999/clients', TOKENS.multi)).status).toBe(403);
      const [row] = await svc.sql<{ n: number }>(`select count(*)::int as n from partner where id = 'p-999'`);
      expect(row!.n).toBe(0);
    });
  });

  describe('health', () => {
    it('when /healthz is asked without a token, then 200', async () => {
      const r = await svc.api.request('GET', '/healthz', { token: null });
      expect(r.status).toBe(200);
    });

    it('when Postgres, Redis and the workers are up, then /readyz is 200 with every check true', async () => {
      let last: Reply | undefined;
      await waitFor(async () => {
        last = await svc.api.request('GET', '/readyz', { token: null });
        return last.status === 200;
      }, { timeoutMs: 10_000, what: 'readyz' });
      expect(last!.body.checks).toEqual({ postgres: true, redis: true, workers: true });
    });
  });
});

describe('intake without workers, with a small body limit, and with Redis gone', () => {
  const LIMIT = 256 * 1024;
  let svc: TestService;

  beforeAll(async () => {
    svc = await startService({ ROLES: 'api', BODY_LIMIT_BYTES: String(LIMIT) });
  });

  afterAll(async () => {
    await svc?.close();
  });

  it('when nothing has run a command yet, then its status is waiting with attempts 0 and no finishedAt', async () => {
    const r = await svc.api.post(P1, { type: 'employee.tag', commandId: 'w-1', email: 'Wait@Acme.test' });
    expect(r.status).toBe(202);
    expect(r.body).toEqual({ commandId: 'w-1', type: 'employee.tag', state: 'waiting', statusUrl: '/v1/commands/w-1' });
    const s = await svc.api.get('/v1/commands/w-1');
    expect(s.status).toBe(200);
    expect(s.body).toMatchObject({ commandId: 'w-1', type: 'employee.tag', partnerId: P1, state: 'waiting', attempts: 0 });
    expect(s.body.createdAt).toMatch(ISO);
    expect(s.body).not.toHaveProperty('finishedAt');
    const again = await svc.api.post(P1, { type: 'employee.tag', commandId: 'w-1', email: 'wait@acme.test' });
    expect(again.status).toBe(200);
    expect(again.body.state).toBe('waiting');
    const pairs = await svc.api.post(P1, { type: 'access.revoke', commandId: 'w-pairs', clientHubIds: ['c-1'], employeeEmails: ['wait@acme.test'] });
    expect(pairs.status).toBe(202);
    expect((await svc.api.get('/v1/commands/w-pairs')).body.items).toEqual(expect.any(Array));
  });

  it('when the body is over BODY_LIMIT_BYTES, then 413 PAYLOAD_TOO_LARGE and nothing is recorded', async () => {
    const big = { type: 'employee.tag', email: 'big@acme.test', name: 'x'.repeat(LIMIT) };
    const r = await refused(svc, () => svc.api.post(P1, big), 413, 'PAYLOAD_TOO_LARGE');
    expect(r.body.error.message).toContain(String(LIMIT));
    await refused(svc, () => svc.api.batch(P1, [big]), 413, 'PAYLOAD_TOO_LARGE');
  });

  it('when a command is exactly at the limits (1000 pairs, 1000 commands in a batch), then it is accepted', async () => {
    const pairs = await svc.api.post(P1, { type: 'access.assign', clientHubIds: ['c-1', 'c-2'], employeeEmails: emails(500) });
    expect(pairs.status).toBe(202);
    const one = await svc.api.post(P1, { type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: emails(1000) });
    expect(one.status).toBe(202);
    const before = await footprint(svc);
    const batch = await svc.api.batch(P1, Array.from({ length: 1000 }, (_, i) => ({ type: 'credit.recalculate', commandId: `bulk-${i}` })));
    expect(batch.status).toBe(202);
    expect(batch.body.commands).toHaveLength(1000);
    expect(await footprint(svc)).toEqual({ commands: before.commands + 1000, jobs: before.jobs! + 1000 });
  });

  it('when Redis is unreachable at intake, then 503 and nothing is recorded; once it is back the same commandId is new', async () => {
    const accepted = { type: 'employee.tag', commandId: 'pre-down', email: 'pre@acme.test' };
    expect((await svc.api.post(P1, accepted)).status).toBe(202);
    const conn = svc.app.ctx.queues.connection;
    conn.disconnect();
    await waitFor(() => conn.status === 'end', { timeoutMs: 5000, what: 'the producer connection to close' });
    const before = await footprint(svc, { jobs: false });

    const one = await svc.api.post(P1, { type: 'employee.tag', commandId: 'down-1', email: 'down@acme.test' });
    expect(one.status).toBe(503);
    expect(one.body.error).toEqual({ code: expect.any(String), message: expect.any(String), requestId: expect.any(String) });
    const batch = await svc.api.batch(P1, [{ type: 'credit.recalculate', commandId: 'down-2' }, { type: 'credit.recalculate', commandId: 'down-3' }]);
    expect(batch.status).toBe(503);
    const generated = await svc.api.post(P1, { type: 'credit.recalculate' });
    expect(generated.status).toBe(503);
    expect(await footprint(svc, { jobs: false })).toEqual(before);
    for (const id of ['down-1', 'down-2', 'down-3']) expect([id, (await svc.api.get(`/v1/commands/${id}`)).status]).toEqual([id, 404]);
    // A replay of an already-accepted command needs no queue: still 200.
    expect((await svc.api.post(P1, accepted)).status).toBe(200);

    const ready = await svc.api.request('GET', '/readyz', { token: null });
    expect(ready.status).toBe(503);
    expect(ready.body.checks).toMatchObject({ postgres: true, redis: false });

    await conn.connect();
    const retried = await svc.api.post(P1, { type: 'employee.tag', commandId: 'down-1', email: 'down@acme.test' });
    expect(retried.status).toBe(202);
    expect(await commandJobOf(svc, 'down-1')).toBeDefined();
    expect((await svc.api.request('GET', '/readyz', { token: null })).status).toBe(200);
  });
});
