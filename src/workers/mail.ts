import { createHash } from 'node:crypto';
import { UnrecoverableError } from 'bullmq';
import type { Transporter } from 'nodemailer';
import type { AppContext } from '../context.js';
import { renderAccessRequest, renderTeamEmail, type RenderedMail } from '../mail/templates.js';
import { classify, PermanentError, toUnrecoverable } from './failures.js';
import { Batcher } from './batcher.js';

/** A deterministic Message-ID per notification key: a resend after a crash is recognisably the same message. */
export function messageIdFor(key: string, from: string): string {
  const domain = /@([^>\s]+)/.exec(from)?.[1] ?? 'partner-access.local';
  return `<${createHash('sha256').update(key).digest('hex').slice(0, 32)}@${domain}>`;
}

interface OutboxRow {
  id: string; notification_key: string; kind: string; partner_id: string; payload: Record<string, string>; state: string;
  partner_name: string | null; team: Record<string, { name: string; email: string }> | null;
  client_name: string | null; contact_email: string | null; locale: string | null; employee_name: string | null;
}

/** The outbox row with everything its email names, in one query. */
const selectRow = `
  select o.id, o.notification_key, o.kind, o.partner_id, o.payload, o.state,
         p.name as partner_name, p.team, c.name as client_name, c.contact_email, c.locale, e.name as employee_name
    from outbox o
    left join partner p on p.id = o.partner_id
    left join client c on o.kind = 'access.pending' and c.partner_id = o.partner_id and c.hub_id = o.payload->>'hubId'
    left join employee e on o.kind = 'access.pending' and e.partner_id = o.partner_id and e.email = o.payload->>'email'
   where o.id in (select jsonb_array_elements_text(?::jsonb)::bigint)`;

/** Marks sent rows, many in one commit; a job completes only once its row is marked. */
export const sentMarker = (ctx: AppContext, max: number) => new Batcher<{ id: string; messageId: string }, void>(async (rows) => {
  await ctx.orm.em.fork().execute(
    `update outbox o set state = 'sent', sent_at = now(), message_id = t.message_id, error = null, attempts = o.attempts + 1
       from jsonb_to_recordset(?::jsonb) as t(id bigint, message_id text) where o.id = t.id`,
    [JSON.stringify(rows.map((r) => ({ id: r.id, message_id: r.messageId })))],
  );
  return rows.map(() => undefined);
}, max, 1);

/** Loads outbox rows for many jobs in one query (jobs arriving together share it). */
export const outboxLoader = (ctx: AppContext, max: number) => new Batcher<string, OutboxRow | undefined>(async (ids) => {
  const rows = await ctx.orm.em.fork().execute<OutboxRow[]>(selectRow, [JSON.stringify(ids)]);
  const byId = new Map(rows.map((r) => [String(r.id), r]));
  return ids.map((id) => byId.get(id));
}, max);

function render(ctx: AppContext, row: OutboxRow): { to: string; mail: RenderedMail } {
  if (row.partner_name === null) throw new PermanentError('UNKNOWN_PARTNER', 'partner of the outbox row no longer exists');
  if (row.kind === 'access.pending') {
    const p = row.payload as { hubId: string; email: string; token: string };
    if (row.client_name === null || row.contact_email === null) throw new PermanentError('UNKNOWN_CLIENT', 'client of the outbox row no longer exists');
    const employeeLabel = row.employee_name ? `${row.employee_name} (${p.email})` : p.email;
    return {
      to: row.contact_email,
      mail: renderAccessRequest({ locale: row.locale ?? 'en', clientName: row.client_name, partnerName: row.partner_name, employee: employeeLabel, link: `${ctx.config.publicUrl}/v1/grants/${p.token}`, ttlDays: ctx.config.grantTtlDays }),
    };
  }
  if (row.kind === 'team.email') {
    const p = row.payload as { to: string; subject: string; body: string };
    const person = row.team?.[p.to];
    if (!person) throw new PermanentError('NOT_FOUND', `the partner has no ${p.to}`);
    return { to: person.email, mail: renderTeamEmail({ partnerName: row.partner_name, subject: p.subject, body: p.body }) };
  }
  throw new PermanentError('VALIDATION_FAILED', `unknown outbox kind ${row.kind}`);
}

/** A mail job that used up its attempts on transient errors: the outbox row is marked failed. */
export async function failMailFinally(ctx: AppContext, data: unknown, message: string): Promise<void> {
  const outboxId = (data as { outboxId?: unknown } | null)?.outboxId;
  if (typeof outboxId !== 'string') return;
  await ctx.orm.em.fork().execute(`update outbox set state = 'failed', error = ?::jsonb where id = ? and state = 'pending'`, [JSON.stringify({ code: 'SMTP_UNAVAILABLE', message }), outboxId]);
}

/**
 * The `mail` job: `{outboxId}`. Idempotency key: the outbox row (a sent row is never sent again).
 * SMTP 4xx and connection errors retry with backoff; 5xx fails at once and is stored on the row.
 */
export async function processMailJob(ctx: AppContext, transport: Transporter, data: unknown, loader = outboxLoader(ctx, 1), marker?: Batcher<{ id: string; messageId: string }, void>): Promise<unknown> {
  const outboxId = (data as { outboxId?: unknown } | null)?.outboxId;
  if (typeof outboxId !== 'string' || !/^\d+$/.test(outboxId)) throw new UnrecoverableError('VALIDATION_FAILED: job data has no outboxId');
  const em = ctx.orm.em.fork();
  const row = await loader.submit(outboxId);
  if (!row) throw new UnrecoverableError(`NOT_FOUND: outbox row ${outboxId}`);
  if (row.state === 'sent') return { state: 'sent', replayed: true };
  const messageId = messageIdFor(row.notification_key, ctx.config.mailFrom);
  try {
    const { to, mail } = render(ctx, row);
    await transport.sendMail({ from: ctx.config.mailFrom, to, subject: mail.subject, text: mail.text, html: mail.html, messageId, headers: { 'X-Notification-Key': createHash('sha256').update(row.notification_key).digest('hex').slice(0, 16) } });
    await (marker ?? sentMarker(ctx, 1)).submit({ id: outboxId, messageId });
    ctx.logger.debug({ outboxId, kind: row.kind }, 'email sent');
    return { state: 'sent', messageId };
  } catch (err) {
    const f = classify(err);
    if (f.kind === 'transient') {
      await em.execute('update outbox set error = ?::jsonb, attempts = attempts + 1 where id = ?', [JSON.stringify({ code: 'SMTP_TRANSIENT', message: (err as Error).message }), outboxId]);
      throw err;
    }
    await em.execute(`update outbox set state = 'failed', error = ?::jsonb, attempts = attempts + 1 where id = ?`, [JSON.stringify({ code: f.code, message: f.message }), outboxId]);
    throw toUnrecoverable(f);
  }
}
