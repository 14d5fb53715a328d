import { z } from 'zod';
import type { AppContext } from '../context.js';
import type { OutboxRow } from '../db/outbox-store.js';
import { LIFECYCLE_OUTBOX_KINDS, type LifecycleOutboxKind } from '../db/lifecycle-store.js';
import { grantLinkUrl } from '../lib/grant-link.js';
import { employeeLabel, renderPartnerNotice, renderReminder, type PartnerNoticeKind } from '../mail/lifecycle-templates.js';
import type { RenderedMail } from '../mail/templates.js';
import { PermanentError } from './failures.js';

/**
 * Renders the outbox rows of a request's life (reminders to the client, notices to the partner)
 * when the mail worker sends them: recipient, locale and names as they are now (the outbox store
 * loads them with the row); the reminder's link derived from the pair and its request sequence.
 */

export const isLifecycleKind = (kind: string): kind is LifecycleOutboxKind => (LIFECYCLE_OUTBOX_KINDS as readonly string[]).includes(kind);

const email = z.string().min(3).max(254);
const hubId = z.string().min(1).max(128);
const reminderPayload = z.object({ hubId, email, seq: z.number().int().min(0), day: z.number().positive(), expiresAt: z.string().min(1).max(64) });
const noticePayload = z.object({ hubId, email, seq: z.number().int().min(0), accessUntil: z.string().min(1).max(64).nullable().optional() });

const noticeKinds: Record<Exclude<LifecycleOutboxKind, 'access.reminder'>, PartnerNoticeKind> = {
  'partner.granted': 'granted',
  'partner.declined': 'declined',
  'partner.expired': 'expired',
  'partner.access-ended': 'ended',
  'partner.access-ending': 'ending',
};

function parse<T>(schema: z.ZodType<T>, row: OutboxRow): T {
  const r = schema.safeParse(row.payload);
  if (!r.success) throw new PermanentError('VALIDATION_FAILED', `outbox row ${row.id} (${row.kind}) has an invalid payload`);
  return r.data;
}

/** One lifecycle outbox row as an email: recipient, Reply-To and content. Throws PermanentError when it cannot be sent. */
export function renderLifecycleRow(ctx: Pick<AppContext, 'config'>, row: OutboxRow & { partner_name: string; kind: LifecycleOutboxKind }): { to: string; replyTo: string | null; mail: RenderedMail } {
  const label = (e: string) => employeeLabel(e, row.employee_names?.[e]);
  if (row.kind === 'access.reminder') {
    const p = parse(reminderPayload, row);
    if (row.contact_email === null) throw new PermanentError('NO_CLIENT_CONTACT', 'the platform knows no contact of the client of the reminder');
    const link = grantLinkUrl(ctx.config.publicUrl, ctx.config.grantLinkSecret, { partnerId: row.partner_id, hubId: p.hubId, email: p.email, seq: p.seq });
    return {
      to: row.contact_email,
      replyTo: row.notify_email,
      mail: renderReminder({ locale: row.locale ?? 'en', clientName: row.client_name ?? p.hubId, partnerName: row.partner_name, employee: label(p.email), link, expiresAt: new Date(p.expiresAt), now: new Date() }),
    };
  }
  const p = parse(noticePayload, row);
  if (row.notify_email === null) throw new PermanentError('NOT_FOUND', 'the partner has no notifyEmail any more');
  return {
    to: row.notify_email,
    replyTo: null,
    mail: renderPartnerNotice({
      locale: row.partner_locale ?? 'en', kind: noticeKinds[row.kind], partnerName: row.partner_name, clientName: row.client_name ?? p.hubId,
      employee: label(p.email), accessUntil: p.accessUntil ? new Date(p.accessUntil) : null,
    }),
  };
}
