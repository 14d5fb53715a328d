import { randomBytes, timingSafeEqual } from 'node:crypto';
import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ApiToken } from '../../../../config/index.js';
import type { AppContext } from '../../../context.js';
import { hasScope, type TokenRegistry } from '../auth.js';
import { PartnerApi, settled, type AccessRequest, type ApiError, type ApiReply, type ClientDetail, type ClientSummary, type Conflict, type CreditMonth, type Dashboard, type Employee, type Renewal } from './api.js';
import { assets } from './assets.js';
import type { Html } from './html.js';
import { formats, isLocale, REMOVE_WORD, strings, type Locale } from './i18n.js';
import * as pages from './pages.js';
import { SessionStore, type Session } from './session.js';

const SESSION_COOKIE = 'pap_session';
/** Before sign-in there is no session: the sign-in form carries a double-submit token from this cookie. */
const SIGN_IN_COOKIE = 'pap_signin';
const SESSION_TTL_SECONDS = 8 * 3600;
/** How long a result page waits for a command to settle before it shows "still being applied" and reloads. */
const RESULT_WAIT_MS = 5000;
const idPattern = /^[A-Za-z0-9._:-]{1,128}$/;
const idemPattern = /^web\.[0-9a-f]{32}$/;
const monthPattern = /^\d{4}-(0[1-9]|1[0-2])$/;

/** The content security policy of every /app response: nothing inline, nothing from elsewhere. */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

/** A failure shown to the person as a page, with an HTTP status. */
class WebError extends Error {
  constructor(
    readonly status: number,
    readonly text: (t: (typeof strings)['en']) => string,
    readonly api?: ApiError,
  ) {
    super(`web app: ${status}`);
  }
}

/** Raised when the API no longer knows the token (or the session is gone): back to sign-in. */
class SignedOut extends Error {}

interface View {
  c: pages.Chrome;
  sid: string;
  session: Session;
  token: ApiToken;
  api: PartnerApi;
  partnerId: string;
  base: string;
}

type Form = Record<string, string | string[] | undefined>;
const one = (form: Form, k: string): string => {
  const v = form[k];
  return (Array.isArray(v) ? v[0] : v)?.trim() ?? '';
};
const all = (form: Form, k: string): string[] => {
  const v = form[k];
  return (Array.isArray(v) ? v : v === undefined ? [] : [v]).map((s) => s.trim()).filter(Boolean);
};
const split = (s: string) => s.split(/[\s,;]+/).map((x) => x.trim()).filter(Boolean);
const unique = (xs: string[]) => [...new Set(xs)];
const sameText = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));
const isHttps = (req: FastifyRequest) => req.protocol === 'https' || String(req.headers['x-forwarded-proto'] ?? '').split(',')[0]?.trim() === 'https';

/**
 * Contract §10: the partner dashboard for people at `/app`, server-rendered. It reaches the service
 * only through the public JSON API, in process (`app.inject` with the person's token), so the pages
 * have exactly the token's scopes and partners, and every change goes through the command log with
 * an audit trail naming the token. Sessions live in Redis (shared by every API process); forms carry
 * a CSRF token and an idempotency key. Form bodies, cookies and the security headers are registered
 * in this plugin's scope only: the command endpoints keep refusing form bodies.
 */
export async function registerWebApp(app: FastifyInstance, ctx: AppContext, registry: TokenRegistry): Promise<void> {
  const sessions = new SessionStore(ctx.queues.connection, `${ctx.queues.prefix}:webapp:session:`, SESSION_TTL_SECONDS);

  await app.register(async (scope) => {
    // Form bodies are parsed for these routes only (an outer scope may have its own parser for them).
    if (scope.hasContentTypeParser('application/x-www-form-urlencoded')) scope.removeContentTypeParser('application/x-www-form-urlencoded');
    await scope.register(formbody, { bodyLimit: 256 * 1024 });
    await scope.register(cookie);

    scope.addHook('onSend', async (req, reply, payload) => {
      reply.header('content-security-policy', CSP);
      reply.header('referrer-policy', 'no-referrer');
      reply.header('x-content-type-options', 'nosniff');
      reply.header('x-frame-options', 'DENY');
      reply.header('cross-origin-opener-policy', 'same-origin');
      reply.header('cross-origin-resource-policy', 'same-origin');
      if (!req.url.startsWith('/app/assets/')) reply.header('cache-control', 'no-store');
      return payload;
    });

    const chromeFor = (req: FastifyRequest, lang: Locale, here: string, view?: { session: Session; token: ApiToken; partnerId: string }): pages.Chrome => ({
      t: strings[lang],
      f: formats(lang),
      lang,
      langHref: (l) => {
        const u = new URL(here, 'http://app.invalid');
        u.searchParams.set('lang', l);
        return u.pathname + u.search;
      },
      ...(view
        ? {
          session: {
            partnerId: view.partnerId,
            csrf: view.session.csrf,
            canPeople: hasScope(view.token, 'employees:read'),
            canWrite: hasScope(view.token, 'commands:write'),
            newKey: () => `web.${randomBytes(16).toString('hex')}`,
          },
        }
        : {}),
    });
    const chromes = new WeakMap<FastifyRequest, pages.Chrome>();
    const queryLang = (req: FastifyRequest): Locale | null => {
      const l = (req.query as Record<string, unknown> | undefined)?.lang;
      return isLocale(l) ? l : null;
    };
    const anonymousChrome = (req: FastifyRequest) => chromeFor(req, queryLang(req) ?? 'en', req.method === 'GET' ? req.url : '/app/sign-in');

    const send = (reply: FastifyReply, c: pages.Chrome, status: number, page: Html) =>
      reply.code(status).type('text/html; charset=utf-8').header('content-language', c.lang).send(page.value);
    const cookieOptions = (req: FastifyRequest, maxAge: number) => ({ path: '/app', httpOnly: true, sameSite: 'strict' as const, secure: isHttps(req), maxAge });

    const toSignIn = async (req: FastifyRequest, reply: FastifyReply, sid?: string) => {
      await sessions.destroy(sid);
      reply.clearCookie(SESSION_COOKIE, { path: '/app' });
      if (req.method === 'GET') return reply.redirect(sid ? '/app/sign-in?expired=1' : '/app/sign-in', 303);
      const c = anonymousChrome(req);
      return send(reply, c, 403, pages.errorPage(c, { message: c.t.error.signInAgain, signIn: true }));
    };

    scope.setErrorHandler(async (err: Error & { statusCode?: number; code?: string }, req, reply) => {
      const c = chromes.get(req) ?? anonymousChrome(req);
      if (err instanceof SignedOut) return toSignIn(req, reply, req.cookies?.[SESSION_COOKIE]);
      if (err instanceof WebError) {
        const mask = (s: string) => (c.session?.canPeople ? s : s.replace(/[^\s<>@"']+@[^\s<>@"']+/g, '…'));
        const detail = err.api ? mask([err.api.message, ...(err.api.issues ?? []).map((i) => `${i.path}: ${i.message}`)].join(' ')) : undefined;
        const back = c.session ? `${pages.partnerBase(c.session.partnerId)}/clients` : undefined;
        return send(reply, c, err.status, pages.errorPage(c, { message: err.text(c.t), ...(err.api ? { code: err.api.code } : {}), ...(detail ? { detail } : {}), ...(back ? { back } : {}) }));
      }
      const status = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
      if (status === 500) req.log.error({ err }, 'web app error');
      return send(reply, c, status, pages.errorPage(c, { message: status === 500 ? c.t.error.title : c.t.error.missing, ...(err.code ? { code: err.code } : {}) }));
    });
    scope.setNotFoundHandler(async (req, reply) => {
      const c = anonymousChrome(req);
      return send(reply, c, 404, pages.errorPage(c, { message: c.t.error.notFound }));
    });

    /**
     * A cross-site request is refused whatever it carries (SameSite=Strict already keeps the cookie
     * away). With `Referrer-Policy: no-referrer` browsers send `Origin: null` even for this site's own
     * forms, so an opaque origin is judged by `Sec-Fetch-Site` (and the CSRF token) alone.
     */
    const assertSameOrigin = (req: FastifyRequest) => {
      const site = req.headers['sec-fetch-site'];
      if (site === 'cross-site' || site === 'same-site') throw new WebError(403, (t) => t.error.csrf);
      const origin = req.headers.origin;
      if (origin && origin !== 'null') {
        const host = req.headers['x-forwarded-host'] ?? req.headers.host;
        if (URL.parse(origin)?.host !== host) throw new WebError(403, (t) => t.error.csrf);
      }
    };
    const assertForm = (req: FastifyRequest) => {
      if (!String(req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) throw new WebError(415, (t) => t.error.csrf);
    };

    /** The signed-in person for this partner, or a response already sent (sign-in redirect, 403). */
    const open = async (req: FastifyRequest, reply: FastifyReply, partnerId: string | null): Promise<View | null> => {
      const sid = req.cookies[SESSION_COOKIE];
      const session = await sessions.get(sid);
      const token = session ? registry.find(session.token) : undefined;
      if (!session || !token || !sid) {
        await toSignIn(req, reply, sid);
        return null;
      }
      const asked = queryLang(req);
      if (asked && asked !== session.lang) {
        session.lang = asked;
        await sessions.update(sid, session);
      }
      const lang = session.lang ?? session.partnerLocale ?? 'en';
      const here = req.method === 'GET' ? req.url : `${pages.partnerBase(session.partnerId)}/clients`;
      const c = chromeFor(req, lang, here, { session, token, partnerId: session.partnerId });
      chromes.set(req, c);
      if (partnerId !== null && partnerId !== session.partnerId) {
        // The session is bound to the partner chosen at sign-in; another partner's pages are not served.
        send(reply, c, 403, pages.errorPage(c, { message: c.t.error.otherPartner, back: `${pages.partnerBase(session.partnerId)}/clients` }));
        return null;
      }
      return { c, sid, session, token, api: new PartnerApi(app, session.token, req.id), partnerId: session.partnerId, base: pages.partnerBase(session.partnerId) };
    };

    /** The body of a 2xx read; a 401 ends the session, other failures become error pages. */
    const must = <T>(r: ApiReply<T>): T => {
      if (!r.error) return r.body;
      if (r.status === 401) throw new SignedOut();
      if (r.status === 403) throw new WebError(403, (t) => t.error.forbidden, r.error);
      if (r.status === 404) throw new WebError(404, (t) => t.error.notFound, r.error);
      if (r.status >= 500) throw new WebError(503, (t) => t.error.unavailable);
      throw new WebError(r.status, (t) => t.error.refused, r.error);
    };
    /** A read the API may not offer (yet): null on 404 or 403 instead of an error page. */
    const optional = <T>(r: ApiReply<T>): T | null => (r.status === 404 || r.status === 403 ? null : must(r));
    const partnerUrl = (v: View, path: string) => `/v1/partners/${encodeURIComponent(v.partnerId)}${path}`;
    const listClients = async (v: View) => must(await v.api.get<{ clients: ClientSummary[]; nextCursor?: string | null }>(partnerUrl(v, '/clients?limit=1000')));
    const page = (v: View, reply: FastifyReply, html: Html) => send(reply, v.c, 200, html);
    const params = (req: FastifyRequest) => req.params as Record<string, string>;
    const query = (req: FastifyRequest) => req.query as Record<string, string | undefined>;

    // ── assets ────────────────────────────────────────────────────────────────────────────────────
    scope.get('/assets/:name', async (req, reply) => {
      const a = assets.get(params(req).name ?? '');
      if (!a) throw new WebError(404, (t) => t.error.notFound);
      return reply.type(a.type).header('cache-control', 'public, max-age=31536000, immutable').header('etag', `"${a.version}"`).send(a.body);
    });

    // ── sign-in and sign-out ──────────────────────────────────────────────────────────────────────
    const renderSignIn = (req: FastifyRequest, reply: FastifyReply, status: number, lang: Locale, o: { error?: string; notice?: string; askPartner?: boolean; partnerId?: string }) => {
      const pre = randomBytes(24).toString('base64url');
      reply.setCookie(SIGN_IN_COOKIE, pre, cookieOptions(req, 3600));
      const c = chromeFor(req, lang, '/app/sign-in');
      return send(reply, c, status, pages.signInPage(c, { csrf: pre, ...o }));
    };

    scope.get('/', async (req, reply) => {
      const session = await sessions.get(req.cookies[SESSION_COOKIE]);
      if (!session) return reply.redirect(`/app/sign-in${queryLang(req) ? `?lang=${queryLang(req)}` : ''}`, 303);
      const v = await open(req, reply, null);
      if (!v) return reply;
      return reply.redirect(`${v.base}/${v.c.session!.canPeople ? 'employees' : 'clients'}`, 303);
    });

    scope.get('/sign-in', async (req, reply) => {
      const q = query(req);
      const lang = queryLang(req) ?? 'en';
      const t = strings[lang];
      return renderSignIn(req, reply, 200, lang, { ...(q.bye ? { notice: t.signIn.signedOut } : {}), ...(q.expired ? { notice: t.error.signInAgain } : {}) });
    });

    scope.post('/sign-in', async (req, reply) => {
      assertSameOrigin(req);
      assertForm(req);
      const form = (req.body ?? {}) as Form;
      const lang = isLocale(one(form, 'lang')) ? (one(form, 'lang') as Locale) : 'en';
      const t = strings[lang];
      const pre = req.cookies[SIGN_IN_COOKIE] ?? '';
      if (!pre || !sameText(pre, one(form, '_csrf'))) throw new WebError(403, (s) => s.error.csrf);
      const raw = one(form, 'token');
      const token = raw ? registry.find(raw) : undefined;
      const typedPartner = one(form, 'partnerId');
      if (!token) return renderSignIn(req, reply, 401, lang, { error: t.signIn.unknownToken, partnerId: typedPartner });
      const partnerId = typedPartner || (Array.isArray(token.partners) && token.partners.length === 1 ? token.partners[0]! : '');
      if (!partnerId) return renderSignIn(req, reply, 400, lang, { error: t.signIn.choosePartner, askPartner: true });
      if (!idPattern.test(partnerId)) return renderSignIn(req, reply, 404, lang, { error: t.signIn.noPartner, askPartner: true, partnerId });
      // The token is checked by the API itself: the dashboard read needs `read` on this partner.
      const probe = await new PartnerApi(app, raw, req.id).get<Dashboard>(`/v1/partners/${encodeURIComponent(partnerId)}/dashboard`);
      if (probe.status === 403) return renderSignIn(req, reply, 403, lang, { error: t.signIn.forbidden, partnerId });
      if (probe.status === 404) return renderSignIn(req, reply, 404, lang, { error: t.signIn.noPartner, askPartner: true, partnerId });
      if (probe.error) throw new WebError(probe.status >= 500 ? 503 : probe.status, (s) => (probe.status >= 500 ? s.error.unavailable : s.error.refused), probe.error);
      const partnerLocale = probe.body.locale ?? probe.body.partner?.locale;
      const chosen = one(form, 'lang');
      await sessions.destroy(req.cookies[SESSION_COOKIE]);
      const sid = await sessions.create({
        token: raw,
        partnerId,
        csrf: randomBytes(32).toString('base64url'),
        lang: isLocale(chosen) && chosen !== 'en' ? chosen : null,
        partnerLocale: isLocale(partnerLocale) ? partnerLocale : null,
        signedInAt: ctx.now().toISOString(),
      });
      reply.clearCookie(SIGN_IN_COOKIE, { path: '/app' });
      reply.setCookie(SESSION_COOKIE, sid, cookieOptions(req, SESSION_TTL_SECONDS));
      return reply.redirect(`${pages.partnerBase(partnerId)}`, 303);
    });

    scope.post('/sign-out', async (req, reply) => {
      assertSameOrigin(req);
      const sid = req.cookies[SESSION_COOKIE];
      const session = await sessions.get(sid);
      const form = (req.body ?? {}) as Form;
      if (session && !sameText(session.csrf, one(form, '_csrf'))) throw new WebError(403, (t) => t.error.csrf);
      await sessions.destroy(sid);
      reply.clearCookie(SESSION_COOKIE, { path: '/app' });
      const lang = session?.lang ?? session?.partnerLocale;
      return reply.redirect(`/app/sign-in?bye=1${lang ? `&lang=${lang}` : ''}`, 303);
    });

    // ── pages ─────────────────────────────────────────────────────────────────────────────────────
    scope.get('/partners/:partnerId', async (req, reply) => {
      const v = await open(req, reply, params(req).partnerId!);
      if (!v) return reply;
      return reply.redirect(`${v.base}/${v.c.session!.canPeople ? 'employees' : 'clients'}`, 303);
    });

    scope.get('/partners/:partnerId/employees', async (req, reply) => {
      const v = await open(req, reply, params(req).partnerId!);
      if (!v) return reply;
      if (!v.c.session!.canPeople) throw new WebError(403, (t) => t.error.forbidden);
      const cursor = query(req).cursor;
      const [employees, clients] = await Promise.all([
        v.api.get<{ employees: Employee[]; nextCursor?: string | null }>(partnerUrl(v, `/employees?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)).then(must),
        listClients(v),
      ]);
      const next = employees.nextCursor;
      return page(v, reply, pages.employeesPage(v.c, {
        employees: employees.employees,
        clientNames: new Map(clients.clients.map((x) => [x.hubId, x.name])),
        ...(next ? { nextHref: `${v.base}/employees?cursor=${encodeURIComponent(next)}` } : {}),
      }));
    });

    scope.get('/partners/:partnerId/employees/assign', async (req, reply) => {
      const v = await open(req, reply, params(req).partnerId!);
      if (!v) return reply;
      if (!v.c.session!.canPeople || !v.c.session!.canWrite) throw new WebError(403, (t) => t.error.forbidden);
      const email = (query(req).email ?? '').toLowerCase();
      const [employees, clients] = await Promise.all([
        v.api.get<{ employees: Employee[] }>(partnerUrl(v, '/employees?limit=1000')).then(must),
        listClients(v),
      ]);
      const employee = employees.employees.find((e) => e.email === email);
      if (!employee) throw new WebError(404, (t) => t.error.notFound);
      return page(v, reply, pages.assignPage(v.c, { employee, clients: clients.clients }));
    });

    scope.get('/partners/:partnerId/clients', async (req, reply) => {
      const v = await open(req, reply, params(req).partnerId!);
      if (!v) return reply;
      const cursor = query(req).cursor;
      const clients = must(await v.api.get<{ clients: ClientSummary[]; nextCursor?: string | null }>(partnerUrl(v, `/clients?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)));
      const next = clients.nextCursor;
      return page(v, reply, pages.clientsPage(v.c, { clients: clients.clients, ...(next ? { nextHref: `${v.base}/clients?cursor=${encodeURIComponent(next)}` } : {}) }));
    });

    scope.get('/partners/:partnerId/clients/:hubId', async (req, reply) => {
      const v = await open(req, reply, params(req).partnerId!);
      if (!v) return reply;
      const hubId = params(req).hubId ?? '';
      if (!idPattern.test(hubId)) throw new WebError(404, (t) => t.error.notFound);
      const [client, employees] = await Promise.all([
        v.api.get<ClientDetail>(partnerUrl(v, `/clients/${encodeURIComponent(hubId)}`)).then(must),
        v.c.session!.canPeople ? v.api.get<{ employees: Employee[] }>(partnerUrl(v, '/employees?limit=1000')).then(must) : Promise.resolve(null),
      ]);
      return page(v, reply, pages.clientPanelPage(v.c, { client, employees: employees?.employees ?? null }));
    });

    scope.get('/partners/:partnerId/tier', async (req, reply) => {
      const v = await open(req, reply, params(req).partnerId!);
      if (!v) return reply;
      const [dashboard, credit] = await Promise.all([
        v.api.get<Dashboard>(partnerUrl(v, '/dashboard')).then(must),
        v.api.get<{ months: CreditMonth[] }>(partnerUrl(v, '/credit')).then(must),
      ]);
      const asked = query(req).month;
      const months = credit.months;
      const selected = (asked && monthPattern.test(asked) ? months.find((m) => m.month === asked) : undefined) ?? months[months.length - 1] ?? null;
      return page(v, reply, pages.tierPage(v.c, { dashboard, months, selected }));
    });

    scope.get('/partners/:partnerId/alerts', async (req, reply) => {
      const v = await open(req, reply, params(req).partnerId!);
      if (!v) return reply;
      const canPeople = v.c.session!.canPeople;
      const [dashboard, clients, renewals, requests, conflicts] = await Promise.all([
        v.api.get<Dashboard>(partnerUrl(v, '/dashboard')).then(must),
        listClients(v),
        v.api.get<{ renewals: Renewal[] }>(partnerUrl(v, '/renewals')).then(optional),
        canPeople ? v.api.get<{ requests: AccessRequest[] }>(partnerUrl(v, '/requests?state=pending&limit=1000')).then(optional) : Promise.resolve(null),
        canPeople ? v.api.get<{ conflicts: Conflict[] }>(partnerUrl(v, '/conflicts?limit=1000')).then(optional) : Promise.resolve(null),
      ]);
      const now = ctx.now();
      const names = new Map(clients.clients.map((x) => [x.hubId, x.name]));
      // Without GET …/renewals: the active clients whose renewal date falls in the alert window.
      const today = now.toISOString().slice(0, 10);
      const horizon = new Date(now.getTime() + ctx.config.renewalAlertDays * 86_400_000).toISOString().slice(0, 10);
      const derivedRenewals: Renewal[] = clients.clients
        .filter((x) => x.status === 'active' && x.renewalDate && x.renewalDate >= today && x.renewalDate <= horizon)
        .sort((a, b) => (a.renewalDate! < b.renewalDate! ? -1 : a.renewalDate! > b.renewalDate! ? 1 : 0))
        .map((x) => ({ hubId: x.hubId, name: x.name, renewalDate: x.renewalDate, products: x.products }));
      // Without GET …/requests: the pending pairs of the client list, whose age the list does not give.
      const dayMs = 86_400_000;
      const pending: pages.PendingView[] | null = !canPeople
        ? null
        : requests
          ? requests.requests.map((r) => ({ hubId: r.clientHubId, clientName: names.get(r.clientHubId) ?? r.clientHubId, email: r.employeeEmail, requestedAt: r.requestedAt, expiresAt: r.expiresAt ?? null, ageDays: Math.max(0, Math.floor((now.getTime() - Date.parse(r.requestedAt)) / dayMs)) }))
            .sort((a, b) => (b.ageDays ?? 0) - (a.ageDays ?? 0))
          : clients.clients.flatMap((x) => (x.employees ?? []).filter((e) => e.access === 'pending').map((e) => ({ hubId: x.hubId, clientName: x.name, email: e.email, requestedAt: null, expiresAt: null, ageDays: null })));
      const pendingFromList = clients.clients.some((x) => x.employees) ? clients.clients.reduce((n, x) => n + (x.employees ?? []).filter((e) => e.access === 'pending').length, 0) : null;
      return page(v, reply, pages.alertsPage(v.c, {
        renewalsCount: dashboard.alerts.upcomingRenewals,
        renewals: renewals?.renewals ?? derivedRenewals,
        renewalsDerived: !renewals,
        pendingCount: dashboard.alerts.pendingRequests ?? pending?.length ?? pendingFromList,
        pending,
        conflicts: conflicts?.conflicts ?? null,
        clientNames: names,
      }));
    });

    scope.get('/partners/:partnerId/team', async (req, reply) => {
      const v = await open(req, reply, params(req).partnerId!);
      if (!v) return reply;
      const dashboard = must(await v.api.get<Dashboard>(partnerUrl(v, '/dashboard')));
      return page(v, reply, pages.teamPage(v.c, { team: dashboard.team ?? {} }));
    });

    /** A `back` link must stay on this partner's pages (no open redirect). */
    const safeBack = (v: View, back: string | undefined) =>
      back && back.startsWith(`${v.base}/`) && /^[A-Za-z0-9/_.~%-]+$/.test(back) && !back.includes('//') ? back : `${v.base}/clients`;

    scope.get('/partners/:partnerId/commands/:commandId', async (req, reply) => {
      const v = await open(req, reply, params(req).partnerId!);
      if (!v) return reply;
      const commandId = params(req).commandId ?? '';
      if (!idPattern.test(commandId)) throw new WebError(404, (t) => t.error.notFound);
      const status = must(await v.api.waitCommand(commandId, RESULT_WAIT_MS));
      if (status.partnerId !== v.partnerId) throw new WebError(404, (t) => t.error.notFound);
      return page(v, reply, pages.resultPage(v.c, { status, back: safeBack(v, query(req).back), settled: settled(status) }));
    });

    // ── actions: one command each, through the API, then the result page (post/redirect/get) ───────
    const actions: Record<string, (form: Form) => Record<string, unknown>> = {
      assign: (form) => {
        const clientHubIds = unique([...all(form, 'clientHubIds'), ...split(one(form, 'hubIds'))]);
        const employeeEmails = unique([...all(form, 'employeeEmails'), ...split(one(form, 'emails'))]);
        if (!clientHubIds.length) throw new WebError(400, (t) => t.error.pickClients);
        if (!employeeEmails.length) throw new WebError(400, (t) => t.error.pickEmployees);
        return { type: 'access.assign', clientHubIds, employeeEmails };
      },
      revoke: (form) => {
        if (one(form, 'confirm') !== REMOVE_WORD) throw new WebError(400, (t) => t.error.confirmWord);
        const clientHubIds = unique([...all(form, 'clientHubIds'), ...split(one(form, 'hubIds'))]);
        const employeeEmails = unique([...all(form, 'employeeEmails'), ...split(one(form, 'emails'))]);
        if (!clientHubIds.length) throw new WebError(400, (t) => t.error.pickClients);
        if (!employeeEmails.length) throw new WebError(400, (t) => t.error.pickEmployees);
        return { type: 'access.revoke', clientHubIds, employeeEmails };
      },
      terminate: (form) => {
        if (one(form, 'confirm') !== 'yes') throw new WebError(400, (t) => t.error.confirmTick);
        const hubId = one(form, 'hubId');
        if (!hubId) throw new WebError(400, (t) => t.error.missing);
        return { type: 'client.terminate', hubId };
      },
      'team-email': (form) => {
        const to = one(form, 'to');
        const subject = one(form, 'subject');
        const body = one(form, 'body');
        const replyTo = one(form, 'replyTo');
        if (!to || !subject || !body) throw new WebError(400, (t) => t.error.missing);
        return { type: 'team.email', to, subject, body, ...(replyTo ? { replyTo } : {}) };
      },
    };

    scope.post('/partners/:partnerId/actions/:action', async (req, reply) => {
      assertSameOrigin(req);
      const v = await open(req, reply, params(req).partnerId!);
      if (!v) return reply;
      assertForm(req);
      const form = (req.body ?? {}) as Form;
      if (!sameText(v.session.csrf, one(form, '_csrf'))) throw new WebError(403, (t) => t.error.csrf);
      const build = actions[params(req).action ?? ''];
      if (!build || !Object.hasOwn(actions, params(req).action ?? '')) throw new WebError(404, (t) => t.error.notFound);
      const idem = one(form, 'idem');
      if (!idemPattern.test(idem)) throw new WebError(400, (t) => t.error.csrf);
      const command = build(form);
      const r = await v.api.command(v.partnerId, command, idem);
      const accepted = must(r);
      const back = safeBack(v, one(form, 'back'));
      return reply.redirect(`${v.base}/commands/${encodeURIComponent(accepted.commandId)}?back=${encodeURIComponent(back)}`, 303);
    });
  }, { prefix: '/app' });
}

