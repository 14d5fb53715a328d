import { readFileSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { startService, TOKENS, waitFor, type TestService } from '../helpers/harness.js';

/**
 * The partner web app (contract §10) in a real browser (system Chromium, headless): every page a
 * partner uses, with screenshots in test-results/webapp/ and axe-core run on each page.
 */

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SHOTS = 'test-results/webapp';
const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/;
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const monthOf = (d: Date) => d.toISOString().slice(0, 7);
const monthsAgo = (n: number) => {
  const d = new Date();
  return monthOf(new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - n, 1)));
};

interface AxeViolation { id: string; impact: string | null; help: string; nodes: { target: string[] }[] }

describe('the partner web app in a browser', () => {
  let svc: TestService;
  let browser: Browser;
  const shots: string[] = [];
  const axeReport: Record<string, number> = {};
  const cspViolations: string[] = [];

  /** axe-core in the page (evaluated through the debugger protocol, which the page's CSP does not restrict); serious and critical findings fail. */
  async function checkA11y(page: Page, name: string): Promise<void> {
    await page.evaluate(AXE_SOURCE);
    // A string, as the test compiles without the DOM library.
    const violations = await page.evaluate<AxeViolation[]>(
      `axe.run(document, { resultTypes: ['violations'] }).then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => ({ target: n.target })) })))`,
    );
    const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    axeReport[name] = violations.length;
    expect({ page: name, serious: bad }).toEqual({ page: name, serious: [] });
  }

  async function shot(page: Page, name: string): Promise<void> {
    const path = `${SHOTS}/${name}.png`;
    await page.screenshot({ path, fullPage: true });
    expect((await stat(path)).size).toBeGreaterThan(1000);
    shots.push(path);
  }

  async function newContext(): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const base = new URL(svc.api.base);
    // Offline and deterministic: only the service under test (and the attacker page below) answers.
    await context.route((url) => url.host !== base.host && url.host !== 'evil.test', (route) => route.abort());
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    page.on('pageerror', (e) => cspViolations.push(`page error: ${e.message}`));
    return { context, page };
  }

  async function signIn(page: Page, token: string): Promise<void> {
    await page.goto(`${svc.api.base}/app`);
    await page.getByLabel('API token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/\/app\/partners\/p-100\/(employees|clients)$/);
  }

  /** Submits a form and waits on its result page until the command settled; returns the state. */
  async function settle(page: Page): Promise<string> {
    await page.waitForURL(/\/commands\//);
    const state = page.locator('#command-state');
    await waitFor(async () => ['completed', 'failed'].includes((await state.getAttribute('data-state')) ?? ''), { what: 'the command to settle on the result page', timeoutMs: 20_000 });
    return (await state.getAttribute('data-state'))!;
  }

  beforeAll(async () => {
    await mkdir(SHOTS, { recursive: true });
    svc = await startService();
    const { api } = svc;
    const renewal = new Date(Date.now() + 30 * 86_400_000).toISOString().slice(0, 10);
    const setup: [string, Record<string, unknown>][] = [
      ['p-100', { type: 'partner.upsert', name: 'Acme Partners', team: { channelAccountManager: { name: 'Cam Manager', email: 'cam@hub.test' }, channelConsultant: { name: 'Cora Consultant', email: 'cora@hub.test' } } }],
      ['p-200', { type: 'partner.upsert', name: 'Rival Partners' }],
      ['p-100', {
        type: 'client.upsert', hubId: 'c-1', name: 'Client One', contactEmail: 'boss@c1.test', mrr: 1200, products: ['Sales Hub', 'Service Hub'], renewalDate: renewal,
        companyInfo: { domain: 'one.test', industry: 'Software', employees: 120, country: 'Sweden', city: 'Malmö' },
        subscriptions: [{ product: 'Sales Hub', tier: 'Professional', mrr: 800 }], contactTier: 'Starter', emailTier: 'Pro',
        renewalOwner: { name: 'Rita Renewals', email: 'rita@hub.test' }, currentSubscription: { name: 'Sales Hub Pro', mrr: 800 },
        portalUsage: { products: ['Sales Hub'], apps: ['Zoom', 'Slack'] }, platformEngagementScore: 72,
      }],
      ['p-100', { type: 'client.upsert', hubId: 'c-2', name: 'Client Two', contactEmail: 'boss@c2.test', mrr: 300, products: ['Marketing Hub'] }],
      ['p-100', { type: 'client.upsert', hubId: 'c-3', name: 'Client Three', contactEmail: 'boss@c3.test', mrr: 500 }],
      ['p-100', { type: 'client.upsert', hubId: 'c-4', name: 'Client Four', contactEmail: 'boss@c4.test', mrr: 50 }],
      ['p-200', { type: 'client.upsert', hubId: 'c-1', name: 'Client One', contactEmail: 'boss@c1.test' }],
      ['p-100', { type: 'employee.tag', email: 'ann@acme.test', name: 'Ann Agent' }],
      ['p-100', { type: 'employee.tag', email: 'bob@acme.test', name: 'Bob Builder' }],
      ['p-200', { type: 'employee.tag', email: 'bob@acme.test', name: 'Bob Builder' }],
      ['p-100', { type: 'sale.record', saleId: 's-1', clientHubId: 'c-1', closedOn: `${monthsAgo(3)}-10`, mrr: 500 }],
      ['p-100', { type: 'sale.record', saleId: 's-2', clientHubId: 'c-2', closedOn: `${monthsAgo(1)}-05`, mrr: 300 }],
      ['p-100', { type: 'sale.record', saleId: 's-3', clientHubId: 'c-1', closedOn: `${monthsAgo(1)}-20`, mrr: -100 }],
    ];
    for (const [partner, command] of setup) expect({ command: command.type, state: (await api.apply(partner, command)).state }).toEqual({ command: command.type, state: 'completed' });
    // Ann waits for Client One; Bob is already linked to Client One through the rival partner: a conflict for p-100.
    expect((await api.apply('p-100', { type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: ['ann@acme.test'] }, TOKENS.crm)).state).toBe('completed');
    expect((await api.apply('p-200', { type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: ['bob@acme.test'] }, TOKENS.other)).state).toBe('completed');
    expect((await api.apply('p-100', { type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: ['bob@acme.test'] }, TOKENS.crm)).state).toBe('failed');
    expect((await api.apply('p-100', { type: 'credit.recalculate' })).state).toBe('completed');
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
  });

  afterAll(async () => {
    await browser?.close();
    await svc?.close();
    // The closing note lists these: which pages were captured, and axe's (non-serious) findings per page.
    process.stdout.write(`webapp screenshots: ${shots.join(', ')}\naxe violations per page (none serious or critical): ${JSON.stringify(axeReport)}\n`);
  });

  it('when a partner with employees:read uses every page, then each action goes through the command log and shows its outcome', async () => {
    const { context, page } = await newContext();

    // Sign in.
    await page.goto(`${svc.api.base}/app`);
    await page.waitForURL(/\/app\/sign-in$/);
    await checkA11y(page, 'sign-in');
    await shot(page, 'sign-in');
    await signIn(page, TOKENS.crm);

    // The employees tab.
    expect(page.url()).toMatch(/\/employees$/);
    const nav = page.getByRole('navigation', { name: 'Dashboard sections' });
    await expect(nav.getByRole('link', { name: 'Partner employees' }).getAttribute('aria-current')).resolves.toBe('page');
    const ann = page.locator('li[data-employee="ann@acme.test"]');
    await expect(ann.locator('tr[data-client="c-1"]').getAttribute('data-access')).resolves.toBe('pending');
    await checkA11y(page, 'employees');
    await shot(page, 'employees');

    // Assign two clients to Ann with the dialog: both pending.
    await ann.getByRole('link', { name: 'Assign clients to Ann Agent' }).click();
    await page.getByRole('heading', { level: 1, name: 'Assign clients to Ann Agent' }).waitFor();
    await page.getByLabel(/Client Two/).check();
    await page.getByLabel('Or type client hub ids').fill('c-3');
    await checkA11y(page, 'assign-clients');
    await shot(page, 'assign-clients');
    await page.getByRole('button', { name: 'Assign clients' }).click();
    expect(await settle(page)).toBe('completed');
    const items = page.locator('#command-items tbody tr');
    await expect(items.count()).resolves.toBe(2);
    for (const hub of ['c-2', 'c-3']) await expect(page.locator(`#command-items tr[data-client="${hub}"]`).getAttribute('data-outcome')).resolves.toBe('pending');
    await checkA11y(page, 'result');
    await shot(page, 'result-assign');
    await page.getByRole('link', { name: 'Back' }).click();
    await page.waitForURL(/\/employees$/);
    for (const hub of ['c-1', 'c-2', 'c-3']) await expect(ann.locator(`tr[data-client="${hub}"]`).getAttribute('data-access')).resolves.toBe('pending');

    // Remove an access by typing REMOVE: a wrong word keeps the button disabled.
    await ann.locator('summary', { hasText: 'Remove access' }).click();
    const removeForm = ann.locator('form[action$="/actions/revoke"]');
    await removeForm.getByLabel(/Client Three/).check();
    const confirm = removeForm.getByLabel('Type REMOVE to confirm');
    const removeButton = removeForm.getByRole('button', { name: 'Remove access' });
    await expect(removeButton.isDisabled()).resolves.toBe(true);
    await confirm.fill('remove');
    await expect(removeButton.isDisabled()).resolves.toBe(true);
    await confirm.fill('REMOV');
    await expect(removeButton.isDisabled()).resolves.toBe(true);
    await checkA11y(page, 'employees-remove-dialog');
    await shot(page, 'employees-remove-dialog');
    await confirm.fill('REMOVE');
    await expect(removeButton.isEnabled()).resolves.toBe(true);
    await removeButton.click();
    expect(await settle(page)).toBe('completed');
    await expect(page.locator('#command-items tr[data-client="c-3"]').getAttribute('data-outcome')).resolves.toBe('revoked');
    await page.getByRole('link', { name: 'Back' }).click();
    await expect(ann.locator('tr[data-client="c-3"]').count()).resolves.toBe(0);
    await expect(ann.locator('tr[data-client="c-2"]').getAttribute('data-access')).resolves.toBe('pending');

    // The client list, and terminating a client.
    await nav.getByRole('link', { name: 'Client list' }).click();
    await page.waitForURL(/\/clients$/);
    await checkA11y(page, 'clients');
    await shot(page, 'clients');
    await page.getByRole('link', { name: 'Client Four' }).click();
    await page.getByRole('heading', { level: 1, name: 'Client Four' }).waitFor();
    await page.locator('summary', { hasText: 'Terminate services' }).click();
    await page.getByLabel('Yes, terminate services for Client Four').check();
    await page.locator('form[action$="/actions/terminate"]').getByRole('button', { name: 'Terminate services' }).click();
    expect(await settle(page)).toBe('completed');
    await shot(page, 'result-terminate');
    await page.getByRole('link', { name: 'Back' }).click();
    await page.getByText('Services are terminated for this client.').waitFor();
    await nav.getByRole('link', { name: 'Client list' }).click();
    await expect(page.locator('tr[data-client="c-4"]').getAttribute('data-status')).resolves.toBe('terminated');

    // A client's panel and its four tabs.
    await page.getByRole('link', { name: 'Client One' }).click();
    await page.getByRole('heading', { level: 1, name: 'Client One' }).waitFor();
    const tablist = page.getByRole('tablist');
    await expect(tablist.getByRole('tab').count()).resolves.toBe(4);
    for (const [tab, text] of [['Renewals', 'Rita Renewals'], ['Portal usage', 'Slack'], ['Platform engagement', '72 of 100'], ['Client info', 'Malmö']] as const) {
      await tablist.getByRole('tab', { name: tab }).click();
      await expect(tablist.getByRole('tab', { name: tab }).getAttribute('aria-selected')).resolves.toBe('true');
      const panel = page.getByRole('tabpanel');
      await expect(panel.count()).resolves.toBe(1);
      await expect(panel.innerText()).resolves.toContain(text);
      await checkA11y(page, `client-panel-${tab}`);
      await shot(page, `client-panel-${tab.toLowerCase().replaceAll(' ', '-')}`);
    }
    // Keyboard: arrow keys move between tabs.
    await tablist.getByRole('tab', { name: 'Client info' }).focus();
    await page.keyboard.press('ArrowRight');
    await expect(tablist.getByRole('tab', { name: 'Renewals' }).getAttribute('aria-selected')).resolves.toBe('true');
    await expect(page.locator('tr[data-employee="ann@acme.test"]').getAttribute('data-access')).resolves.toBe('pending');

    // Tier: the chart, one bar per month, and a chosen month's breakdown as GET …/credit gives it.
    await nav.getByRole('link', { name: 'Tier' }).click();
    await page.waitForURL(/\/tier$/);
    const canvas = page.locator('#credit-chart canvas');
    await canvas.waitFor();
    const box = await canvas.boundingBox();
    expect(box!.width).toBeGreaterThan(100);
    expect(box!.height).toBeGreaterThan(100);
    const credit = (await svc.api.get('/v1/partners/p-100/credit', TOKENS.crm)).body as { months: { month: string; new: number; increased: number; expired: number; decreased: number; total: number }[] };
    const embedded = JSON.parse((await page.locator('#credit-data').textContent())!) as { months: { month: string; total: number }[] };
    expect(embedded.months.map((m) => [m.month, m.total])).toEqual(credit.months.map((m) => [m.month, m.total]));
    expect(new Set(embedded.months.map((m) => m.month)).size).toBe(embedded.months.length);
    await expect(page.locator('#credit-chart').getAttribute('data-points')).resolves.toBe(String(credit.months.length));
    await checkA11y(page, 'tier');
    await shot(page, 'tier');
    const chosen = credit.months.find((m) => m.month === monthsAgo(1))!;
    expect(chosen.new + chosen.decreased).toBeGreaterThan(0);
    await page.getByLabel('Month', { exact: true }).selectOption(chosen.month);
    await page.getByRole('button', { name: 'Show' }).click();
    await page.waitForURL(new RegExp(`month=${chosen.month}`));
    const breakdown = page.locator('#month-breakdown');
    await expect(breakdown.getAttribute('data-month')).resolves.toBe(chosen.month);
    for (const k of ['new', 'increased', 'expired', 'decreased', 'total'] as const) {
      await expect(breakdown.locator(`dd[data-field="${k}"]`).getAttribute('data-value')).resolves.toBe(String(chosen[k]));
    }
    await shot(page, 'tier-month');

    // Alerts: renewals, pending requests by age, conflicts with the three ways out.
    await nav.getByRole('link', { name: 'Alerts' }).click();
    await page.waitForURL(/\/alerts$/);
    await page.locator('section', { has: page.getByRole('heading', { name: 'Upcoming renewals' }) }).getByRole('link', { name: 'Client One' }).waitFor();
    const pending = page.locator('section', { has: page.getByRole('heading', { name: 'Pending requests by age' }) });
    await expect(pending.locator('tr[data-client="c-2"]').count()).resolves.toBe(1);
    const conflicts = page.locator('section', { has: page.getByRole('heading', { name: 'Conflicts' }) });
    await expect(conflicts.innerText()).resolves.toContain('bob@acme.test');
    await expect(conflicts.locator('ol.ways-out li').count()).resolves.toBe(3);
    await expect(conflicts.innerText()).resolves.not.toContain('p-200');
    await expect(conflicts.innerText()).resolves.not.toContain('Rival');
    await checkA11y(page, 'alerts');
    await shot(page, 'alerts');

    // Team: send an email that reaches the SMTP server.
    await nav.getByRole('link', { name: 'Team' }).click();
    await page.waitForURL(/\/team$/);
    await page.getByText('Cam Manager').first().waitFor();
    await page.getByLabel('To', { exact: true }).selectOption('channelAccountManager');
    await page.getByLabel('Subject').fill('Quarterly plan');
    await page.getByLabel('Message').fill('Can we meet next week?');
    await checkA11y(page, 'team');
    await shot(page, 'team');
    await page.getByRole('button', { name: 'Send email' }).click();
    expect(await settle(page)).toBe('completed');
    await waitFor(() => svc.smtp.messages.some((m) => m.subject.includes('Quarterly plan')), { what: 'the team email at the SMTP server' });
    const mail = svc.smtp.messages.find((m) => m.subject.includes('Quarterly plan'))!;
    expect(mail.to).toContain('cam@hub.test');
    expect(mail.text).toContain('Can we meet next week?');
    await page.getByRole('link', { name: 'Back' }).click();
    await page.waitForURL(/\/team$/);

    // Swedish.
    await page.getByRole('navigation', { name: 'Language' }).getByRole('link', { name: 'Svenska' }).click();
    await page.waitForURL(/lang=sv/);
    await expect(page.locator('html').getAttribute('lang')).resolves.toBe('sv');
    const svNav = page.getByRole('navigation', { name: 'Panelens delar' });
    for (const label of ['Partneranställda', 'Kundlista', 'Nivå', 'Aviseringar']) await svNav.getByRole('link', { name: label }).waitFor();
    await page.getByRole('heading', { name: 'Skicka e-post' }).waitFor();
    await checkA11y(page, 'team-sv');
    await shot(page, 'team-sv');
    await svNav.getByRole('link', { name: 'Kundlista' }).click();
    await page.getByRole('columnheader', { name: 'Kund' }).waitFor();
    await expect(page.locator('html').getAttribute('lang')).resolves.toBe('sv');

    // Another partner's page with this session.
    const other = await page.goto(`${svc.api.base}/app/partners/p-200/clients`);
    expect(other!.status()).toBe(403);

    // A cross-site form post (an attacker's page) carries no session cookie (SameSite=Strict) and no CSRF token: 403, nothing recorded.
    const before = svc.smtp.messages.length;
    await context.route('http://evil.test/**', (route) => route.fulfill({
      contentType: 'text/html',
      body: `<!doctype html><html lang="en"><title>evil</title><form method="post" action="${svc.api.base}/app/partners/p-100/actions/team-email">` +
        '<input name="to" value="channelAccountManager"><input name="subject" value="Forged"><input name="body" value="x"><input name="idem" value="web.0123456789abcdef0123456789abcdef">' +
        '<button type="submit">go</button></form></html>',
    }));
    await page.goto('http://evil.test/');
    const [forged] = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/actions/team-email')), page.getByRole('button', { name: 'go' }).click()]);
    expect(forged.status()).toBe(403);
    // The same post with the session cookie but without the CSRF field (as if SameSite were bypassed): 403 as well.
    const direct = await context.request.post(`${svc.api.base}/app/partners/p-100/actions/team-email`, {
      form: { to: 'channelAccountManager', subject: 'Forged', body: 'x', idem: 'web.0123456789abcdef0123456789abcdee' },
      maxRedirects: 0,
    });
    expect(direct.status()).toBe(403);
    const commands = await svc.sql<{ n: string }>(`select count(*) as n from command where type = 'team.email' and payload->>'subject' = 'Forged'`);
    expect(Number(commands[0]!.n)).toBe(0);
    expect(svc.smtp.messages.length).toBe(before);

    // Sign out.
    await page.goto(`${svc.api.base}/app/partners/p-100/clients`);
    await page.getByRole('button', { name: 'Logga ut' }).click();
    await page.waitForURL(/\/app\/sign-in\?bye=1/);
    await page.getByText('Du är utloggad.').waitFor();
    await shot(page, 'signed-out');
    await page.goto(`${svc.api.base}/app/partners/p-100/clients`);
    await page.waitForURL(/\/app\/sign-in/);

    expect(cspViolations).toEqual([]);
    await context.close();
  });

  it('when a token without employees:read signs in, then no page shows an employees tab or any email address', async () => {
    const { context, page } = await newContext();
    await signIn(page, TOKENS.reader);
    expect(page.url()).toMatch(/\/clients$/);
    const nav = page.getByRole('navigation', { name: 'Dashboard sections' });
    await expect(nav.getByRole('link', { name: 'Partner employees' }).count()).resolves.toBe(0);
    const pages: [string, string][] = [
      ['reader-clients', '/clients'],
      ['reader-client-panel', '/clients/c-1'],
      ['reader-tier', '/tier'],
      ['reader-alerts', '/alerts'],
      ['reader-team', '/team'],
    ];
    for (const [name, path] of pages) {
      const r = await page.goto(`${svc.api.base}/app/partners/p-100${path}`);
      expect({ name, status: r!.status() }).toEqual({ name, status: 200 });
      const source = await page.content();
      expect({ name, email: EMAIL.exec(source)?.[0] ?? null }).toEqual({ name, email: null });
      await expect(page.getByRole('link', { name: 'Partner employees' }).count()).resolves.toBe(0);
      await checkA11y(page, name);
      await shot(page, name);
    }
    // Every client-panel tab, too.
    await page.goto(`${svc.api.base}/app/partners/p-100/clients/c-1`);
    for (const tab of ['Renewals', 'Portal usage', 'Platform engagement']) {
      await page.getByRole('tab', { name: tab }).click();
      expect(EMAIL.exec(await page.locator('body').innerText())).toBeNull();
    }
    const employees = await page.goto(`${svc.api.base}/app/partners/p-100/employees`);
    expect(employees!.status()).toBe(403);
    expect(EMAIL.exec(await page.content())).toBeNull();
    expect(cspViolations).toEqual([]);
    await context.close();
  });
});
