import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { AppContext } from '../../context.js';
import { answerAll, answerLink, viewAll, viewLink, type AllOutcome, type LinkAnswer, type LinkOutcome } from '../../commands/grant.js';
import { readGrantAllToken } from '../../lib/grant-link.js';
import { localeFromAcceptLanguage, localeOf, messages, type Locale } from '../../i18n/messages.js';
import { employeeLabel, escapeHtml as esc, LOOK } from '../../mail/lifecycle-templates.js';
import { enqueueMailAfterCommit } from '../../jobs/enqueue.js';

/**
 * The client's pages behind a grant link (contract §6): GET shows the request with **Grant** and
 * **Decline**; a POST to the same URL answers it (`decision=grant`, the default, or
 * `decision=decline`). Every page (confirm, granted, declined, already used, expired, withdrawn,
 * unknown) is in the client's locale (the request email's), with `<html lang>` and
 * `Content-Language`, in the emails' look, and names the partner, the employee and the client. The
 * token is a credential: no-store, no referrer, no framing, a CSP without scripts.
 */

type Page = LinkOutcome['page'];

const STATUS: Record<Page, number> = { confirm: 200, granted: 200, declined: 200, used: 410, expired: 410, withdrawn: 410, unknown: 404 };

/** The pages' one stylesheet, inline and allowed by its hash (no `unsafe-inline`). */
const STYLE = `
:root{color-scheme:light}
body{margin:0;background:${LOOK.page};color:${LOOK.text};font-family:${LOOK.font};font-size:1rem;line-height:1.5}
main{max-width:36rem;margin:3rem auto;padding:2rem;background:#fff;border:1px solid ${LOOK.border};border-top:4px solid ${LOOK.accent};border-radius:6px}
h1{font-size:1.5rem;line-height:1.25;margin:0 0 1rem}
p{margin:0 0 1rem}
.muted{color:${LOOK.muted}}
form{display:flex;flex-wrap:wrap;gap:.75rem;margin:1.5rem 0 0}
button{font:inherit;font-weight:600;padding:10px 16px;border-radius:4px;cursor:pointer;border:2px solid ${LOOK.accent}}
button.grant{background:${LOOK.accent};color:#1f2d3d}
button.decline{background:#fff;color:${LOOK.text};border-color:${LOOK.border}}
button:focus-visible{outline:3px solid ${LOOK.text};outline-offset:2px}
@media (max-width:40rem){main{margin:0;border-radius:0;border-left:0;border-right:0}}
`;
const STYLE_HASH = `sha256-${createHash('sha256').update(STYLE).digest('base64')}`;
const CSP = `default-src 'none'; style-src '${STYLE_HASH}'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`;

/** The frame every grant page shares: its language, title (also the heading), the inline style the CSP hashes, and the body. */
function pageShell(lang: Locale, title: string, body: string): string {
  return `<!doctype html>
<html lang="${lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>${esc(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<h1>${esc(title)}</h1>
${body}
</main>
</body>
</html>
`;
}

/** Sends a grant page with its status, language and security headers (no scripts, no framing, no referrer, no caching). */
function sendPage(reply: FastifyReply, lang: Locale, status: number, html: string) {
  return reply.code(status)
    .header('content-language', lang)
    .header('content-security-policy', CSP)
    .header('referrer-policy', 'no-referrer')
    .header('x-content-type-options', 'nosniff')
    .header('x-frame-options', 'DENY')
    .header('cross-origin-opener-policy', 'same-origin')
    .header('cache-control', 'no-store')
    .type('text/html; charset=utf-8')
    .send(html);
}

/** One page in the client's language. */
export function renderGrantPage(lang: Locale, page: Page, names?: { partner: string; employee: string; client: string }): string {
  const m = messages[lang].page;
  const n = names ?? { partner: '', employee: '', client: '' };
  const [title, paragraphs]: [string, string[]] = (() => {
    switch (page) {
      case 'confirm': return [m.confirmTitle, [m.confirmAsk(n.partner, n.employee, n.client)]];
      case 'granted': return [m.grantedTitle, [m.grantedText(n.employee, n.client), m.close]];
      case 'declined': return [m.declinedTitle, [m.declinedText(n.partner, n.employee), m.close]];
      case 'used': return [m.usedTitle, [m.usedText(n.partner, n.employee)]];
      case 'expired': return [m.expiredTitle, [m.expiredText(n.partner, n.employee)]];
      case 'withdrawn': return [m.withdrawnTitle, [m.withdrawnText(n.partner, n.employee)]];
      case 'unknown': return [m.unknownTitle, [m.unknownText]];
    }
  })();
  const form = page === 'confirm'
    ? `<p class="muted">${esc(m.confirmExplain)}</p>
<form method="post">
<button type="submit" name="decision" value="grant" class="grant">${esc(m.grant)}</button>
<button type="submit" name="decision" value="decline" class="decline">${esc(m.decline)}</button>
</form>`
    : '';
  return pageShell(lang, title, `${paragraphs.map((p) => `<p>${esc(p)}</p>`).join('\n')}
${form}`);
}

function send(reply: FastifyReply, lang: Locale, out: LinkOutcome, status = STATUS[out.page]) {
  const l = out.link;
  const names = l ? { partner: l.partnerName, employee: employeeLabel(l.email, l.employeeName), client: l.clientName } : undefined;
  return sendPage(reply, lang, status, renderGrantPage(lang, out.page, names));
}

/** The page's language: the client's, as its email was written in; for a link nobody knows, the browser's (Accept-Language). */
const langOf = (out: LinkOutcome, acceptLanguage: string | undefined): Locale => (out.link ? localeOf(out.link.locale) : localeFromAcceptLanguage(acceptLanguage));

/** The page of a digest's "grant all" link: the people it can still grant and one button, or what it granted, or that none is open. */
export function renderGrantAllPage(lang: Locale, out: AllOutcome): string {
  const m = messages[lang].page;
  const partner = out.names?.partner ?? '';
  const client = out.names?.client ?? '';
  const people = out.people.length ? `<ul>\n${out.people.map((p) => `<li>${esc(employeeLabel(p.email, p.name))}</li>`).join('\n')}\n</ul>` : '';
  const [title, body]: [string, string] = (() => {
    switch (out.page) {
      case 'confirm': return [m.confirmTitle, `<p>${esc(m.confirmAllAsk(partner, client))}</p>
${people}
<p class="muted">${esc(m.confirmAllExplain)}</p>
<form method="post">
<button type="submit" name="decision" value="grant" class="grant">${esc(m.grantAll)}</button>
</form>`];
      case 'granted': return [m.grantedTitle, `<p>${esc(m.grantedAllText(client))}</p>\n${people}\n<p>${esc(m.close)}</p>`];
      case 'used': return [m.usedTitle, `<p>${esc(m.allUsedText(partner))}</p>`];
      case 'unknown': return [m.unknownTitle, `<p>${esc(m.unknownText)}</p>`];
    }
  })();
  return pageShell(lang, title, body);
}

const ALL_STATUS: Record<AllOutcome['page'], number> = { confirm: 200, granted: 200, used: 410, unknown: 404 };

function sendAll(reply: FastifyReply, lang: Locale, out: AllOutcome, status = ALL_STATUS[out.page]) {
  return sendPage(reply, lang, status, renderGrantAllPage(lang, out));
}

const FORM_LIMIT_BYTES = 4096;

/**
 * Contract §6: GET shows the confirmation page, POST answers it. Tokens are derived by HMAC from
 * the pair and its request (never stored: only their SHA-256), single-use, bound to one request of
 * one pair; a tampered token matches nothing (404).
 */
export function registerGrantRoutes(app: FastifyInstance, ctx: AppContext): void {
  // The page's form: `decision=grant|decline` (this scope only; the command endpoints refuse forms).
  if (app.hasContentTypeParser('application/x-www-form-urlencoded')) app.removeContentTypeParser('application/x-www-form-urlencoded');
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: FORM_LIMIT_BYTES }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(String(body))));
  });

  // A digest's "grant all" link: the page lists the people whose requests are still open; its
  // POST answers each of their own links once (`decision=grant`, the only answer it offers).
  const allLang = (out: AllOutcome, acceptLanguage: string | undefined): Locale => (out.locale ? localeOf(out.locale) : localeFromAcceptLanguage(acceptLanguage));
  app.get<{ Params: { token: string } }>('/v1/grants/all/:token', async (req, reply) => {
    const out = await viewAll(ctx.orm.em.fork(), readGrantAllToken(ctx.config.grantLinkSecret, req.params.token), ctx.now());
    return sendAll(reply, allLang(out, req.headers['accept-language']), out);
  });
  app.post<{ Params: { token: string }; Body: Record<string, string> | undefined }>('/v1/grants/all/:token', async (req, reply) => {
    const ref = readGrantAllToken(ctx.config.grantLinkSecret, req.params.token);
    const decision = typeof req.body === 'object' && req.body !== null ? req.body.decision : undefined;
    if (decision !== undefined && decision !== 'grant') {
      const out = await viewAll(ctx.orm.em.fork(), ref, ctx.now());
      return sendAll(reply, allLang(out, req.headers['accept-language']), out, out.page === 'confirm' ? 400 : ALL_STATUS[out.page]);
    }
    const out = await answerAll(ctx.orm.em.fork(), ref, ctx.now());
    await enqueueMailAfterCommit(ctx, out.outboxIds);
    return sendAll(reply, allLang(out, req.headers['accept-language']), out);
  });

  app.get<{ Params: { token: string } }>('/v1/grants/:token', async (req, reply) => {
    const out = await viewLink(ctx.orm.em.fork(), req.params.token, ctx.now());
    return send(reply, langOf(out, req.headers['accept-language']), out);
  });

  app.post<{ Params: { token: string }; Body: Record<string, string> | undefined }>('/v1/grants/:token', async (req, reply) => {
    const decision = typeof req.body === 'object' && req.body !== null ? req.body.decision : undefined;
    if (decision !== undefined && decision !== 'grant' && decision !== 'decline') {
      // Not an answer this page offers: the page again, unchanged.
      const out = await viewLink(ctx.orm.em.fork(), req.params.token, ctx.now());
      return send(reply, langOf(out, req.headers['accept-language']), out, out.page === 'confirm' ? 400 : STATUS[out.page]);
    }
    const answer: LinkAnswer = decision ?? 'grant';
    const out = await answerLink(ctx.orm.em.fork(), req.params.token, answer, ctx.now());
    await enqueueMailAfterCommit(ctx, out.outboxIds);
    return send(reply, langOf(out, req.headers['accept-language']), out);
  });
}
