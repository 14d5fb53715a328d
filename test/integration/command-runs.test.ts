/**
 * Runs (issue 13): a partner's consecutive waiting commands are applied together, in their order,
 * in one transaction, by whichever command job gets the partner's turn; each command keeps its own
 * status, result and failure, and a refused pair its own failed job. Also across a worker killed
 * in the middle (child processes, as in durability.test.ts), and the request email as one digest
 * per command and client.
 */
import pg from 'pg';
import { dropDatabase } from '../../src/db/orm.js';
import { jobIds } from '../../src/jobs/contracts.js';
import { dropQueues, makeApi, spawnService, startService, testEnv, TOKENS, waitFor, type ChildService, type TestService } from '../helpers/harness.js';
import { startSmtp, type CapturedMail, type TestSmtp } from '../helpers/smtp.js';

const contactOf = (hubId: string) => `boss.${hubId}@clients.test`;
const T = (hhmm: string) => `2026-11-20T${hhmm}:00Z`;

describe('a run of one partner\'s waiting commands', () => {
  let svc: TestService;

  beforeAll(async () => {
    svc = await startService();
    await svc.api.apply('p-100', { type: 'partner.upsert', name: 'Acme Partners' });
  });
  afterAll(async () => {
    await svc.close();
  });

  /**
   * Posts the commands as one batch while the commands queue is paused, so they all wait; then
   * resumes it and waits for each. Returns their statuses in order.
   */
  async function postWaitingThenRun(partnerId: string, commands: Record<string, unknown>[]): Promise<{ ids: string[]; statuses: any[] }> {
    const queue = svc.app.ctx.queues.commands;
    await queue.pause();
    let ids: string[];
    try {
      const r = await svc.api.batch(partnerId, commands, TOKENS.admin);
      expect(r.status).toBe(202);
      ids = (r.body.commands as { commandId: string }[]).map((c) => c.commandId);
    } finally {
      await queue.resume();
    }
    const statuses = [];
    for (const id of ids) statuses.push(await svc.api.waitCommand(id));
    return { ids, statuses };
  }

  /** The commands' finish times: one run commits them in one transaction, so they share one. */
  const finishTimes = async (ids: string[]) =>
    new Set((await svc.sql<{ t: string }>('select finished_at::text as t from command where id in (?)', [ids])).map((r) => r.t));

  const outcomeOf = (s: any) => (s.state === 'failed' ? s.error.code : s.items ? s.items[0].outcome : s.result.outcome);

  it('when tag, assign, revoke and assign of one partner wait together, interleaved with issuedAt cases, then one run applies them in their order and a late command is superseded', async () => {
    const [c1, c2, c3] = ['run-c1', 'run-c2', 'run-c3'];
    const [ann, bob] = ['ann.run@agency.test', 'bob.run@agency.test'];
    for (const hubId of [c1, c2, c3]) await svc.api.apply('p-100', { type: 'client.upsert', hubId, name: hubId, contactEmail: contactOf(hubId) }, TOKENS.admin);
    const pair = (type: string, hubId: string, email: string, issuedAt?: string) => ({ type, clientHubIds: [hubId], employeeEmails: [email], ...(issuedAt ? { issuedAt } : {}) });

    const { ids, statuses } = await postWaitingThenRun('p-100', [
      pair('access.assign', c1, ann), // before ann is tagged: refused
      { type: 'employee.tag', email: ann },
      pair('access.assign', c1, ann),
      pair('access.revoke', c1, ann),
      pair('access.assign', c1, ann),
      { type: 'employee.tag', email: bob },
      pair('access.assign', c2, bob, T('10:00')),
      pair('access.revoke', c2, bob, T('09:00')), // older than the assign applied before it
      pair('access.revoke', c2, bob, T('11:00')),
      pair('access.assign', c2, bob, T('10:30')), // a late assign never resurrects a newer revoke
      pair('access.assign', c3, bob, T('12:00')),
      { type: 'employee.untag', email: bob },
      pair('access.assign', c3, ann), // ann still tagged: applies
    ]);
    expect(statuses.map(outcomeOf)).toEqual([
      'UNKNOWN_EMPLOYEE', 'tagged', 'pending', 'revoked', 'pending',
      'tagged', 'pending', 'superseded', 'revoked', 'superseded', 'pending', 'untagged', 'pending',
    ]);
    expect(statuses.map((s) => s.state)).toEqual(['failed', ...ids.slice(1).map(() => 'completed')]);
    expect(await finishTimes(ids)).toHaveProperty('size', 1);

    const access = await svc.sql<{ hub_id: string; email: string; state: string }>(
      `select hub_id, email, state from access where hub_id like 'run-c%' order by hub_id, email`);
    expect(access).toEqual([
      { hub_id: c1, email: ann, state: 'pending' },
      { hub_id: c2, email: bob, state: 'revoked' },
      { hub_id: c3, email: ann, state: 'pending' },
      { hub_id: c3, email: bob, state: 'pending' },
    ]);
    // Emails only for requests still pending when the run ends: c1's second assign, c3's two (one command each).
    await waitFor(async () => (await svc.sql(`select 1 from outbox where payload->>'hubId' like 'run-c%' and state = 'sent'`)).length === 3, { what: 'three sent emails' });
    const mails = svc.smtp.messages.filter((m) => m.to.includes('boss.run-c'));
    expect(mails.map((m) => m.to).sort()).toEqual([contactOf(c1), contactOf(c3), contactOf(c3)]);

    // The refused pair has its own failed job with its code; the other pairs needed no job of their own.
    const refused = await svc.app.ctx.queues.pairs.getJob(jobIds.pair(ids[0]!, 0));
    await waitFor(async () => (await refused?.getState()) === 'failed', { what: 'the refused pair job to fail' });
    expect(refused!.failedReason).toMatch(/^UNKNOWN_EMPLOYEE: /);
    expect(refused!.attemptsMade).toBe(1);
    for (const id of ids.slice(2)) expect(await svc.app.ctx.queues.pairs.getJob(jobIds.pair(id, 0))).toBeUndefined();
  });

  it('when a refused command stands in the middle of a run, then it fails alone with its code, its job fails with it, and the commands around it apply', async () => {
    const [c1, c2] = ['mid-c1', 'mid-c2'];
    const [ann, eve] = ['ann.mid@agency.test', 'eve.mid@agency.test'];
    for (const hubId of [c1, c2]) await svc.api.apply('p-100', { type: 'client.upsert', hubId, name: hubId, contactEmail: contactOf(hubId) }, TOKENS.admin);

    const { ids, statuses } = await postWaitingThenRun('p-100', [
      { type: 'employee.tag', email: ann },
      { type: 'employee.untag', email: 'nobody.mid@agency.test' }, // refused by its handler
      { type: 'access.assign', clientHubIds: [c1], employeeEmails: [ann] },
      { type: 'team.email', to: 'channelConsultant', subject: 'Hi', body: 'Hello' }, // refused: no consultant on record
      { type: 'access.assign', clientHubIds: [c2], employeeEmails: [eve] }, // refused pair: eve is unknown
      { type: 'employee.tag', email: eve },
      { type: 'access.assign', clientHubIds: [c2], employeeEmails: [eve] },
    ]);
    expect(statuses.map((s) => [s.state, outcomeOf(s)])).toEqual([
      ['completed', 'tagged'],
      ['failed', 'UNKNOWN_EMPLOYEE'],
      ['completed', 'pending'],
      ['failed', 'NOT_FOUND'],
      ['failed', 'UNKNOWN_EMPLOYEE'],
      ['completed', 'tagged'],
      ['completed', 'pending'],
    ]);
    expect(statuses[4].items).toEqual([{ clientHubId: c2, employeeEmail: eve, state: 'failed', error: { code: 'UNKNOWN_EMPLOYEE', message: expect.any(String) } }]);
    expect(await finishTimes(ids)).toHaveProperty('size', 1);

    const commandJob = async (i: number) => svc.app.ctx.queues.commands.getJob(jobIds.command(ids[i]!, (await svc.sql<{ seq: string }>('select seq::text as seq from command where id = ?', [ids[i]]))[0]!.seq));
    for (const [i, code] of [[1, 'UNKNOWN_EMPLOYEE'], [3, 'NOT_FOUND']] as const) {
      await waitFor(async () => (await (await commandJob(i))?.getState()) === 'failed', { what: `the job of command ${i} to fail` });
      expect((await commandJob(i))!.failedReason).toMatch(new RegExp(`^${code}: `));
    }
    for (const i of [0, 2, 4, 5, 6]) await waitFor(async () => (await (await commandJob(i))?.getState()) === 'completed', { what: `the job of command ${i} to complete` });
    const refusedPair = await svc.app.ctx.queues.pairs.getJob(jobIds.pair(ids[4]!, 0));
    await waitFor(async () => (await refusedPair?.getState()) === 'failed', { what: 'the refused pair job to fail' });
    expect(refusedPair!.failedReason).toMatch(/^UNKNOWN_EMPLOYEE: /);
    expect(await svc.sql(`select hub_id, email, state from access where hub_id like 'mid-c%' order by hub_id`)).toEqual([
      { hub_id: c1, email: ann, state: 'pending' },
      { hub_id: c2, email: eve, state: 'pending' },
    ]);
  });
});

// ---- the request email: one digest per command and client -----------------------------------------

describe('the request digest of one command and one client', () => {
  let svc: TestService;

  beforeAll(async () => {
    // Small ranges (the default is 256 pairs), so that a command of a few dozen pairs spans several.
    svc = await startService({ PAIR_RANGE_SIZE: '32' });
    await svc.api.apply('p-100', { type: 'partner.upsert', name: 'Acme Partners' });
  });
  afterAll(async () => {
    await svc.close();
  });

  const linkRe = /http:\/\/grants\.test(\/v1\/grants\/(?:all\/)?[A-Za-z0-9._-]+)/;
  /** The personal links of an email, by employee (its lines: `- employee: link`), and its "grant all" link. */
  function linksOf(mail: CapturedMail): { personal: Map<string, string>; all: string | undefined } {
    const personal = new Map<string, string>();
    let all: string | undefined;
    for (const line of mail.text.split('\n')) {
      const path = linkRe.exec(line)?.[1];
      if (!path) continue;
      if (path.startsWith('/v1/grants/all/')) all = path;
      else personal.set(/^- (?:.*\()?([^()\s]+@[^()\s:]+)\)?:/.exec(line)?.[1] ?? '?', path);
    }
    return { personal, all };
  }
  const page = (path: string) => svc.api.request('GET', path, { token: null });
  const answer = (path: string) => svc.api.request('POST', path, { token: null, rawBody: 'decision=grant', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  const stateOf = async (hubId: string) => Object.fromEntries(
    (await svc.sql<{ email: string; state: string }>('select email, state from access where hub_id = ? order by email', [hubId])).map((r) => [r.email, r.state]));
  async function sentTo(hubId: string, n: number): Promise<CapturedMail[]> {
    await waitFor(async () => (await svc.sql(`select 1 from outbox where payload->>'hubId' = ? and state = 'sent'`, [hubId])).length === n, { what: `${n} sent emails to ${hubId}` });
    return svc.smtp.messages.filter((m) => m.to.includes(contactOf(hubId)));
  }

  it('when one assign makes several pairs of a client pending, then the client gets one email listing exactly those, each link grants only its own pair, and "grant all" grants the others once', async () => {
    const [c1, c2] = ['dg-c1', 'dg-c2'];
    const [ann, bob, cid, dan] = ['ann.dg@agency.test', 'bob.dg@agency.test', 'cid.dg@agency.test', 'dan.dg@agency.test'];
    const setup = await svc.api.batch('p-100', [
      ...[ann, bob, cid, dan].map((email) => ({ type: 'employee.tag', email, name: email.split('.')[0] })),
      { type: 'client.upsert', hubId: c1, name: 'Digest One', contactEmail: contactOf(c1), portalUserEmails: [dan] },
      { type: 'client.upsert', hubId: c2, name: 'Digest Two', contactEmail: contactOf(c2) },
      { type: 'access.assign', clientHubIds: [c1], employeeEmails: [cid] },
    ], TOKENS.admin);
    for (const c of setup.body.commands as { commandId: string }[]) expect((await svc.api.waitCommand(c.commandId)).state).toBe('completed');
    await sentTo(c1, 1);

    const st = await svc.api.apply('p-100', { type: 'access.assign', clientHubIds: [c1, c2], employeeEmails: [ann, bob, cid, dan] }, TOKENS.admin);
    expect(st.items.map((i: any) => `${i.clientHubId} ${i.employeeEmail.split('.')[0]} ${i.outcome}`)).toEqual([
      `${c1} ann pending`, `${c1} bob pending`, `${c1} cid unchanged`, `${c1} dan active`,
      `${c2} ann pending`, `${c2} bob pending`, `${c2} cid pending`, `${c2} dan pending`,
    ]);
    const digest1 = (await sentTo(c1, 2)).filter((m) => !m.text.includes(cid));
    expect(digest1).toHaveLength(1);
    const d1 = linksOf(digest1[0]!);
    expect([...d1.personal.keys()].sort()).toEqual([ann, bob]);
    expect(d1.all).toBeDefined();
    const [digest2] = await sentTo(c2, 1);
    const d2 = linksOf(digest2!);
    expect([...d2.personal.keys()].sort()).toEqual([ann, bob, cid, dan]);
    expect(d2.all).toBeDefined();
    expect(await svc.sql(`select notification_key from outbox where payload->>'commandId' = ? order by notification_key`, [st.commandId]))
      .toEqual([c1, c2].map((h) => ({ notification_key: `access.request:${st.commandId}:${h}` })));

    // Ann's own link grants Ann alone.
    expect((await answer(d1.personal.get(ann)!)).status).toBe(200);
    expect(await stateOf(c1)).toEqual({ [ann]: 'active', [bob]: 'pending', [cid]: 'pending', [dan]: 'active' });

    // "Grant all" of client 1: lists only Bob now (Ann answered, Cid's request is another command's), grants him once.
    const view = await page(d1.all!);
    expect(view.status).toBe(200);
    expect(view.body).toContain(bob);
    expect(view.body).not.toContain(ann);
    expect(view.body).not.toContain(cid);
    const granted = await answer(d1.all!);
    expect(granted.status).toBe(200);
    expect(granted.body).toContain(bob);
    expect(await stateOf(c1)).toEqual({ [ann]: 'active', [bob]: 'active', [cid]: 'pending', [dan]: 'active' });
    expect((await answer(d1.all!)).status).toBe(410);
    expect((await answer(d1.personal.get(bob)!)).status).toBe(410);

    // "Grant all" of client 2 grants its four pairs, each once; their own links are used after it.
    expect((await answer(d2.all!)).status).toBe(200);
    expect(await stateOf(c2)).toEqual({ [ann]: 'active', [bob]: 'active', [cid]: 'active', [dan]: 'active' });
    expect((await answer(d2.all!)).status).toBe(410);
    for (const path of d2.personal.values()) expect((await page(path)).status).toBe(410);
    const answers = await svc.sql<{ n: number }>(`select count(*)::int as n from command where type = 'access.grant' and payload->>'clientHubId' = ?`, [c2]);
    expect(answers).toEqual([{ n: 4 }]);
    // A forged "grant all" link opens nothing.
    expect((await answer(d2.all!.replace(/.$/, (ch) => (ch === 'A' ? 'B' : 'A')))).status).toBe(404);
  });

  it('when one assign has more pairs than a range holds, then ranges never split a client and each client still gets one email naming all its people', async () => {
    const hubs = Array.from({ length: 12 }, (_, i) => `dr-c${i}`);
    const people = ['ann.dr@agency.test', 'bob.dr@agency.test', 'cid.dr@agency.test'];
    const setup = await svc.api.batch('p-100', [
      ...people.map((email) => ({ type: 'employee.tag', email })),
      ...hubs.map((hubId) => ({ type: 'client.upsert', hubId, name: hubId, contactEmail: contactOf(hubId) })),
    ], TOKENS.admin);
    for (const c of setup.body.commands as { commandId: string }[]) await svc.api.waitCommand(c.commandId);

    const st = await svc.api.apply('p-100', { type: 'access.assign', clientHubIds: hubs, employeeEmails: people }, TOKENS.admin);
    expect(st.state).toBe('completed');
    expect(await svc.sql('select range_size from command where id = ?', [st.commandId])).toEqual([{ range_size: 30 }]);
    for (const hubId of hubs) {
      const [mail, ...more] = await sentTo(hubId, 1);
      expect(more).toEqual([]);
      expect([...linksOf(mail!).personal.keys()].sort()).toEqual(people);
    }
  });
});

// ---- a worker killed in the middle of runs (child processes) ---------------------------------------

describe('runs across a worker killed in the middle', () => {
  const children: ChildService[] = [];
  let smtp: TestSmtp;
  let env: Record<string, string>;
  let pool: pg.Pool | null = null;
  const sql = async <T = any>(query: string, params: unknown[] = []): Promise<T[]> => {
    pool ??= new pg.Pool({ connectionString: env.DATABASE_URL, max: 2 });
    return (await pool.query(query, params)).rows as T[];
  };
  const spawnRole = async (roles: string) => {
    const child = spawnService({ ...env, ROLES: roles, PORT: '0' });
    children.push(child);
    return { child, url: await child.url };
  };

  beforeAll(async () => {
    smtp = await startSmtp();
    env = testEnv(smtp.url, { JOB_LOCK_MS: '2000', RECONCILE_INTERVAL_MS: '300', RECONCILE_GRACE_MS: '500' });
  });
  afterAll(async () => {
    await Promise.all(children.map((c) => c.kill('SIGKILL')));
    await pool?.end();
    await smtp.close();
    await dropQueues(env.REDIS_URL!, env.QUEUE_PREFIX!);
    await dropDatabase(env.DATABASE_URL!);
  });

  it('when a worker process is SIGKILLed while it applies a long run of one partner\'s single commands, then after a restart each command is applied once, in order', async () => {
    const { url } = await spawnRole('api');
    const api = makeApi(url);
    const partnerId = 'p-runkill';
    const email = 'emp@runkill.test';
    const hubs = Array.from({ length: 300 }, (_, i) => `rk-${i}`);
    // Set-up and stream, all accepted while no worker runs: one partner's 1,203 commands wait in order.
    const setup = [
      { type: 'partner.upsert', name: 'Run Kill Partners' },
      { type: 'employee.tag', email },
      ...hubs.map((hubId) => ({ type: 'client.upsert', hubId, name: hubId, contactEmail: contactOf(hubId) })),
    ];
    const stream = hubs.flatMap((hubId) => ['access.assign', 'access.revoke', 'access.assign'].map((type) => ({ type, clientHubIds: [hubId], employeeEmails: [email] })));
    const ids: string[] = [];
    for (const chunk of [setup.slice(0, 2), setup.slice(2), ...Array.from({ length: 3 }, (_, k) => stream.slice(k * 300, (k + 1) * 300))]) {
      const r = await api.batch(partnerId, chunk, TOKENS.admin);
      expect(r.status).toBe(202);
      ids.push(...(r.body.commands as { commandId: string }[]).map((c) => c.commandId));
    }
    const streamIds = ids.slice(setup.length);
    const completed = async () => Number((await sql<{ n: string }>(`select count(*) as n from command where id = any($1) and state = 'completed'`, [ids]))[0]!.n);

    let { child: worker } = await spawnRole('worker');
    await waitFor(async () => (await completed()) >= 450, { timeoutMs: 30_000, intervalMs: 5, what: 'some runs to commit' });
    await worker.kill('SIGKILL');
    const atKill = await completed();
    expect(atKill).toBeLessThan(ids.length);

    ({ child: worker } = await spawnRole('worker'));
    await waitFor(async () => (await completed()) === ids.length, { timeoutMs: 40_000, what: 'every command to complete after the restart' });

    // In order: per client, assign → pending, revoke → revoked, assign → pending (a command applied
    // twice, or out of order, would read unchanged somewhere).
    const rows = await sql<{ id: string; state: string; attempts: number; outcome: string; items: number }>(
      `select c.id, c.state, c.attempts, c.result->>'outcome' as outcome, (select count(*)::int from command_item i where i.command_id = c.id) as items
         from command c where c.id = any($1)`, [streamIds]);
    const byId = new Map(rows.map((r) => [r.id, r]));
    expect(streamIds.map((id) => byId.get(id)!.outcome)).toEqual(hubs.flatMap(() => ['pending', 'revoked', 'pending']));
    for (const id of streamIds) {
      const r = byId.get(id)!;
      expect({ id, items: r.items }).toEqual({ id, items: 1 });
      expect(r.attempts).toBeGreaterThanOrEqual(1);
      expect(r.attempts).toBeLessThanOrEqual(4);
    }
    expect(await sql(`select count(*)::int as n from access where partner_id = $1 and state = 'pending'`, [partnerId])).toEqual([{ n: hubs.length }]);
    // Every request email that a run left pending was sent, each with its own Message-ID, and each
    // client's live link is its latest request's (an older request's token was withdrawn).
    await waitFor(async () => (await sql(`select 1 from outbox where partner_id = $1 and state <> 'sent'`, [partnerId])).length === 0, { timeoutMs: 30_000, what: 'every email to be sent' });
    const live = await sql<{ hub_id: string; n: number }>(
      `select hub_id, count(*)::int as n from grant_token where partner_id = $1 and used_at is null and withdrawn_at is null group by hub_id`, [partnerId]);
    expect(live.filter((l) => l.n !== 1)).toEqual([]);
    expect(live).toHaveLength(hubs.length);
    const outbox = await sql<{ message_id: string }>(`select message_id from outbox where partner_id = $1`, [partnerId]);
    const delivered = new Set(smtp.messages.filter((m: CapturedMail) => m.to.includes('boss.rk-')).map((m) => m.messageId));
    expect(delivered).toEqual(new Set(outbox.map((o) => o.message_id)));
  }, 90_000);
});
