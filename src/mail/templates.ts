import { formatIn, localeOf, messages, type Locale, type Messages } from '../i18n/messages.js';

/**
 * Client email templates (contract §4 `locale`: en, sv, de, it, pt), plain text and HTML, worded
 * from the one locale table that the grant pages and the lifecycle emails use too
 * (src/i18n/messages.ts).
 */
export type { Locale } from '../i18n/messages.js';

const esc = (s: string) => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

/** The request email's words in one locale and lifetime, with the parts every email repeats (the expiry, the HTML footer) made once. */
interface Words {
  lang: Locale;
  s: Messages['request'];
  /** "in 14 days", in that locale. */
  expiry: string;
  /** The action's label, escaped for HTML. */
  actionHtml: string;
  /** The grey footer paragraph (choice, expiry, ignore), escaped. */
  footerHtml: string;
}

/**
 * The words per stored locale (English when unknown) and TTL, remembered: every request email of a
 * locale shares them, and formatting the expiry and escaping the footer cost more than the rest of
 * the template (0.9 % of the end-to-end worker's profile went to formatIn alone).
 */
const wordsCache = new Map<string, Words>();
function wordsOf(locale: string, ttlDays: number): Words {
  const key = `${locale}\n${ttlDays}`;
  let w = wordsCache.get(key);
  if (!w) {
    const lang = localeOf(locale);
    const s = messages[lang].request;
    const expiry = s.expiry(formatIn(lang, ttlDays));
    w = { lang, s, expiry, actionHtml: esc(s.action), footerHtml: `<p style="color:#666">${esc(s.choice)}<br>${esc(expiry)}<br>${esc(s.ignore)}</p>` };
    // Locales and TTLs are few (config and a short list); a bound keeps stray values from piling up.
    if (wordsCache.size < 256) wordsCache.set(key, w);
  }
  return w;
}

export interface RenderedMail { subject: string; text: string; html: string }

/** The email asking a client to grant a partner employee access (names the partner and the employee, carries the link). */
export function renderAccessRequest(v: { locale: string; clientName: string; partnerName: string; employee: string; link: string; ttlDays: number }): RenderedMail {
  const { lang, s, expiry, actionHtml, footerHtml } = wordsOf(v.locale, v.ttlDays);
  const subject = s.subject(v.partnerName, v.employee);
  const text = [s.greeting(v.clientName), '', s.body(v.partnerName, v.employee), '', `${s.action}: ${v.link}`, s.choice, '', expiry, s.ignore, ''].join('\n');
  const html = `<!doctype html><html lang="${lang}"><body style="font-family:sans-serif">
<p>${esc(s.greeting(v.clientName))}</p>
<p>${esc(s.body(v.partnerName, v.employee))}</p>
<p><a href="${esc(v.link)}" style="display:inline-block;padding:10px 16px;background:#ff7a59;color:#fff;text-decoration:none;border-radius:4px">${actionHtml}</a></p>
${footerHtml}
</body></html>`;
  return { subject, text, html };
}

/**
 * The email of one request command to one client: every employee it newly asks access for, each
 * with its own link (one employee: the single-request email above). `allLink`, when given, is one
 * more link that grants them all.
 */
export function renderAccessRequests(v: { locale: string; clientName: string; partnerName: string; pairs: { employee: string; link: string }[]; ttlDays: number; allLink?: string }): RenderedMail {
  const [only, ...more] = v.pairs;
  if (only && !more.length) return renderAccessRequest({ locale: v.locale, clientName: v.clientName, partnerName: v.partnerName, employee: only.employee, link: only.link, ttlDays: v.ttlDays });
  const { lang, s, expiry, actionHtml, footerHtml } = wordsOf(v.locale, v.ttlDays);
  const subject = s.subjectMany(v.partnerName, v.pairs.length);
  const all = v.allLink ? [`${s.actionAll}: ${v.allLink}`, ''] : [];
  const text = [s.greeting(v.clientName), '', s.bodyMany(v.partnerName), '', ...v.pairs.map((x) => `- ${x.employee}: ${x.link}`), s.choice, '', ...all, expiry, s.ignore, ''].join('\n');
  const html = `<!doctype html><html lang="${lang}"><body style="font-family:sans-serif">
<p>${esc(s.greeting(v.clientName))}</p>
<p>${esc(s.bodyMany(v.partnerName))}</p>
<ul>${v.pairs.map((x) => `<li>${esc(x.employee)}: <a href="${esc(x.link)}">${actionHtml}</a></li>`).join('')}</ul>
${v.allLink ? `<p><a href="${esc(v.allLink)}" style="display:inline-block;padding:10px 16px;background:#ff7a59;color:#fff;text-decoration:none;border-radius:4px">${esc(s.actionAll)}</a></p>` : ''}
${footerHtml}
</body></html>`;
  return { subject, text, html };
}

/** A message to the partner's channel account manager or channel consultant. */
export function renderTeamEmail(v: { partnerName: string; subject: string; body: string }): RenderedMail {
  return {
    subject: v.subject,
    text: `${v.body}\n\n— ${v.partnerName}\n`,
    html: `<!doctype html><html><body style="font-family:sans-serif"><p>${esc(v.body).replaceAll('\n', '<br>')}</p><p>— ${esc(v.partnerName)}</p></body></html>`,
  };
}
