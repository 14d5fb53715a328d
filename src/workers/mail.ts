import { createHash } from 'node:crypto';
import type { Transporter } from 'nodemailer';
import type { AppContext } from '../context.js';
import { composeMime, mailbox } from '../mail/mime.js';
import { sendRaw } from '../mail/transport.js';
import { renderAccessRequest, renderAccessRequests, renderTeamEmail, type RenderedMail } from '../mail/templates.js';
import { failPending, loadOutbox, markSent, recordSendFailure, REQUEST_EMAIL_KIND, type OutboxRow } from '../db/outbox-store.js';
import { grantAllLinkUrl, grantLinkUrl } from '../lib/grant-link.js';
import { classify, payloadOf, PermanentError, toUnrecoverable } from './failures.js';
import { Batcher } from '../lib/batcher.js';
import { isLifecycleKind, renderLifecycleRow } from './lifecycle-mail.js';

/** SHA-256 of a notification key, hex: the Message-ID and the X-Notification-Key header are both cut from it. */
const keyDigest = (key: string) => createHash('sha256').update(key).digest('hex');

/** The domain of the Message-IDs: the sender's (one sender per process, so it is remembered). */
const domains = new Map<string, string>();
function domainOf(from: string): string {
  let d = domains.get(from);
  if (d === undefined) {
    d = /@([^>\s]+)/.exec(from)?.[1] ?? 'partner-access.local';
    if (domains.size < 16) domains.set(from, d);
  }
  return d;
}

const messageIdOf = (digest: string, from: string) => `<${digest.slice(0, 32)}@${domainOf(from)}>`;

/** A deterministic Message-ID per notification key: a resend after a crash is recognisably the same message. */
export function messageIdFor(key: string, from: string): string {
  return messageIdOf(keyDigest(key), from);
}

/** Marks sent rows, many in one commit; a job completes only once its row is marked. */
export const sentMarker = (ctx: Pick<AppContext, 'orm'>, max: number) => new Batcher<{ id: string; messageId: string }, void>(async (rows) => {
  await markSent(ctx.orm.em.fork(), rows);
  return rows.map(() => undefined);
}, max, 1);

/** Loads outbox rows for many jobs in one query (jobs arriving together share it). */
export const outboxLoader = (ctx: Pick<AppContext, 'orm'>, max: number) => new Batcher<string, OutboxRow | undefined>(async (ids) => {
  const rows = await loadOutbox(ctx.orm.em.fork(), ids);
  const byId = new Map(rows.map((r) => [String(r.id), r]));
  return ids.map((id) => byId.get(id));
}, max);

/** An email ready to compose: its recipient, its Reply-To (if any) and its content. */
interface Addressed { to: string; replyTo?: string | null; mail: RenderedMail }

/** `Name (email)` when the employee has a name, else the email. */
const employeeLabel = (row: OutboxRow, email: string) => {
  const name = row.employee_names?.[email];
  return name ? `${name} (${email})` : email;
};

/**
 * An access request goes only to the client's contact as the platform knows it, in the client's
 * locale, with Reply-To the asking partner's notifyEmail. Each pair's link is derived here from the
 * pair and its request sequence (the token is stored nowhere: not in the outbox, not in a job).
 */
function renderRequest(ctx: Pick<AppContext, 'config'>, row: OutboxRow & { partner_name: string }): Addressed {
  const p = row.payload as { hubId: string; commandId?: string; pairs: { email: string; seq: number }[] };
  if (row.contact_email === null) throw new PermanentError('NO_CLIENT_CONTACT', 'the platform knows no contact of the client of the outbox row');
  const pairs = p.pairs.map((x) => ({
    employee: employeeLabel(row, x.email),
    link: grantLinkUrl(ctx.config.publicUrl, ctx.config.grantLinkSecret, { partnerId: row.partner_id, hubId: p.hubId, email: x.email, seq: x.seq }),
  }));
  return {
    to: row.contact_email,
    replyTo: row.notify_email,
    mail: renderAccessRequests({
      locale: row.locale ?? 'en', clientName: row.client_name ?? p.hubId, partnerName: row.partner_name, pairs, ttlDays: ctx.config.grantTtlDays,
      // A digest of several people: one more link that opens every pair's request of this command and client.
      ...(pairs.length > 1 && p.commandId ? { allLink: grantAllLinkUrl(ctx.config.publicUrl, ctx.config.grantLinkSecret, { partnerId: row.partner_id, hubId: p.hubId, commandId: p.commandId }) } : {}),
    }),
  };
}

function render(ctx: Pick<AppContext, 'config'>, row: OutboxRow): Addressed {
  if (row.partner_name === null) throw new PermanentError('UNKNOWN_PARTNER', 'partner of the outbox row no longer exists');
  if (row.kind === REQUEST_EMAIL_KIND) return renderRequest(ctx, { ...row, partner_name: row.partner_name });
  if (isLifecycleKind(row.kind)) return renderLifecycleRow(ctx, { ...row, partner_name: row.partner_name, kind: row.kind });
  if (row.kind === 'access.pending') {
    // Written before tokens were derived at render: the row holds its link's token (erased once sent).
    const p = row.payload as { hubId: string; email: string; token: string };
    if (row.contact_email === null) throw new PermanentError('NO_CLIENT_CONTACT', 'the platform knows no contact of the client of the outbox row');
    return {
      to: row.contact_email,
      replyTo: row.notify_email,
      mail: renderAccessRequest({ locale: row.locale ?? 'en', clientName: row.client_name ?? p.hubId, partnerName: row.partner_name, employee: employeeLabel(row, p.email), link: `${ctx.config.publicUrl}/v1/grants/${p.token}`, ttlDays: ctx.config.grantTtlDays }),
    };
  }
  if (row.kind === 'team.email') {
    const p = row.payload as { to: string; subject: string; body: string; replyTo?: string };
    const person = row.team?.[p.to];
    if (!person) throw new PermanentError('NOT_FOUND', `the partner has no ${p.to}`);
    return { to: person.email, replyTo: p.replyTo ?? row.notify_email, mail: renderTeamEmail({ partnerName: row.partner_name, subject: p.subject, body: p.body }) };
  }
  throw new PermanentError('VALIDATION_FAILED', `unknown outbox kind ${row.kind}`);
}

/** A mail job that used up its attempts on transient errors: the outbox row is marked failed. */
export async function failMailFinally(ctx: Pick<AppContext, 'orm'>, data: unknown, message: string): Promise<void> {
  const outboxId = (data as { outboxId?: unknown } | null)?.outboxId;
  if (typeof outboxId !== 'string') return;
  await failPending(ctx.orm.em.fork(), outboxId, { code: 'SMTP_UNAVAILABLE', message });
}

/** Renders and sends one outbox row; returns its Message-ID. Throws what rendering or SMTP throws (see classify). */
export async function sendRow(ctx: Pick<AppContext, 'config'>, transport: Transporter, row: OutboxRow): Promise<string> {
  const digest = keyDigest(row.notification_key);
  const messageId = messageIdOf(digest, ctx.config.mailFrom);
  const { to, replyTo, mail } = render(ctx, row);
  const raw = composeMime({
    from: ctx.config.mailFrom, to, subject: mail.subject, text: mail.text, html: mail.html, messageId, date: new Date(),
    headers: {
      ...(replyTo ? { 'Reply-To': replyTo } : {}),
      'X-Notification-Key': digest.slice(0, 16),
    },
  });
  await sendRaw(transport, { from: mailbox(ctx.config.mailFrom).address, to: [mailbox(to).address] }, raw, messageId);
  return messageId;
}

/**
 * The `mail` job: `{outboxId}`. Idempotency key: the outbox row (a sent row is never sent again).
 * SMTP 4xx and connection errors retry with backoff; 5xx fails at once and is stored on the row.
 * A row that already failed (a 5xx when it was sent right after its commit) fails the job's first
 * run at once with the stored error, so the failure shows on the dashboard; an operator's retry
 * (attemptsMade > 0) sends it again.
 */
export async function processMailJob(ctx: AppContext, transport: Transporter, data: unknown, loader = outboxLoader(ctx, 1), marker?: Batcher<{ id: string; messageId: string }, void>, attemptsMade = 0): Promise<unknown> {
  const { outboxId } = payloadOf('mail', data);
  const em = ctx.orm.em.fork();
  const row = await loader.submit(outboxId);
  if (!row) throw toUnrecoverable({ code: 'NOT_FOUND', message: `outbox row ${outboxId}` });
  if (row.state === 'sent') return { state: 'sent', replayed: true };
  if (row.state === 'failed' && attemptsMade === 0 && row.error) throw toUnrecoverable(row.error);
  try {
    const messageId = await sendRow(ctx, transport, row);
    await (marker ?? sentMarker(ctx, 1)).submit({ id: outboxId, messageId });
    ctx.logger.debug({ outboxId, kind: row.kind }, 'email sent');
    return { state: 'sent', messageId };
  } catch (err) {
    const f = classify(err);
    if (f.kind === 'transient') {
      await recordSendFailure(em, outboxId, { code: 'SMTP_TRANSIENT', message: (err as Error).message }, false);
      throw err;
    }
    await recordSendFailure(em, outboxId, { code: f.code, message: f.message }, true);
    throw toUnrecoverable(f);
  }
}
