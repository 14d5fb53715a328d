import type { FastifyInstance } from 'fastify';
import type { AppContext } from '../../context.js';
import { applyGrant, hashToken } from '../../workers/access.js';
import { DomainError } from '../../domain/errors.js';

const esc = (s: string) => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
const page = (title: string, body: string) =>
  `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title><meta name="viewport" content="width=device-width"></head>` +
  `<body style="font-family:sans-serif;max-width:36rem;margin:3rem auto"><h1>${esc(title)}</h1>${body}</body></html>`;

interface GrantRow { partner_id: string; hub_id: string; email: string; expires_at: string; used_at: string | null; partner_name: string; client_name: string | null; employee_name: string | null }

type Lookup = { ok: true; row: GrantRow } | { ok: false; status: number; title: string; text: string };

function check(row: GrantRow | undefined, now: Date): Lookup {
  if (!row) return { ok: false, status: 404, title: 'Link not valid', text: 'This link is not valid. Ask your partner to send a new request.' };
  if (row.used_at) return { ok: false, status: 410, title: 'Link already used', text: 'This link was already used.' };
  if (new Date(row.expires_at).getTime() <= now.getTime()) return { ok: false, status: 410, title: 'Link expired', text: 'This link has expired. Ask your partner to send a new request.' };
  return { ok: true, row };
}

const tokenShape = /^[A-Za-z0-9_-]{20,100}$/;

/**
 * Contract §6: GET shows a confirmation page, POST grants the access (as access.grant would).
 * Tokens are 256-bit random, stored only as SHA-256, single-use, expiring, bound to one pair;
 * a tampered token matches nothing (404).
 */
export function registerGrantRoutes(app: FastifyInstance, ctx: AppContext): void {
  const select = `select g.partner_id, g.hub_id, g.email, g.expires_at, g.used_at, p.name as partner_name, c.name as client_name, e.name as employee_name
      from grant_token g join partner p on p.id = g.partner_id
      left join client c on c.partner_id = g.partner_id and c.hub_id = g.hub_id
      left join employee e on e.partner_id = g.partner_id and e.email = g.email
     where g.token_hash = ?`;

  app.get<{ Params: { token: string } }>('/v1/grants/:token', async (req, reply) => {
    const token = req.params.token;
    const [row] = tokenShape.test(token) ? await ctx.orm.em.fork().execute<GrantRow[]>(select, [hashToken(token)]) : [];
    const r = check(row, ctx.now());
    reply.header('cache-control', 'no-store').header('referrer-policy', 'no-referrer').type('text/html; charset=utf-8');
    if (!r.ok) return reply.code(r.status).send(page(r.title, `<p>${esc(r.text)}</p>`));
    const who = r.row.employee_name ? `${r.row.employee_name} (${r.row.email})` : r.row.email;
    return reply.send(page('Grant access?', `<p>${esc(r.row.partner_name)} asks that <strong>${esc(who)}</strong> get access to ${esc(r.row.client_name ?? r.row.hub_id)}.</p>` +
      `<form method="post"><button type="submit" style="padding:10px 16px">Grant access</button></form>`));
  });

  app.post<{ Params: { token: string } }>('/v1/grants/:token', async (req, reply) => {
    const token = req.params.token;
    const hash = hashToken(token);
    const result = await ctx.orm.em.fork().transactional(async (tx) => {
      const [row] = tokenShape.test(token) ? await tx.execute<GrantRow[]>(`${select} for update of g`, [hash]) : [];
      const r = check(row, ctx.now());
      if (!r.ok) return r;
      const commandId = `grant-link.${hash.slice(0, 32)}`;
      await tx.execute('update grant_token set used_at = now() where token_hash = ?', [hash]);
      const granted = await applyGrant(tx, { partnerId: r.row.partner_id, hubId: r.row.hub_id, email: r.row.email, commandId, issuedAt: null }).catch((err: unknown) => {
        if (err instanceof DomainError) return null;
        throw err;
      });
      if (!granted) return { ok: false as const, status: 410, title: 'Request withdrawn', text: 'This access request is no longer pending.' };
      const payload = { type: 'access.grant', commandId, clientHubId: r.row.hub_id, employeeEmail: r.row.email };
      await tx.execute(
        `insert into command (id, partner_id, type, payload, body_hash, token_name, state, attempts, result, started_at, finished_at)
         values (?, ?, 'access.grant', ?::jsonb, ?, 'grant-link', 'completed', 1, ?::jsonb, now(), now()) on conflict (id) do nothing`,
        [commandId, r.row.partner_id, JSON.stringify(payload), hash, JSON.stringify({ outcome: granted.decision.outcome, via: 'grant-link' })],
      );
      return { ok: true as const, row: r.row, outcome: granted.decision.outcome };
    });
    reply.header('cache-control', 'no-store').type('text/html; charset=utf-8');
    if (!result.ok) return reply.code(result.status).send(page(result.title, `<p>${esc(result.text)}</p>`));
    return reply.send(page('Access granted', `<p>${esc(result.row.email)} now has access. You can close this page.</p>`));
  });
}
