import { mkdir, stat } from 'node:fs/promises';
import { chromium, type Browser } from 'playwright-core';
import { startService, TOKENS, waitFor, type TestService } from '../helpers/harness.js';
import { jobIds } from '../../src/jobs/contracts.js';

/** The queue dashboard (contract §7): Bull Board at /admin/queues behind Basic auth with an admin token as the password. */

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SCREENSHOT = 'test-results/dashboard.png';
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/;

describe('the queue dashboard', () => {
  let svc: TestService;
  let browser: Browser | undefined;
  const rivalId = 'rival-assign-1';
  const failedJobId = jobIds.pair(rivalId, 0);

  const board = (path: string, init: { method?: string; authorization?: string } = {}) =>
    fetch(`${svc.api.base}/admin/queues${path}`, { method: init.method ?? 'GET', headers: init.authorization ? { authorization: init.authorization } : {} });

  beforeAll(async () => {
    svc = await startService();
    const { api } = svc;
    // The duplicate-email conflict: the same tagged email and client under p-100 and p-200; p-100 assigns first.
    for (const partner of ['p-100', 'p-200']) {
      expect((await api.apply(partner, { type: 'partner.upsert', name: `Partner ${partner}` })).state).toBe('completed');
      expect((await api.apply(partner, { type: 'client.upsert', hubId: 'c-1', name: 'Client One', contactEmail: 'boss@c1.test' })).state).toBe('completed');
      expect((await api.apply(partner, { type: 'employee.tag', email: 'ann@acme.test', name: 'Ann Agent' })).state).toBe('completed');
    }
    expect((await api.apply('p-100', { type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: ['ann@acme.test'] }, TOKENS.crm)).state).toBe('completed');
    const rival = await api.apply('p-200', { type: 'access.assign', commandId: rivalId, clientHubIds: ['c-1'], employeeEmails: ['ann@acme.test'] }, TOKENS.other);
    expect(rival.state).toBe('failed');
    expect(rival.items[0].error.code).toBe('EMAIL_LINKED_TO_OTHER_PARTNER');
    await waitFor(async () => (await svc.app.ctx.queues.pairs.getJobState(failedJobId)) === 'failed', { what: 'the conflict pair job to be failed in the queue' });
    await waitFor(() => svc.smtp.messages.length === 1, { what: "p-100's grant email" });
    // A team email goes through a mail job (grant emails are sent by the job whose run committed them).
    expect((await api.apply('p-100', { type: 'partner.upsert', name: 'Partner p-100', team: { channelAccountManager: { name: 'Cam', email: 'cam@acme.test' } } })).state).toBe('completed');
    expect((await api.apply('p-100', { type: 'team.email', to: 'channelAccountManager', subject: 'Hello', body: 'A note.' })).state).toBe('completed');
    await waitFor(() => svc.smtp.messages.length === 2, { what: 'the team email' });
  });

  afterAll(async () => {
    await browser?.close();
    await svc?.close();
  });

  it('when the dashboard is asked for without credentials, with a wrong password or with a non-admin token, then it answers 401 and hides the queues', async () => {
    const none = await board('');
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Basic /);
    expect(((await none.json()) as { error: { code: string } }).error.code).toBe('UNAUTHENTICATED');

    for (const authorization of [basic('ops', 'not-a-token'), basic('ops', TOKENS.crm), basic('ops', TOKENS.other), basic(TOKENS.admin, ''), `Bearer ${TOKENS.crm}`]) {
      const page = await board('', { authorization });
      expect({ authorization, status: page.status }).toEqual({ authorization, status: 401 });
      const apiCall = await board('/api/queues?activeQueue=pairs&status=failed&page=1', { authorization });
      expect({ authorization, status: apiCall.status }).toEqual({ authorization, status: 401 });
      expect(await apiCall.text()).not.toContain(failedJobId);
    }

    // A retry without credentials is refused and leaves the job failed.
    const retry = await board(`/api/queues/pairs/${failedJobId}/retry`, { method: 'PUT' });
    expect(retry.status).toBe(401);
    expect(await svc.app.ctx.queues.pairs.getJobState(failedJobId)).toBe('failed');

    const ok = await board('', { authorization: basic('anyone', TOKENS.admin) });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('<title>Partner access</title>');
  });

  it('when an operator opens the dashboard in a real browser with the admin token, then the failed conflict job of the pairs queue shows with its reason', async () => {
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
    const context = await browser.newContext({ httpCredentials: { username: 'ops', password: TOKENS.admin }, viewport: { width: 1400, height: 1000 } });
    // Offline and deterministic: nothing but the service under test (the board links a web font).
    const base = new URL(svc.api.base);
    await context.route((url) => url.host !== base.host, (route) => route.abort());
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);

    const home = await page.goto(`${svc.api.base}/admin/queues`, { waitUntil: 'domcontentloaded' });
    expect(home?.status()).toBe(200);
    await page.locator('a[href="/admin/queues/queue/pairs"]').first().click();
    await page.waitForURL(/\/admin\/queues\/queue\/pairs$/);
    await page.locator('a[href="/admin/queues/queue/pairs?status=failed"]').first().click();
    await page.waitForURL(/\/admin\/queues\/queue\/pairs\?status=failed$/);

    await page.getByText(failedJobId, { exact: true }).first().waitFor();
    await page.getByText(/EMAIL_LINKED_TO_OTHER_PARTNER/).first().waitFor();
    const text = await page.locator('body').innerText();
    expect(text).toContain(failedJobId);
    expect(text).toContain('access.assign');
    expect(text).toContain('EMAIL_LINKED_TO_OTHER_PARTNER: Their email address is already linked to another partner record for this client.');
    // The refusal reads as its code and message, once, without a stack trace or source paths.
    expect(text.split('EMAIL_LINKED_TO_OTHER_PARTNER: ').length - 1).toBe(1);
    expect(text).not.toMatch(/^\s*at\s/m);
    expect(text).not.toMatch(/UnrecoverableError|\.ts:\d+|node_modules/);
    // The job links to its command's status.
    const link = page.locator(`a[href="/v1/commands/${rivalId}"]`);
    expect(await link.count()).toBe(1);
    expect((await link.innerText()).trim()).toBe(`command ${rivalId}`);
    // The queue has a name for people and says what its jobs are.
    expect(text).toContain('Access pairs');
    expect(text).toContain('a refused pair fails on a job of its own with its code');
    // Neither the employee's email nor the other partner's identity is on the page.
    expect(text).not.toContain('ann@acme.test');
    expect(text).not.toMatch(EMAIL);
    expect(text).not.toContain('p-100');

    await mkdir('test-results', { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    const shot = await stat(SCREENSHOT);
    expect(shot.isFile()).toBe(true);
    expect(shot.size).toBeGreaterThan(1000);
    await context.close();
  });

  it('when the dashboard API lists the jobs of every queue, then job data carries ids only and no email address', async () => {
    const authorization = basic('ops', TOKENS.admin);
    // Single-pair assigns are applied inside their command job's run (no `pairs` job unless refused):
    // a command of several pairs fans out into a range job. This revoke of two never-assigned pairs
    // is one range job of pairs 0–2, completed, changing nothing and sending no email.
    const multiId = 'dashboard-multi-revoke';
    const multi = await svc.api.apply('p-100', { type: 'access.revoke', commandId: multiId, clientHubIds: ['c-1'], employeeEmails: ['una@acme.test', 'uli@acme.test'] }, TOKENS.crm);
    expect(multi.state).toBe('completed');
    const rangeJobId = jobIds.pairRange(multiId, 0, 2);
    await waitFor(async () => (await svc.app.ctx.queues.pairs.getJobState(rangeJobId)) === 'completed', { what: 'the range job of the two-pair revoke to complete' });
    const seen: string[] = [];
    for (const [queue, status] of [['pairs', 'failed'], ['pairs', 'completed'], ['commands', 'completed'], ['mail', 'completed']] as const) {
      const r = await board(`/api/queues?activeQueue=${queue}&status=${status}&page=1`, { authorization });
      expect(r.status).toBe(200);
      const body = (await r.json()) as { queues: { name: string; displayName?: string; description?: string; counts: Record<string, number>; jobs: { id: string; name: string; data: Record<string, unknown>; failedReason?: string; stacktrace: string[]; externalUrl?: { href: string } }[] }[] };
      const q = body.queues.find((x) => x.name === queue)!;
      expect(q.jobs.length).toBeGreaterThan(0);
      for (const job of q.jobs) {
        seen.push(job.id);
        const keys = Object.keys(job.data).sort();
        // pairs: a range of a command's pairs, or one (refused) pair on its own job
        const pairKeys = status === 'failed' ? ['commandId', 'idx'] : ['commandId', 'from', 'to'];
        expect(keys).toEqual(queue === 'pairs' ? pairKeys : queue === 'commands' ? ['commandId'] : ['outboxId']);
        expect(JSON.stringify(job.data)).not.toMatch(EMAIL);
        expect(JSON.stringify(job)).not.toContain('ann@acme.test');
        expect(JSON.stringify(job)).not.toContain('cam@acme.test');
        expect(JSON.stringify(job)).not.toContain('boss@c1.test');
      }
      if (queue === 'pairs' && status === 'failed') {
        expect(q.counts.failed).toBe(1);
        expect(q.jobs.map((j) => j.id)).toEqual([failedJobId]);
        expect(q.jobs[0]!.data).toEqual({ commandId: rivalId, idx: 0 });
        expect(q.jobs[0]!.failedReason).toBe('EMAIL_LINKED_TO_OTHER_PARTNER: Their email address is already linked to another partner record for this client.');
        expect(q.jobs[0]!.stacktrace).toEqual([]);
      }
      if (queue === 'pairs' && status === 'completed') {
        expect(q.counts.completed).toBe(1);
        expect(q.jobs.map((j) => ({ id: j.id, data: j.data }))).toEqual([{ id: rangeJobId, data: { commandId: multiId, from: 0, to: 2 } }]);
      }
      // Every job of a command links to the command's status; an email job belongs to no command.
      for (const job of q.jobs) {
        expect(job.externalUrl).toEqual(queue === 'mail' ? undefined : { href: `/v1/commands/${encodeURIComponent(String(job.data.commandId))}`, displayText: `command ${String(job.data.commandId)}` });
      }
      expect(q.displayName).toBe({ pairs: 'Access pairs', commands: 'Commands', mail: 'Emails' }[queue]);
      expect(q.description!.length).toBeGreaterThan(20);
    }
    expect(seen).toContain(failedJobId);
  });

  it('when p-100 removes its access and an operator retries the failed job from the dashboard, then the pair completes for p-200', async () => {
    const { api } = svc;
    // Retrying while p-100 still holds the email fails again with the same code.
    const early = await board(`/api/queues/pairs/${failedJobId}/retry`, { method: 'PUT', authorization: basic('ops', TOKENS.admin) });
    expect(early.status).toBe(204);
    await waitFor(async () => {
      const job = await svc.app.ctx.queues.pairs.getJob(failedJobId);
      return (await job?.getState()) === 'failed' && (job?.attemptsMade ?? 0) >= 2;
    }, { what: 'the early retry to fail again' });
    expect((await api.get(`/v1/commands/${rivalId}`, TOKENS.other)).body).toMatchObject({ state: 'failed', error: { code: 'EMAIL_LINKED_TO_OTHER_PARTNER' } });
    // The second refusal adds no stack trace either: the reason is there once, not once per attempt.
    expect((await svc.app.ctx.queues.pairs.getJob(failedJobId))!.stacktrace).toEqual([]);

    const revoked = await api.apply('p-100', { type: 'access.revoke', clientHubIds: ['c-1'], employeeEmails: ['ann@acme.test'] }, TOKENS.crm);
    expect(revoked.items).toEqual([{ clientHubId: 'c-1', employeeEmail: 'ann@acme.test', state: 'completed', outcome: 'revoked' }]);

    const retry = await board(`/api/queues/pairs/${failedJobId}/retry`, { method: 'PUT', authorization: basic('ops', TOKENS.admin) });
    expect(retry.status).toBe(204);
    await waitFor(async () => (await svc.app.ctx.queues.pairs.getJobState(failedJobId)) === 'completed', { what: 'the retried pair job to complete' });
    let status: any;
    await waitFor(async () => {
      status = (await api.get(`/v1/commands/${rivalId}`, TOKENS.other)).body;
      return status.state === 'completed';
    }, { what: 'the rival command to be completed' });
    expect(status.items).toEqual([{ clientHubId: 'c-1', employeeEmail: 'ann@acme.test', state: 'completed', outcome: 'pending' }]);
    expect(status.error).toBeUndefined();

    const clients = await api.get('/v1/partners/p-200/clients', TOKENS.other);
    expect(clients.body.clients[0].employees).toEqual([{ email: 'ann@acme.test', access: 'pending' }]);
    // p-200's request reaches the client: a second grant email, for p-200.
    await waitFor(() => svc.smtp.messages.length === 3, { what: "p-200's grant email" });
    expect(svc.smtp.messages[2]!.subject).toContain('Partner p-200');

    const listed = await board('/api/queues?activeQueue=pairs&status=failed&page=1', { authorization: basic('ops', TOKENS.admin) });
    const pairs = ((await listed.json()) as { queues: { name: string; counts: Record<string, number> }[] }).queues.find((q) => q.name === 'pairs')!;
    expect(pairs.counts.failed).toBe(0);
  });
});
