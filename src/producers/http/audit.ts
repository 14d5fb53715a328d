import type { FastifyInstance } from 'fastify';
import type { AppContext } from '../../context.js';
import { HttpError } from '../../commands/errors.js';
import { commandTypes, idPattern } from '../../commands/schemas.js';
import { authorize, type TokenRegistry } from './auth.js';

const csvCell = (v: unknown) => {
  const s = v == null ? '' : typeof v === 'string' ? v : JSON.stringify(v);
  return /[",\n\r]/.test(s) || /^[=+\-@]/.test(s) ? `"${s.replace(/^([=+\-@])/, "'$1").replaceAll('"', '""')}"` : s;
};

/**
 * The audit trail: every accepted command with who (token name), what, when and its outcome,
 * partner-isolated; filters `from`, `to` (ISO instants), `type`, `email`; pages of `limit` (≤ 500)
 * with an opaque `cursor`. `Accept: text/csv` gives the same rows as CSV.
 */
export function registerAuditRoutes(app: FastifyInstance, ctx: AppContext, registry: TokenRegistry): void {
  app.get<{ Params: { partnerId: string }; Querystring: Record<string, string | undefined> }>('/v1/partners/:partnerId/audit', async (req, reply) => {
    const partnerId = req.params.partnerId;
    if (!idPattern.test(partnerId)) throw new HttpError(400, 'VALIDATION_FAILED', 'The request is not valid.', { issues: [{ path: 'partnerId', message: 'invalid' }] });
    authorize(registry, req, 'read', partnerId);
    const q = req.query;
    const issues: { path: string; message: string }[] = [];
    const instant = (k: 'from' | 'to') => {
      const v = q[k];
      if (v === undefined) return null;
      const d = new Date(v);
      if (Number.isNaN(d.getTime())) issues.push({ path: k, message: 'must be an ISO-8601 instant' });
      return d;
    };
    const from = instant('from');
    const to = instant('to');
    if (q.type !== undefined && !commandTypes.includes(q.type as never)) issues.push({ path: 'type', message: `must be one of ${commandTypes.join(', ')}` });
    const limit = q.limit === undefined ? 100 : Number(q.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 500) issues.push({ path: 'limit', message: 'must be an integer from 1 to 500' });
    const decoded = q.cursor === undefined ? null : Buffer.from(q.cursor, 'base64url').toString();
    const cursor = decoded !== null && /^[1-9]\d{0,18}$/.test(decoded) ? Number(decoded) : null;
    if (q.cursor !== undefined && cursor === null) issues.push({ path: 'cursor', message: 'invalid cursor' });
    if (q.email !== undefined && q.email.length > 254) issues.push({ path: 'email', message: 'too long' });
    if (issues.length) throw new HttpError(400, 'VALIDATION_FAILED', 'The request is not valid.', { issues });
    const email = q.email?.toLowerCase() ?? null;
    const rows = await ctx.orm.em.fork().execute<{ seq: string; id: string; type: string; token_name: string | null; created_at: string; finished_at: string | null; state: string; error: unknown; result: unknown; payload: Record<string, unknown> }[]>(
      `select seq, id, type, token_name, created_at, finished_at, state, error, result, payload from command
        where partner_id = ?
          and (?::timestamptz is null or created_at >= ?::timestamptz)
          and (?::timestamptz is null or created_at < ?::timestamptz)
          and (?::text is null or type = ?)
          and (?::text is null or payload->>'email' = ? or payload->>'employeeEmail' = ? or payload->'employeeEmails' @> to_jsonb(?::text))
          and (?::bigint is null or seq < ?::bigint)
        order by seq desc limit ?`,
      [partnerId, from?.toISOString() ?? null, from?.toISOString() ?? null, to?.toISOString() ?? null, to?.toISOString() ?? null, q.type ?? null, q.type ?? null,
        email, email, email, email, cursor, cursor, limit + 1],
    );
    const page = rows.slice(0, limit);
    const entries = page.map((r) => ({
      commandId: r.id,
      type: r.type,
      who: r.token_name,
      at: new Date(r.created_at).toISOString(),
      finishedAt: r.finished_at ? new Date(r.finished_at).toISOString() : null,
      state: r.state,
      outcome: (r.result as { outcome?: string } | null)?.outcome ?? null,
      error: r.error ?? null,
      command: r.payload,
    }));
    const nextCursor = rows.length > limit ? Buffer.from(String(page.at(-1)!.seq)).toString('base64url') : null;
    if ((req.headers.accept ?? '').includes('text/csv')) {
      const header = ['commandId', 'type', 'who', 'at', 'finishedAt', 'state', 'outcome', 'errorCode', 'command'];
      const lines = entries.map((e) => [e.commandId, e.type, e.who, e.at, e.finishedAt, e.state, e.outcome, (e.error as { code?: string } | null)?.code ?? null, e.command].map(csvCell).join(','));
      reply.type('text/csv; charset=utf-8');
      if (nextCursor) reply.header('x-next-cursor', nextCursor);
      return [header.join(','), ...lines].join('\r\n') + '\r\n';
    }
    return { entries, nextCursor };
  });
}
