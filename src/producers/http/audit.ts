import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { AppContext } from '../../context.js';
import { HttpError } from '../errors.js';
import { listAuditRows } from '../../db/audit-store.js';
import { commandTypes, idPattern } from '../../commands/schemas.js';
import { authorize, hasScope, type TokenRegistry } from './auth.js';
import { AuditPage, AuditQuery, MAX_PAGE, PartnerParams } from './api-schemas.js';
import { bearer, errors, handlerChecked, type ApiTypeProvider } from './openapi.js';
import { DEFAULT_PAGE } from './pagination.js';
import type { CommandState } from '../../commands/log.js';

const csvCell = (v: unknown) => {
  const s = v == null ? '' : typeof v === 'string' ? v : JSON.stringify(v);
  return /[",\n\r]/.test(s) || /^[=+\-@]/.test(s) ? `"${s.replace(/^([=+\-@])/, "'$1").replaceAll('"', '""')}"` : s;
};

/** Anything shaped like an email address inside a text (an error message). */
const emailLike = /[^\s@"'<>(),;:]+@[^\s@"'<>(),;:]+/g;
const REDACTED = '[redacted]';

/**
 * An audit entry as a reader without `employees:read` sees it (contract §3): the command leaves
 * out every employee's email and name (`email`, and `name` of the employee commands,
 * `employeeEmail`; the lists `employeeEmails` and `portalUserEmails` become their counts), and an
 * error message shows no email address.
 */
export function withoutEmployees(type: string, payload: Record<string, unknown>, error: { code: string; message: string } | null) {
  const command: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(payload)) {
    if (k === 'email' || k === 'employeeEmail' || (k === 'name' && type.startsWith('employee.'))) continue;
    if (k === 'employeeEmails') command.employeeCount = Array.isArray(v) ? v.length : 0;
    else if (k === 'portalUserEmails') command.portalUserCount = Array.isArray(v) ? v.length : 0;
    else command[k] = v;
  }
  return { command, error: error ? { ...error, message: error.message.replace(emailLike, REDACTED) } : null };
}

/**
 * The audit trail: every accepted command with who (token name), what, when and its outcome,
 * partner-isolated; filters `from`, `to` (ISO instants), `type`, `email` (needs `employees:read`);
 * pages of `limit` (≤ 1000, default 100) with an opaque `cursor` (`nextCursor`; in CSV the
 * `X-Next-Cursor` header). `Accept: text/csv` gives the same rows as CSV. Without `employees:read`,
 * entries name no employee (see {@link withoutEmployees}), in both forms.
 */
export function registerAuditRoutes(app: FastifyInstance, ctx: AppContext, registry: TokenRegistry): void {
  app.withTypeProvider<ApiTypeProvider>().get('/v1/partners/:partnerId/audit', {
    schema: {
      operationId: 'listAudit',
      tags: ['reads'],
      summary: 'The audit trail: who posted what, when, and its outcome (JSON, or CSV with Accept: text/csv)',
      security: bearer('read'),
      ...handlerChecked({ params: PartnerParams, querystring: AuditQuery }),
      response: {
        200: {
          description: 'One page of entries, newest first',
          content: { 'application/json': { schema: AuditPage }, 'text/csv': { schema: z.string().describe('The same entries as CSV; the next page\'s cursor in X-Next-Cursor') } },
        },
        ...errors(400, 401, 403, 404, 429),
      },
    },
  }, async (req, reply) => {
    const partnerId = (req.params as { partnerId: string }).partnerId;
    if (!idPattern.test(partnerId)) throw new HttpError(400, 'VALIDATION_FAILED', 'The request is not valid.', { issues: [{ path: 'partnerId', message: 'invalid' }] });
    const token = authorize(registry, req, 'read', partnerId);
    const canSeeEmployees = hasScope(token, 'employees:read');
    const q = req.query as Record<string, string | undefined>;
    // Filtering by an employee's email would tell who the employees are: that needs employees:read.
    if (q.email !== undefined && !canSeeEmployees) throw new HttpError(403, 'FORBIDDEN', 'Filtering the audit trail by email needs the "employees:read" scope.');
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
    const limit = q.limit === undefined ? DEFAULT_PAGE : Number(q.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) issues.push({ path: 'limit', message: `must be an integer from 1 to ${MAX_PAGE}` });
    const decoded = q.cursor === undefined ? null : Buffer.from(q.cursor, 'base64url').toString();
    const cursor = decoded !== null && /^[1-9]\d{0,18}$/.test(decoded) ? Number(decoded) : null;
    if (q.cursor !== undefined && cursor === null) issues.push({ path: 'cursor', message: 'invalid cursor' });
    if (q.email !== undefined && q.email.length > 254) issues.push({ path: 'email', message: 'too long' });
    if (issues.length) throw new HttpError(400, 'VALIDATION_FAILED', 'The request is not valid.', { issues });
    const rows = await listAuditRows(ctx.orm.em.fork(), partnerId, {
      ...(from ? { from } : {}),
      ...(to ? { to } : {}),
      ...(q.type !== undefined ? { type: q.type } : {}),
      ...(q.email !== undefined ? { email: q.email.toLowerCase() } : {}),
      ...(cursor !== null ? { beforeSeq: cursor } : {}),
      limit: limit + 1,
    });
    const page = rows.slice(0, limit);
    const entries = page.map((r) => {
      const shown = canSeeEmployees ? { command: r.payload, error: r.error ?? null } : withoutEmployees(r.type, r.payload, r.error ?? null);
      return {
        commandId: r.id,
        type: r.type,
        who: r.tokenName,
        at: new Date(r.createdAt).toISOString(),
        finishedAt: r.finishedAt ? new Date(r.finishedAt).toISOString() : null,
        state: r.state as CommandState,
        outcome: (r.result as { outcome?: string } | null)?.outcome ?? null,
        error: shown.error,
        command: shown.command,
      };
    });
    const nextCursor = rows.length > limit ? Buffer.from(String(page.at(-1)!.seq)).toString('base64url') : null;
    if ((req.headers.accept ?? '').includes('text/csv')) {
      const header = ['commandId', 'type', 'who', 'at', 'finishedAt', 'state', 'outcome', 'errorCode', 'command'];
      const lines = entries.map((e) => [e.commandId, e.type, e.who, e.at, e.finishedAt, e.state, e.outcome, e.error?.code ?? null, e.command].map(csvCell).join(','));
      reply.type('text/csv; charset=utf-8');
      if (nextCursor) reply.header('x-next-cursor', nextCursor);
      return [header.join(','), ...lines].join('\r\n') + '\r\n';
    }
    return { entries, nextCursor };
  });
}
