import type { FastifyInstance } from 'fastify';
import type { AppContext } from '../../context.js';
import { applyGrant, hashToken } from '../../commands/grant.js';
import { insertAppliedCommand } from '../../db/command-log.js';
import { findGrantLink, markGrantLinkUsed, type GrantLinkRow } from '../../db/grant-link-store.js';
import { DomainError } from '../../domain/errors.js';

const esc = (s: string) => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
const page = (title: string, body: string) =>
  `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title><meta name="viewport" content="width=device-width"></head>` +
  `<body style="font-family:sans-serif;max-width:36rem;margin:3rem auto"><h1>${esc(title)}</h1>${body}</body></html>`;

type Lookup = { ok: true; row: GrantLinkRow } | { ok: false; status: number; title: string; text: string };

function check(row: GrantLinkRow | undefined, now: Date): Lookup {
  if (!row) return { ok: false, status: 404, title: 'Link not valid', text: 'This link is not valid. Ask your partner to send a new request.' };
  if (row.usedAt) return { ok: false, status: 410, title: 'Link already used', text: 'This link was already used.' };
  if (new Date(row.expiresAt).getTime() <= now.getTime()) return { ok: false, status: 410, title: 'Link expired', text: 'This link has expired. Ask your partner to send a new request.' };
  return { ok: true, row };
}

const tokenShape = /^[A-Za-z0-9_-]{20,100}$/;

/**
 * Contract §6: GET shows a confirmation page, POST grants the access (as access.grant would).
 * Tokens are 256-bit random, stored only as SHA-256, single-use, expiring, bound to one pair;
 * a tampered token matches nothing (404).
 */
export function registerGrantRoutes(app: FastifyInstance, ctx: AppContext): void {
  app.get<{ Params: { token: string } }>('/v1/grants/:token', async (req, reply) => {
    const token = req.params.token;
    const row = tokenShape.test(token) ? await findGrantLink(ctx.orm.em.fork(), hashToken(token)) : undefined;
    const r = check(row, ctx.now());
    reply.header('cache-control', 'no-store').header('referrer-policy', 'no-referrer').type('text/html; charset=utf-8');
    if (!r.ok) return reply.code(r.status).send(page(r.title, `<p>${esc(r.text)}</p>`));
    const who = r.row.employeeName ? `${r.row.employeeName} (${r.row.email})` : r.row.email;
    return reply.send(page('Grant access?', `<p>${esc(r.row.partnerName)} asks that <strong>${esc(who)}</strong> get access to ${esc(r.row.clientName ?? r.row.hubId)}.</p>` +
      `<form method="post"><button type="submit" style="padding:10px 16px">Grant access</button></form>`));
  });

  app.post<{ Params: { token: string } }>('/v1/grants/:token', async (req, reply) => {
    const token = req.params.token;
    const hash = hashToken(token);
    const result = await ctx.orm.em.fork().transactional(async (tx) => {
      const row = tokenShape.test(token) ? await findGrantLink(tx, hash, { lock: true }) : undefined;
      const r = check(row, ctx.now());
      if (!r.ok) return r;
      const commandId = `grant-link.${hash.slice(0, 32)}`;
      await markGrantLinkUsed(tx, hash);
      const granted = await applyGrant(tx, { partnerId: r.row.partnerId, hubId: r.row.hubId, email: r.row.email, commandId, issuedAt: null }).catch((err: unknown) => {
        if (err instanceof DomainError) return null;
        throw err;
      });
      if (!granted) return { ok: false as const, status: 410, title: 'Request withdrawn', text: 'This access request is no longer pending.' };
      const payload = { type: 'access.grant', commandId, clientHubId: r.row.hubId, employeeEmail: r.row.email };
      await insertAppliedCommand(tx, {
        id: commandId, partnerId: r.row.partnerId, type: 'access.grant', payload, bodyHash: hash, tokenName: 'grant-link',
        result: { outcome: granted.decision.outcome, via: 'grant-link' },
      });
      return { ok: true as const, row: r.row, outcome: granted.decision.outcome };
    });
    reply.header('cache-control', 'no-store').type('text/html; charset=utf-8');
    if (!result.ok) return reply.code(result.status).send(page(result.title, `<p>${esc(result.text)}</p>`));
    return reply.send(page('Access granted', `<p>${esc(result.row.email)} now has access. You can close this page.</p>`));
  });
}
