import { startService, TOKENS, waitFor, type TestService } from '../helpers/harness.js';
import type { CapturedMail } from '../helpers/smtp.js';

/**
 * The life of an access request (contract §6) end to end, with the day settings in seconds (the
 * contract lets them take decimals): a request expires GRANT_TTL_DAYS after its email (about 13 s
 * here), its client is reminded GRANT_REMINDER_DAYS before (about 7 s before), the partner is told
 * ACCESS_END_REMINDER_DAYS before a time-bound access ends (about 9 s before); the lifecycle sweep
 * runs every 200 ms. Grant and decline go through the real grant pages.
 */

const DAY_SECS = 86_400;
const TTL_DAYS = 0.00015; // 12.96 s
const REMINDER_DAYS = 0.00008; // 6.91 s before expiry
const END_REMINDER_DAYS = 0.0001; // 8.64 s before the end

const LINK = /http:\/\/grants\.test(\/v1\/grants\/[A-Za-z0-9_-]+)/;

describe('the life of an access request', () => {
  let svc: TestService;

  const contactOf = (hubId: string) => `boss.${hubId}@clients.test`;
  const NOTIFY = 'alerts@acme-partners.test';

  const apply = async (partnerId: string, command: Record<string, unknown>, token: string = TOKENS.admin) => {
    const s = await svc.api.apply(partnerId, command, token);
    return s;
  };
  const ok = async (partnerId: string, command: Record<string, unknown>, token: string = TOKENS.admin) => {
    const s = await apply(partnerId, command, token);
    expect({ type: command.type, state: s.state, error: s.error }).toEqual({ type: command.type, state: 'completed', error: undefined });
    return s;
  };
  const assign = (partnerId: string, hubs: string[], emails: string[], extra: Record<string, unknown> = {}) =>
    apply(partnerId, { type: 'access.assign', clientHubIds: hubs, employeeEmails: emails, ...extra }, TOKENS.admin);

  /** A partner told in `locale` at NOTIFY (or not at all), a client per hub (platform facts), tagged employees. */
  async function setup(partnerId: string, opts: { locale?: string; notify?: boolean; manual?: boolean; clients: [string, string][]; employees: string[] }) {
    await ok(partnerId, {
      type: 'partner.upsert', name: `Partner ${partnerId}`, ...(opts.notify === false ? {} : { notifyEmail: NOTIFY.replace('@', `+${partnerId}@`) }),
      ...(opts.locale ? { locale: opts.locale } : {}), ...(opts.manual ? { accessRequests: 'manual' } : {}),
    });
    for (const [hub, locale] of opts.clients) await ok(partnerId, { type: 'client.upsert', hubId: hub, name: `Client ${hub}`, contactEmail: contactOf(hub), locale });
    for (const email of opts.employees) await ok(partnerId, { type: 'employee.tag', email, name: `Name ${email.split('@')[0]}` });
  }
  const notifyOf = (partnerId: string) => NOTIFY.replace('@', `+${partnerId}@`);

  const mailsTo = (address: string): CapturedMail[] => svc.smtp.messages.filter((m) => m.recipients.includes(address));
  const requestMails = (hub: string) => mailsTo(contactOf(hub));
  const linkIn = (mail: CapturedMail, email?: string): string => {
    const line = email ? mail.text.split('\n').find((l) => l.includes(email) && LINK.test(l)) ?? mail.text : mail.text;
    const path = LINK.exec(line)?.[1];
    expect(path).toBeDefined();
    return path!;
  };
  const page = (path: string, headers: Record<string, string> = {}) => svc.api.request('GET', path, { token: null, headers });
  const answer = (path: string, decision?: 'grant' | 'decline') =>
    svc.api.request('POST', path, { token: null, rawBody: decision ? `decision=${decision}` : '', headers: { 'content-type': 'application/x-www-form-urlencoded' } });

  const stateOf = async (partnerId: string, hub: string, email: string) =>
    (await svc.sql<{ state: string }>('select state from access where partner_id = ? and hub_id = ? and email = ?', [partnerId, hub, email]))[0]?.state;
  const waitState = (partnerId: string, hub: string, email: string, state: string, timeoutMs = 30_000) =>
    waitFor(async () => (await stateOf(partnerId, hub, email)) === state, { timeoutMs, intervalMs: 100, what: `${hub}/${email} to be ${state}` });
  /** Every outbox row of a partner is sent (so no email of it is still on its way). */
  const allSent = (partnerId: string) =>
    waitFor(async () => (await svc.sql<{ n: number }>(`select count(*)::int as n from outbox where partner_id = ? and state <> 'sent'`, [partnerId]))[0]!.n === 0, { what: `every email of ${partnerId} sent` });

  beforeAll(async () => {
    svc = await startService({
      GRANT_TTL_DAYS: String(TTL_DAYS),
      GRANT_REMINDER_DAYS: String(REMINDER_DAYS),
      ACCESS_END_REMINDER_DAYS: String(END_REMINDER_DAYS),
      LIFECYCLE_SWEEP_MS: '200',
    });
  });

  afterAll(async () => {
    await svc?.close();
  });

  it('when a Swedish client opens its link, then the page is Swedish, names the partner, the employee and the client, offers Grant and Decline, and carries the security headers', async () => {
    await setup('p-page', { clients: [['pg-c1', 'sv']], employees: ['ann@agency.test'] });
    expect((await assign('p-page', ['pg-c1'], ['ann@agency.test'])).items[0].outcome).toBe('pending');
    await waitFor(() => requestMails('pg-c1').length === 1, { what: 'the request email' });
    const link = linkIn(requestMails('pg-c1')[0]!);

    const r = await page(link);
    expect(r.status).toBe(200);
    const html = String(r.body);
    expect(html).toContain('<html lang="sv">');
    expect(r.headers.get('content-language')).toBe('sv');
    expect(html).toContain('<title>Ge åtkomst?</title>');
    expect(html).toContain('Partner p-page ber att Name ann (ann@agency.test) får åtkomst till kontot för Client pg-c1.');
    expect(html).toMatch(/<button type="submit" name="decision" value="grant"[^>]*>Ge åtkomst<\/button>/);
    expect(html).toMatch(/<button type="submit" name="decision" value="decline"[^>]*>Avböj<\/button>/);
    const csp = r.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toMatch(/style-src 'sha256-[A-Za-z0-9+/=]+'/);
    expect(csp).toContain("form-action 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(r.headers.get('referrer-policy')).toBe('no-referrer');
    expect(r.headers.get('cache-control')).toBe('no-store');
    expect(r.headers.get('x-frame-options')).toBe('DENY');
    expect(await stateOf('p-page', 'pg-c1', 'ann@agency.test')).toBe('pending'); // GET changes nothing

    // A link nobody knows: 404, in the browser's language.
    const unknown = await page('/v1/grants/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', { 'accept-language': 'de-CH, de;q=0.9, en;q=0.5' });
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get('content-language')).toBe('de');
    expect(String(unknown.body)).toContain('<title>Link ungültig</title>');
    // Not an answer the page offers: the page again, nothing changed.
    const odd = await svc.api.request('POST', link, { token: null, rawBody: 'decision=maybe', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(odd.status).toBe(400);
    expect(await stateOf('p-page', 'pg-c1', 'ann@agency.test')).toBe('pending');
  });

  it('when one request is granted, one declined and one left alone, then only the one left alone is reminded, once, then it expires and its link says so; the partner is told each outcome in German', async () => {
    const P = 'p-life';
    const [hub, a, b, c] = ['lf-c1', 'anna@agency.test', 'bert@agency.test', 'carl@agency.test'];
    await setup(P, { locale: 'de', clients: [[hub, 'it']], employees: [a, b, c] });
    const status = await assign(P, [hub], [a, b, c]);
    expect(status.items.map((i: { outcome: string }) => i.outcome)).toEqual(['pending', 'pending', 'pending']);
    await waitFor(() => requestMails(hub).length === 1, { what: 'the request email' });
    const mail = requestMails(hub)[0]!;
    const [linkA, linkB, linkC] = [linkIn(mail, a), linkIn(mail, b), linkIn(mail, c)];

    // Granted and declined through the real pages (Italian: the client's locale).
    const granted = await answer(linkB);
    expect(granted.status).toBe(200);
    expect(String(granted.body)).toContain('<title>Accesso concesso</title>');
    const declined = await answer(linkC, 'decline');
    expect(declined.status).toBe(200);
    expect(String(declined.body)).toContain('<title>Richiesta rifiutata</title>');
    expect(await stateOf(P, hub, b)).toBe('active');
    expect(await stateOf(P, hub, c)).toBe('declined');
    // A grant's membership is the pair itself: nothing joins the platform's portal users.
    expect(await svc.sql('select email from portal_user where hub_id = ?', [hub])).toEqual([]);
    expect((await svc.sql<{ granted: boolean }>('select granted_at is not null as granted from access where partner_id = ? and hub_id = ? and email = ?', [P, hub, b]))[0]!.granted).toBe(true);
    // Used links answer "already used" (410), whatever the answer.
    for (const l of [linkB, linkC]) {
      const again = await answer(l, 'grant');
      expect(again.status).toBe(410);
      expect(String(again.body)).toContain('<title>Link già utilizzato</title>');
    }

    // The one left alone: one reminder (the same link), then it expires.
    await waitFor(() => mailsTo(contactOf(hub)).length >= 2, { timeoutMs: 20_000, what: 'the reminder' });
    await waitState(P, hub, a, 'expired');
    await allSent(P);
    const toClient = requestMails(hub);
    expect(toClient).toHaveLength(2);
    const reminder = toClient[1]!;
    expect(reminder.subject).toBe(`Promemoria: Partner ${P} chiede l'accesso per Name anna (${a})`);
    expect(linkIn(reminder)).toBe(linkA);
    expect(reminder.raw.headers.get('reply-to')).toMatchObject({ text: notifyOf(P) });

    const expired = await page(linkA);
    expect(expired.status).toBe(410);
    expect(String(expired.body)).toContain('<title>Link scaduto</title>');
    expect((await answer(linkA)).status).toBe(410);
    expect(await stateOf(P, hub, a)).toBe('expired');

    // The partner, in German: granted (b), declined (c), expired (a); once each.
    const told = mailsTo(notifyOf(P)).map((m) => m.subject).sort();
    expect(told).toEqual([
      `Client ${hub} hat Name bert (${b}) Zugriff gewährt`,
      `Client ${hub} hat den Zugriff für Name carl (${c}) abgelehnt`,
      `Zugriffsanfrage für Name anna (${a}) bei Client ${hub} abgelaufen`,
    ].sort());

    // Every state shows in the reads, and in the metrics.
    const clients = await svc.api.get(`/v1/partners/${P}/clients`);
    expect(clients.body.clients[0].employees).toEqual(expect.arrayContaining([{ email: b, access: 'active' }]));
    const metrics = String((await svc.api.request('GET', '/metrics', { token: null })).body);
    for (const state of ['pending', 'active', 'declined', 'expired', 'revoked']) expect(metrics).toMatch(new RegExp(`^pap_access_requests\\{state="${state}"\\} \\d+$`, 'm'));
    expect(metrics).toMatch(/^pap_access_request_oldest_pending_seconds \d+(\.\d+)?$/m);
  }, 60_000);

  it('when a declined or an expired pair is assigned again, then it is a new request: a new email whose link works, the old link dead', async () => {
    const P = 'p-again';
    const [hub, a, b] = ['ag-c1', 'dora@agency.test', 'emil@agency.test'];
    await setup(P, { clients: [[hub, 'en']], employees: [a, b] });
    await assign(P, [hub], [a, b]);
    await waitFor(() => requestMails(hub).length === 1, { what: 'the first request' });
    const first = requestMails(hub)[0]!;
    const [oldA, oldB] = [linkIn(first, a), linkIn(first, b)];
    expect((await answer(oldA, 'decline')).status).toBe(200);
    await waitState(P, hub, b, 'expired');

    const again = await assign(P, [hub], [a, b]);
    expect(again.items.map((i: { outcome: string }) => i.outcome)).toEqual(['pending', 'pending']);
    await waitFor(() => requestMails(hub).length >= 2 && requestMails(hub).some((m, i) => i > 0 && !m.subject.startsWith('Reminder')), { what: 'the new request' });
    const second = requestMails(hub).find((m, i) => i > 0 && !m.subject.startsWith('Reminder'))!;
    const [newA, newB] = [linkIn(second, a), linkIn(second, b)];
    expect(newA).not.toBe(oldA);
    expect(newB).not.toBe(oldB);
    expect((await page(oldA)).status).toBe(410);
    expect((await page(oldB)).status).toBe(410);
    expect((await page(newA)).status).toBe(200);
    expect((await answer(newB)).status).toBe(200);
    expect(await stateOf(P, hub, b)).toBe('active');
    expect(await stateOf(P, hub, a)).toBe('pending');
  }, 60_000);

  it('when access.resend asks again, then a pair emailed within the hour is throttled, a declined one is resent with a new link (the old one dead), and an active one is unchanged; each item says so', async () => {
    const P = 'p-resend';
    const [hub, a, b] = ['rs-c1', 'hans@agency.test', 'ines@agency.test'];
    await setup(P, { clients: [[hub, 'sv']], employees: [a, b] });
    await assign(P, [hub], [a, b]);
    await waitFor(() => requestMails(hub).length === 1, { what: 'the request' });
    const first = requestMails(hub)[0]!;
    const [oldA, oldB] = [linkIn(first, a), linkIn(first, b)];
    expect((await answer(oldA, 'decline')).status).toBe(200);
    expect((await answer(oldB)).status).toBe(200);

    const resend = (emails: string[]) => apply(P, { type: 'access.resend', clientHubIds: [hub], employeeEmails: emails }, TOKENS.admin);
    const throttled = await resend([a, b]);
    expect(throttled.items).toEqual([
      { clientHubId: hub, employeeEmail: a, state: 'completed', outcome: 'throttled' },
      { clientHubId: hub, employeeEmail: b, state: 'completed', outcome: 'unchanged' },
    ]);
    expect(await stateOf(P, hub, a)).toBe('declined');

    // An hour later (the pair's last email moved back), the declined pair is asked again.
    await svc.sql(`update access set last_email_at = now() - interval '61 minutes' where partner_id = ? and hub_id = ?`, [P, hub]);
    const resent = await resend([a]);
    expect(resent).toMatchObject({ type: 'access.resend', state: 'completed', items: [{ clientHubId: hub, employeeEmail: a, state: 'completed', outcome: 'resent' }] });
    expect(await stateOf(P, hub, a)).toBe('pending');
    await waitFor(() => requestMails(hub).length === 2, { what: 'the new request' });
    await allSent(P);
    const second = requestMails(hub)[1]!;
    expect(second.subject).toBe(`Partner ${P} ber om åtkomst för Name hans (${a})`);
    const newA = linkIn(second, a);
    expect(newA).not.toBe(oldA);
    expect((await page(oldA)).status).toBe(410);
    expect((await page(newA)).status).toBe(200);

    // Resent again at once: throttled (the new email was just sent); the new link still works.
    expect((await resend([a])).items[0].outcome).toBe('throttled');
    // A resend of a still pending pair (an hour on): a new link, the previous one withdrawn.
    await svc.sql(`update access set last_email_at = now() - interval '61 minutes' where partner_id = ? and hub_id = ? and email = ?`, [P, hub, a]);
    expect((await resend([a])).items[0].outcome).toBe('resent');
    await waitFor(() => requestMails(hub).length === 3, { what: 'the third request' });
    const third = linkIn(requestMails(hub)[2]!, a);
    const withdrawn = await page(newA);
    expect(withdrawn.status).toBe(410);
    expect(String(withdrawn.body)).toContain('<title>Begäran återkallad</title>');
    expect((await answer(third)).status).toBe(200);
    expect(await stateOf(P, hub, a)).toBe('active');
    // The audit trail has the command, with its outcome per pair in the command's items.
    const audit = await svc.api.get(`/v1/partners/${P}/audit?type=access.resend`);
    expect(audit.status).toBe(200);
    expect(audit.body.entries).toHaveLength(4);
  }, 60_000);

  it('when access.extend gives a pending or active pair a new end, then it is extended (null: no end), its ending notices start over, and other pairs are unchanged', async () => {
    const P = 'p-extend';
    const [hub, a, b, c] = ['ex-c1', 'jon@agency.test', 'kim@agency.test', 'lea@agency.test'];
    await setup(P, { clients: [[hub, 'en']], employees: [a, b, c] });
    const soon = new Date(Date.now() + 8_000);
    await assign(P, [hub], [a, b, c], { accessUntil: soon.toISOString() });
    await waitFor(() => requestMails(hub).length === 1, { what: 'the request' });
    const mail = requestMails(hub)[0]!;
    expect((await answer(linkIn(mail, a))).status).toBe(200);
    expect((await answer(linkIn(mail, c), 'decline')).status).toBe(200);
    // The ending notice of a's first end (within END_REMINDER_DAYS of it at once).
    await waitFor(() => mailsTo(notifyOf(P)).some((m) => m.subject.startsWith(`Access of Name jon (${a})`)), { what: 'the first ending notice' });

    const later = new Date(Date.now() + 3600_000);
    const extended = await apply(P, { type: 'access.extend', clientHubIds: [hub], employeeEmails: [a, b, c], accessUntil: later.toISOString() }, TOKENS.admin);
    expect(extended.items.map((i: { outcome: string }) => i.outcome)).toEqual(['extended', 'extended', 'unchanged']);
    const rows = await svc.sql<{ email: string; state: string; until: string | null; sent: number[] }>(
      'select email, state, access_until as until, end_reminders_sent as sent from access where partner_id = ? order by email', [P]);
    expect(rows.map((r) => [r.email, r.state, r.until && new Date(r.until).toISOString(), r.sent])).toEqual([
      [a, 'active', later.toISOString(), []],
      [b, 'pending', later.toISOString(), []],
      [c, 'declined', soon.toISOString(), []],
    ]);
    // Past the first end (a sweep finished after it): nothing ended (the new end is an hour away).
    await waitFor(async () => (await svc.app.ctx.queues.lifecycle.getJobs(['completed'], 0, 5)).some((j) => (j.finishedOn ?? 0) > soon.getTime() + 300),
      { timeoutMs: 20_000, what: 'a sweep after the first end' });
    expect(await stateOf(P, hub, a)).toBe('active');
    expect(await stateOf(P, hub, b)).toBe('pending');

    const open = await apply(P, { type: 'access.extend', clientHubIds: [hub], employeeEmails: [a], accessUntil: null }, TOKENS.admin);
    expect(open.items[0].outcome).toBe('extended');
    expect((await svc.sql<{ until: string | null }>('select access_until as until from access where partner_id = ? and email = ?', [P, a]))[0]!.until).toBeNull();
    const past = await svc.api.post(P, { type: 'access.extend', clientHubIds: [hub], employeeEmails: [a], accessUntil: '2001-01-01' });
    expect(past.status).toBe(400);
  }, 60_000);

  it('when a time-bound access nears its end and ends, then the partner is told before and after (in Portuguese), the pair is expired, and a later assignment asks the client again', async () => {
    const P = 'p-until';
    const [hub, a] = ['tb-c1', 'fred@agency.test'];
    await setup(P, { locale: 'pt', clients: [[hub, 'de']], employees: [a] });
    const until = new Date(Date.now() + 13_000);
    expect((await assign(P, [hub], [a], { accessUntil: until.toISOString() })).items[0].outcome).toBe('pending');
    await waitFor(() => requestMails(hub).length === 1, { what: 'the request' });
    const granted = await answer(linkIn(requestMails(hub)[0]!));
    expect(granted.status).toBe(200);
    expect(String(granted.body)).toContain('<html lang="de">');
    expect(await stateOf(P, hub, a)).toBe('active');

    await waitFor(() => mailsTo(notifyOf(P)).some((m) => m.subject.includes('termina a')), { timeoutMs: 20_000, what: 'the ending notice' });
    await waitState(P, hub, a, 'expired');
    await allSent(P);
    const told = mailsTo(notifyOf(P)).map((m) => m.subject);
    expect(told.filter((s) => s.startsWith(`O acesso de Name fred (${a}) a Client ${hub} termina a`))).toHaveLength(1);
    expect(told.filter((s) => s === `O acesso de Name fred (${a}) a Client ${hub} terminou`)).toHaveLength(1);
    expect(told.filter((s) => s === `Client ${hub} concedeu acesso a Name fred (${a})`)).toHaveLength(1);

    // The grant's membership ended with the pair: assigning again emails the client.
    expect((await assign(P, [hub], [a])).items[0].outcome).toBe('pending');
    await waitFor(() => requestMails(hub).length === 2, { what: 'a new request' });
  }, 60_000);

  it('when a partner lists its requests, then it sees each waiting request with its age, filtered by state and age, a page at a time; without employees:read the list is refused', async () => {
    const P = 'p-reads';
    const hub = 'rd-c1';
    const emails = ['r1@agency.test', 'r2@agency.test', 'r3@agency.test'];
    await setup(P, { clients: [[hub, 'en']], employees: emails });
    const renewalSoon = new Date(Date.now() + 10 * DAY_SECS * 1000).toISOString().slice(0, 10);
    const renewalLate = new Date(Date.now() + 200 * DAY_SECS * 1000).toISOString().slice(0, 10);
    await ok(P, { type: 'client.upsert', hubId: hub, name: `Client ${hub}`, renewalDate: renewalSoon, products: ['Sales Hub'], renewalOwner: { name: 'Rita', email: 'rita@platform.test' } }, TOKENS.platform);
    await ok(P, { type: 'client.upsert', hubId: 'rd-c2', name: 'Client rd-c2', contactEmail: contactOf('rd-c2'), renewalDate: renewalLate }, TOKENS.platform);
    await assign(P, [hub], emails);
    await waitFor(() => requestMails(hub).length === 1, { what: 'the request' });
    expect((await answer(linkIn(requestMails(hub)[0]!, emails[2]!), 'decline')).status).toBe(200);

    const list = async (query: string) => {
      const r = await svc.api.get(`/v1/partners/${P}/requests${query}`);
      expect(r.status).toBe(200);
      return r.body as { requests: { clientHubId: string; employeeEmail: string; state: string; requestedAt: string; expiresAt: string | null; lastEmailAt: string | null; reminders: number; ageSeconds: number }[]; nextCursor: string | null };
    };
    const pending = await list('');
    expect(pending.requests.map((r) => [r.employeeEmail, r.state])).toEqual([[emails[0], 'pending'], [emails[1], 'pending']]);
    const first = pending.requests[0]!;
    expect(first.clientHubId).toBe(hub);
    expect(new Date(first.expiresAt!).getTime() - new Date(first.requestedAt).getTime()).toBeCloseTo(TTL_DAYS * DAY_SECS * 1000, -3);
    expect(first.lastEmailAt).toBe(first.requestedAt);
    expect(first.reminders).toBe(0);
    expect(first.ageSeconds).toBeGreaterThanOrEqual(0);
    expect(pending.nextCursor).toBeNull();
    expect((await list('?state=declined')).requests.map((r) => r.employeeEmail)).toEqual([emails[2]]);
    expect((await list('?olderThanDays=1')).requests).toEqual([]);

    const page1 = await list('?limit=1');
    expect(page1.requests.map((r) => r.employeeEmail)).toEqual([emails[0]]);
    const page2 = await list(`?limit=1&cursor=${page1.nextCursor}`);
    expect(page2.requests.map((r) => r.employeeEmail)).toEqual([emails[1]]);
    expect(page2.nextCursor).toBeNull();

    for (const bad of ['?state=active', '?limit=1001', '?olderThanDays=-1', '?cursor=nope', '?colour=red']) {
      expect([bad, (await svc.api.get(`/v1/partners/${P}/requests${bad}`)).status]).toEqual([bad, 400]);
    }
    expect((await svc.api.get('/v1/partners/p-100/requests', TOKENS.reader)).status).toBe(403);

    const renewals = await svc.api.get(`/v1/partners/${P}/renewals`);
    expect(renewals.status).toBe(200);
    expect(renewals.body).toEqual({ renewals: [{ hubId: hub, name: `Client ${hub}`, renewalDate: renewalSoon, renewalOwner: { name: 'Rita', email: 'rita@platform.test' }, products: ['Sales Hub'] }] });
    const dashboard = await svc.api.get(`/v1/partners/${P}/dashboard`);
    expect(dashboard.body.alerts.pendingRequests).toBe(2);
  });

  it('when a partner asks its clients itself (manual), then assigning sends no email and the pair turns active once the platform reports the employee as a portal user', async () => {
    const P = 'p-manual';
    const [hub, a] = ['mn-c1', 'gina@agency.test'];
    await setup(P, { manual: true, clients: [[hub, 'en']], employees: [a] });
    expect((await assign(P, [hub], [a])).items[0].outcome).toBe('pending');
    await ok(P, { type: 'client.upsert', hubId: hub, name: `Client ${hub}`, portalUserEmails: [a] }, TOKENS.platform);
    await waitState(P, hub, a, 'active');
    await allSent(P);
    expect(requestMails(hub)).toEqual([]);
  });
});
