import { startService, TOKENS, waitFor, type TestService } from '../helpers/harness.js';

/** The partner web app (contract §10) over plain HTTP: sessions, CSRF, headers, scopes. The browser test drives the pages themselves. */

const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/;

interface Page { status: number; headers: Headers; text: string; location: string | null }

/** A cookie-keeping HTTP client that does not follow redirects (a browser without JavaScript, roughly). */
class Visitor {
  readonly jar = new Map<string, string>();
  constructor(private readonly base: string) {}

  async go(method: string, path: string, opts: { form?: Record<string, string | string[]>; headers?: Record<string, string>; cookies?: boolean } = {}): Promise<Page> {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.cookies !== false && this.jar.size) headers.cookie = [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
    let body: string | undefined;
    if (opts.form) {
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(opts.form)) for (const x of Array.isArray(v) ? v : [v]) params.append(k, x);
      body = params.toString();
      headers['content-type'] ??= 'application/x-www-form-urlencoded';
    }
    const res = await fetch(`${this.base}${path}`, { method, headers, redirect: 'manual', ...(body !== undefined ? { body } : {}) });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const [name, ...value] = pair!.split('=');
      if (/max-age=0|expires=thu, 01 jan 1970/i.test(c)) this.jar.delete(name!.trim());
      else this.jar.set(name!.trim(), value.join('='));
    }
    return { status: res.status, headers: res.headers, text: await res.text(), location: res.headers.get('location') };
  }

  async signIn(token: string, partnerId = '', headers: Record<string, string> = {}): Promise<Page> {
    const form = await this.go('GET', '/app/sign-in');
    return this.go('POST', '/app/sign-in', { form: { _csrf: field(form.text, '_csrf'), lang: 'en', token, partnerId }, headers });
  }
}

function field(htmlText: string, name: string): string {
  const m = new RegExp(`name="${name}" value="([^"]*)"`).exec(htmlText);
  if (!m) throw new Error(`no field ${name} in the page`);
  return m[1]!;
}

describe('the partner web app over HTTP', () => {
  let svc: TestService;
  const base = () => svc.api.base;
  const countCommands = async (type: string) => Number((await svc.sql<{ n: string }>('select count(*) as n from command where type = ?', [type]))[0]!.n);

  beforeAll(async () => {
    svc = await startService();
    const { api } = svc;
    const renewal = new Date(Date.now() + 30 * 86_400_000).toISOString().slice(0, 10);
    for (const c of [
      { type: 'partner.upsert', name: 'Acme Partners', team: { channelAccountManager: { name: 'Cam Manager', email: 'cam@hub.test' }, channelConsultant: { name: 'Cora Consultant', email: 'cora@hub.test' } } },
      { type: 'client.upsert', hubId: 'c-1', name: 'Client One', contactEmail: 'boss@c1.test', mrr: 1200, products: ['Sales Hub'], renewalDate: renewal, renewalOwner: { name: 'Rita Renewals', email: 'rita@hub.test' } },
      { type: 'client.upsert', hubId: 'c-2', name: 'Client Two', contactEmail: 'boss@c2.test', mrr: 300 },
      { type: 'employee.tag', email: 'ann@acme.test', name: 'Ann Agent' },
    ]) expect((await api.apply('p-100', c)).state).toBe('completed');
    expect((await api.apply('p-200', { type: 'partner.upsert', name: 'Rival' })).state).toBe('completed');
    expect((await api.apply('p-100', { type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: ['ann@acme.test'] }, TOKENS.crm)).state).toBe('completed');
  });
  afterAll(async () => {
    await svc?.close();
  });

  it('when someone opens /app without a session, then the sign-in page comes with the security headers and nothing inline', async () => {
    const v = new Visitor(base());
    const root = await v.go('GET', '/app');
    expect(root.status).toBe(303);
    expect(root.location).toBe('/app/sign-in');
    const page = await v.go('GET', '/app/sign-in');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const csp = page.headers.get('content-security-policy') ?? '';
    for (const d of ["script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'", "default-src 'none'"]) expect(csp).toContain(d);
    expect(page.headers.get('referrer-policy')).toBe('no-referrer');
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    expect(page.headers.get('content-language')).toBe('en');
    expect(page.headers.get('cache-control')).toBe('no-store');
    expect(page.text).toContain('<html lang="en">');
    expect(page.text).not.toMatch(/<script(?![^>]*\bsrc=)(?![^>]*type="application\/json")/);
    expect(page.text).not.toMatch(/\sstyle=|<style/);
    expect(page.text).not.toMatch(/https?:\/\//);
    // Other routes are untouched by the web app's headers.
    const health = await fetch(`${base()}/healthz`);
    expect(health.headers.get('content-security-policy')).toBeNull();
  });

  it('when a person signs in, then the session cookie is HttpOnly and SameSite=Strict (Secure behind HTTPS) and Redis keeps the session without the token in clear', async () => {
    const v = new Visitor(base());
    const signed = await v.signIn(TOKENS.crm);
    expect(signed.status).toBe(303);
    expect(signed.location).toBe('/app/partners/p-100');
    const cookie = signed.headers.getSetCookie().find((c) => c.startsWith('pap_session='))!;
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/SameSite=Strict/i);
    expect(cookie).toMatch(/Path=\/app/i);
    expect(cookie).not.toMatch(/Secure/i);

    const https = await new Visitor(base()).signIn(TOKENS.crm, '', { 'x-forwarded-proto': 'https' });
    expect(https.headers.getSetCookie().find((c) => c.startsWith('pap_session='))).toMatch(/;\s*Secure/i);

    const redis = svc.app.ctx.queues.connection;
    const keys = await redis.keys(`${svc.config.queuePrefix}:webapp:session:*`);
    expect(keys.length).toBeGreaterThanOrEqual(2);
    for (const k of keys) {
      const value = (await redis.get(k)) ?? '';
      expect(value).not.toContain(TOKENS.crm);
      expect(value).not.toContain('p-100');
      const ttl = await redis.ttl(k);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(8 * 3600);
    }
    const landing = await v.go('GET', '/app/partners/p-100');
    expect(landing.location).toBe('/app/partners/p-100/employees');
    const employees = await v.go('GET', '/app/partners/p-100/employees');
    expect(employees.status).toBe(200);
    expect(employees.text).toContain('Ann Agent');
  });

  it('when the sign-in form is wrong, then the page says why: an unknown token, several partners without an id, a partner the token may not read, a form from elsewhere', async () => {
    const unknown = await new Visitor(base()).signIn('tok-nobody-000000000');
    expect(unknown.status).toBe(401);
    expect(unknown.text).toContain('This token is not known.');
    const several = await new Visitor(base()).signIn(TOKENS.multi);
    expect(several.status).toBe(400);
    expect(several.text).toContain('several partners');
    const chosen = await new Visitor(base()).signIn(TOKENS.multi, 'p-200');
    expect(chosen.location).toBe('/app/partners/p-200');
    const notHers = await new Visitor(base()).signIn(TOKENS.crm, 'p-200');
    expect(notHers.status).toBe(403);
    const forged = await new Visitor(base()).go('POST', '/app/sign-in', { form: { token: TOKENS.crm, partnerId: '' } });
    expect(forged.status).toBe(403);
  });

  it('when a form is posted without the CSRF token, from another origin or without a session, then it is refused with 403 and nothing is recorded', async () => {
    const v = new Visitor(base());
    await v.signIn(TOKENS.crm);
    const team = await v.go('GET', '/app/partners/p-100/team');
    const form = { _csrf: field(team.text, '_csrf'), idem: field(team.text, 'idem'), back: '/app/partners/p-100/team', to: 'channelAccountManager', subject: 'Forged', body: 'Forged body' };
    const before = await countCommands('team.email');
    const { _csrf: _dropped, ...withoutCsrf } = form;
    expect((await v.go('POST', '/app/partners/p-100/actions/team-email', { form: withoutCsrf })).status).toBe(403);
    expect((await v.go('POST', '/app/partners/p-100/actions/team-email', { form: { ...form, _csrf: 'x'.repeat(43) } })).status).toBe(403);
    expect((await v.go('POST', '/app/partners/p-100/actions/team-email', { form, headers: { origin: 'http://evil.test' } })).status).toBe(403);
    expect((await v.go('POST', '/app/partners/p-100/actions/team-email', { form, headers: { 'sec-fetch-site': 'cross-site' } })).status).toBe(403);
    expect((await v.go('POST', '/app/partners/p-100/actions/team-email', { form, cookies: false })).status).toBe(403);
    expect(await countCommands('team.email')).toBe(before);
  });

  it('when the same form is submitted twice, then one command is recorded and both submissions lead to its result', async () => {
    const v = new Visitor(base());
    await v.signIn(TOKENS.crm);
    const team = await v.go('GET', '/app/partners/p-100/team');
    const form = { _csrf: field(team.text, '_csrf'), idem: field(team.text, 'idem'), back: '/app/partners/p-100/team', to: 'channelConsultant', subject: 'Twice clicked', body: 'Hello twice.' };
    const first = await v.go('POST', '/app/partners/p-100/actions/team-email', { form });
    const second = await v.go('POST', '/app/partners/p-100/actions/team-email', { form });
    expect(first.status).toBe(303);
    expect(second.location).toBe(first.location);
    const commandId = decodeURIComponent(/\/commands\/([^?]+)/.exec(first.location!)![1]!);
    expect(commandId).toBe(form.idem);
    const result = await v.go('GET', first.location!);
    expect(result.status).toBe(200);
    expect(result.text).toContain('data-state="completed"');
    expect(Number((await svc.sql<{ n: string }>('select count(*) as n from command where id = ?', [commandId]))[0]!.n)).toBe(1);
    await waitFor(() => svc.smtp.messages.some((m) => m.subject.includes('Twice clicked')), { what: 'the team email' });
    expect(svc.smtp.messages.filter((m) => m.subject.includes('Twice clicked'))).toHaveLength(1);
    expect(svc.smtp.messages.find((m) => m.subject.includes('Twice clicked'))!.to).toContain('cora@hub.test');
  });

  it('when "Remove access" is posted without the word REMOVE, then nothing is recorded and the page says what to type', async () => {
    const v = new Visitor(base());
    await v.signIn(TOKENS.crm);
    const employees = await v.go('GET', '/app/partners/p-100/employees');
    const before = await countCommands('access.revoke');
    const r = await v.go('POST', '/app/partners/p-100/actions/revoke', {
      form: { _csrf: field(employees.text, '_csrf'), idem: field(employees.text, 'idem'), back: '/app/partners/p-100/employees', employeeEmails: 'ann@acme.test', clientHubIds: 'c-1', confirm: 'remove' },
    });
    expect(r.status).toBe(400);
    expect(r.text).toContain('Type REMOVE to confirm.');
    expect(await countCommands('access.revoke')).toBe(before);
  });

  it('when the command endpoints get a form body, then they still answer 415', async () => {
    const r = await fetch(`${base()}/v1/partners/p-100/commands`, { method: 'POST', headers: { authorization: `Bearer ${TOKENS.crm}`, 'content-type': 'application/x-www-form-urlencoded' }, body: 'type=employee.tag&email=x%40acme.test' });
    expect(r.status).toBe(415);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
  });

  it("when a session asks for another partner's page, then it gets 403", async () => {
    const v = new Visitor(base());
    await v.signIn(TOKENS.crm);
    for (const path of ['/app/partners/p-200/clients', '/app/partners/p-200/employees', '/app/partners/p-200/team']) {
      const r = await v.go('GET', path);
      expect({ path, status: r.status }).toEqual({ path, status: 403 });
      expect(r.text).not.toContain('Rival');
    }
    // A multi-partner token is bound to the partner chosen at sign-in, too.
    const m = new Visitor(base());
    await m.signIn(TOKENS.multi, 'p-200');
    expect((await m.go('GET', '/app/partners/p-100/clients')).status).toBe(403);
  });

  it('when a token without employees:read browses every page, then there is no employees tab and no email address anywhere', async () => {
    const v = new Visitor(base());
    const signed = await v.signIn(TOKENS.reader);
    expect(signed.status).toBe(303);
    expect((await v.go('GET', '/app/partners/p-100')).location).toBe('/app/partners/p-100/clients');
    for (const path of ['/app/partners/p-100/clients', '/app/partners/p-100/clients/c-1', '/app/partners/p-100/tier', '/app/partners/p-100/alerts', '/app/partners/p-100/team']) {
      const r = await v.go('GET', path);
      expect({ path, status: r.status }).toEqual({ path, status: 200 });
      expect(r.text).not.toContain('/employees"');
      expect({ path, email: EMAIL.exec(r.text)?.[0] ?? null }).toEqual({ path, email: null });
      expect(r.text).not.toContain('method="post" action="/app/partners');
    }
    expect((await v.go('GET', '/app/partners/p-100/employees')).status).toBe(403);
  });

  it('when Swedish is chosen, then the pages are in Swedish with lang and Content-Language for the rest of the session', async () => {
    const v = new Visitor(base());
    await v.signIn(TOKENS.crm);
    const sv = await v.go('GET', '/app/partners/p-100/clients?lang=sv');
    expect(sv.headers.get('content-language')).toBe('sv');
    expect(sv.text).toContain('<html lang="sv">');
    expect(sv.text).toContain('Kundlista');
    const later = await v.go('GET', '/app/partners/p-100/team');
    expect(later.text).toContain('<html lang="sv">');
    expect(later.text).toContain('Skicka e-post');
    const signIn = await new Visitor(base()).go('GET', '/app/sign-in?lang=de');
    expect(signIn.text).toContain('<html lang="de">');
    expect(signIn.text).toContain('Anmelden');
  });

  it('when a person signs out, then the session is gone from Redis and the old cookie leads back to sign-in', async () => {
    const v = new Visitor(base());
    await v.signIn(TOKENS.crm);
    const oldCookie = v.jar.get('pap_session')!;
    const page = await v.go('GET', '/app/partners/p-100/clients');
    const redis = svc.app.ctx.queues.connection;
    const before = (await redis.keys(`${svc.config.queuePrefix}:webapp:session:*`)).length;
    const out = await v.go('POST', '/app/sign-out', { form: { _csrf: field(page.text, '_csrf') } });
    expect(out.status).toBe(303);
    expect(out.location).toMatch(/^\/app\/sign-in\?bye=1/);
    expect((await redis.keys(`${svc.config.queuePrefix}:webapp:session:*`)).length).toBe(before - 1);
    const replay = await fetch(`${base()}/app/partners/p-100/clients`, { headers: { cookie: `pap_session=${oldCookie}` }, redirect: 'manual' });
    expect(replay.status).toBe(303);
    expect(replay.headers.get('location')).toMatch(/^\/app\/sign-in/);
  });

  it('when the pages ask for their scripts and the chart library, then the service serves them itself', async () => {
    for (const [name, type] of [['uplot.iife.min.js', 'text/javascript'], ['uplot.min.css', 'text/css'], ['app.js', 'text/javascript'], ['app.css', 'text/css']] as const) {
      const r = await fetch(`${base()}/app/assets/${name}`);
      expect({ name, status: r.status }).toEqual({ name, status: 200 });
      expect(r.headers.get('content-type')).toContain(type);
      expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    }
    expect((await fetch(`${base()}/app/assets/../../package.json`)).status).toBe(404);
    expect((await fetch(`${base()}/app/assets/nothing.js`)).status).toBe(404);
    const missing = await fetch(`${base()}/app/nowhere`);
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toMatch(/^text\/html/);
  });
});
