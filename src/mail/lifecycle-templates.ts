import { formatIn, formatInstant, localeOf, messages, type Messages } from '../i18n/messages.js';
import type { RenderedMail } from './templates.js';

/**
 * The emails of an access request's life after its first email (contract §6): the reminder to the
 * client, and what the partner is told (granted, declined, expired, access ended, access ending).
 * Worded from the one locale table (src/i18n/messages.ts) that the grant pages use too, in the
 * recipient's locale; plain text and HTML in the request email's look.
 */

/** The look shared by the emails and the client's grant pages. */
export const LOOK = {
  font: 'system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif',
  text: '#33475b',
  muted: '#666666',
  accent: '#ff7a59',
  accentText: '#ffffff',
  border: '#cbd6e2',
  page: '#f5f8fa',
} as const;

export const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

const button = (href: string, label: string) =>
  `<p><a href="${escapeHtml(href)}" style="display:inline-block;padding:10px 16px;background:${LOOK.accent};color:${LOOK.accentText};text-decoration:none;border-radius:4px">${escapeHtml(label)}</a></p>`;

/** One email in the shared look: paragraphs, an optional button, muted footer lines. */
function layout(lang: string, parts: { paragraphs: string[]; action?: { href: string; label: string }; footer?: string[] }): string {
  return `<!doctype html><html lang="${lang}"><body style="font-family:${LOOK.font};color:${LOOK.text}">
${parts.paragraphs.map((p) => `<p>${escapeHtml(p)}</p>`).join('\n')}
${parts.action ? button(parts.action.href, parts.action.label) : ''}
${parts.footer?.length ? `<p style="color:${LOOK.muted}">${parts.footer.map(escapeHtml).join('<br>')}</p>` : ''}
</body></html>`;
}

const text = (lines: (string | null)[]) => `${lines.filter((l): l is string => l !== null).join('\n')}\n`;

/** An employee as the emails name them: "Name (email)", or the email. */
export const employeeLabel = (email: string, name: string | null | undefined) => (name ? `${name} (${email})` : email);

/**
 * The reminder to a client that a request still waits for an answer (one per pair and reminder
 * day), with the same link as the request email.
 */
export function renderReminder(v: { locale: string; clientName: string; partnerName: string; employee: string; link: string; expiresAt: Date; now: Date }): RenderedMail {
  const lang = localeOf(v.locale);
  const m = messages[lang];
  const left = formatIn(lang, Math.max(0, v.expiresAt.getTime() - v.now.getTime()) / 86_400_000);
  const subject = m.reminder.subject(v.partnerName, v.employee);
  return {
    subject,
    text: text([m.request.greeting(v.clientName), '', m.reminder.body(v.partnerName, v.employee), '', `${m.request.action}: ${v.link}`, m.request.choice, '', m.reminder.expiresIn(left), m.request.ignore]),
    html: layout(lang, {
      paragraphs: [m.request.greeting(v.clientName), m.reminder.body(v.partnerName, v.employee)],
      action: { href: v.link, label: m.request.action },
      footer: [m.request.choice, m.reminder.expiresIn(left), m.request.ignore],
    }),
  };
}

/** What the partner is told about one pair. */
export type PartnerNoticeKind = 'granted' | 'declined' | 'expired' | 'ended' | 'ending';

/** The email telling a partner what became of a request or a time-bound access (in the partner's locale). */
export function renderPartnerNotice(v: { locale: string; kind: PartnerNoticeKind; partnerName: string; clientName: string; employee: string; accessUntil?: Date | null }): RenderedMail {
  const lang = localeOf(v.locale);
  const m = messages[lang];
  const at = v.accessUntil ? formatInstant(lang, v.accessUntil) : '';
  const { subject, body, hint } = noticeWords(m.partner, v.kind, v.clientName, v.employee, at);
  return {
    subject,
    text: text([m.partner.greeting(v.partnerName), '', body, hint ? '' : null, hint]),
    html: layout(lang, { paragraphs: [m.partner.greeting(v.partnerName), body], ...(hint ? { footer: [hint] } : {}) }),
  };
}

function noticeWords(p: Messages['partner'], kind: PartnerNoticeKind, client: string, employee: string, at: string): { subject: string; body: string; hint: string | null } {
  switch (kind) {
    case 'granted': return { subject: p.grantedSubject(client, employee), body: p.grantedBody(client, employee), hint: null };
    case 'declined': return { subject: p.declinedSubject(client, employee), body: p.declinedBody(client, employee), hint: p.askAgain };
    case 'expired': return { subject: p.expiredSubject(client, employee), body: p.expiredBody(client, employee), hint: p.askAgain };
    case 'ended': return { subject: p.endedSubject(client, employee), body: p.endedBody(client, employee, at), hint: null };
    case 'ending': return { subject: p.endingSubject(client, employee, at), body: p.endingBody(client, employee, at), hint: p.extendHint };
  }
}
