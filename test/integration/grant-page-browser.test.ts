import { readFileSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startService, TOKENS, waitFor, type TestService } from '../helpers/harness.js';

/**
 * The client's grant page (contract §6) in a real browser (system Chromium, headless): a Swedish
 * and a German client open the link of their request email, read the page in their language, and
 * answer through the real form (the German client declines, the Swedish one grants). Screenshots in
 * test-results/grant-pages/; axe-core runs on each page; the page's CSP must not block anything.
 */

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SHOTS = 'test-results/grant-pages';
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const LINK = /http:\/\/grants\.test(\/v1\/grants\/[A-Za-z0-9_-]+)/;

interface AxeViolation { id: string; impact: string | null; help: string }

describe('the grant page in a browser', () => {
  let svc: TestService;
  let browser: Browser;
  const cspViolations: string[] = [];
  const links: Record<string, string> = {};
  const contactOf = (hub: string) => `boss.${hub}@clients.test`;

  async function checkA11y(page: Page, name: string): Promise<void> {
    await page.evaluate(AXE_SOURCE);
    const violations = await page.evaluate<AxeViolation[]>(
      `axe.run(document, { resultTypes: ['violations'] }).then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help })))`,
    );
    expect({ page: name, serious: violations.filter((v) => v.impact === 'serious' || v.impact === 'critical') }).toEqual({ page: name, serious: [] });
  }

  async function shot(page: Page, name: string): Promise<void> {
    const path = `${SHOTS}/${name}.png`;
    await page.screenshot({ path, fullPage: true });
    expect((await stat(path)).size).toBeGreaterThan(1000);
  }

  async function open(path: string): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    const base = new URL(svc.api.base);
    await context.route((url) => url.host !== base.host, (route) => route.abort());
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    const res = await page.goto(`${svc.api.base}${path}`, { waitUntil: 'load' });
    expect(res?.status()).toBe(200);
    return page;
  }

  const stateOf = async (hub: string) => (await svc.sql<{ state: string }>(`select state from access where partner_id = 'p-100' and hub_id = ?`, [hub]))[0]?.state;

  beforeAll(async () => {
    svc = await startService();
    const { api } = svc;
    const ok = async (command: Record<string, unknown>, token: string = TOKENS.admin) => expect((await api.apply('p-100', command, token)).state).toBe('completed');
    await ok({ type: 'partner.upsert', name: 'Acme Partners', notifyEmail: 'alerts@acme.test', locale: 'en' });
    await ok({ type: 'employee.tag', email: 'ann@agency.test', name: 'Ann Agent' });
    for (const [hub, locale, name] of [['c-sv', 'sv', 'Bräcke Byrå AB'], ['c-de', 'de', 'Müller & Söhne GmbH']] as const) {
      await ok({ type: 'client.upsert', hubId: hub, name, contactEmail: contactOf(hub), locale }, TOKENS.platform);
      expect((await api.apply('p-100', { type: 'access.assign', clientHubIds: [hub], employeeEmails: ['ann@agency.test'] }, TOKENS.crm)).items[0].outcome).toBe('pending');
    }
    await waitFor(() => ['c-sv', 'c-de'].every((h) => svc.smtp.messages.some((m) => m.recipients.includes(contactOf(h)))), { what: 'both request emails' });
    for (const hub of ['c-sv', 'c-de']) {
      const mail = svc.smtp.messages.find((m) => m.recipients.includes(contactOf(hub)))!;
      links[hub] = LINK.exec(mail.text)![1]!;
    }
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
    await mkdir(SHOTS, { recursive: true });
  });

  afterAll(async () => {
    await browser?.close();
    await svc?.close();
  });

  it('when a German client opens its link, then the page is German (lang="de") with both buttons, and declining through the form makes the pair declined', async () => {
    const page = await open(links['c-de']!);
    expect(await page.evaluate('document.documentElement.lang')).toBe('de');
    expect(await page.title()).toBe('Zugriff gewähren?');
    const text = await page.locator('main').innerText();
    expect(text).toContain('Acme Partners bittet darum, dass Ann Agent (ann@agency.test) Zugriff auf das Konto von Müller & Söhne GmbH erhält.');
    const grant = page.getByRole('button', { name: 'Zugriff gewähren' });
    const decline = page.getByRole('button', { name: 'Ablehnen' });
    expect(await grant.isVisible()).toBe(true);
    expect(await decline.isVisible()).toBe(true);
    await checkA11y(page, 'confirm-de');
    await shot(page, 'confirm-de');

    await Promise.all([page.waitForURL(`${svc.api.base}${links['c-de']}`), page.waitForLoadState('load'), decline.click()]);
    await page.getByRole('heading', { name: 'Anfrage abgelehnt' }).waitFor();
    expect(await page.evaluate('document.documentElement.lang')).toBe('de');
    expect(await page.locator('main').innerText()).toContain('Ann Agent (ann@agency.test) erhält keinen Zugriff. Acme Partners erfährt, dass Sie abgelehnt haben.');
    await checkA11y(page, 'declined-de');
    await shot(page, 'declined-de');
    expect(await stateOf('c-de')).toBe('declined');
    await page.context().close();

    // Opened again: "already used", still in German.
    const res = await fetch(`${svc.api.base}${links['c-de']}`);
    expect(res.status).toBe(410);
    expect(await res.text()).toContain('<title>Link bereits verwendet</title>');
  });

  it('when a Swedish client opens its link, then the page is Swedish (lang="sv") with both buttons, and granting through the form makes the pair active', async () => {
    const page = await open(links['c-sv']!);
    expect(await page.evaluate('document.documentElement.lang')).toBe('sv');
    expect(await page.title()).toBe('Ge åtkomst?');
    expect(await page.locator('main').innerText()).toContain('Acme Partners ber att Ann Agent (ann@agency.test) får åtkomst till kontot för Bräcke Byrå AB.');
    expect(await page.getByRole('button', { name: 'Avböj' }).isVisible()).toBe(true);
    const grant = page.getByRole('button', { name: 'Ge åtkomst' });
    expect(await grant.isVisible()).toBe(true);
    await checkA11y(page, 'confirm-sv');
    await shot(page, 'confirm-sv');

    await Promise.all([page.waitForLoadState('load'), grant.click()]);
    await page.getByRole('heading', { name: 'Åtkomst beviljad' }).waitFor();
    expect(await page.locator('main').innerText()).toContain('Ann Agent (ann@agency.test) har nu åtkomst till kontot för Bräcke Byrå AB.');
    await shot(page, 'granted-sv');
    expect(await stateOf('c-sv')).toBe('active');
    await page.context().close();
    expect(cspViolations).toEqual([]);
  });
});
