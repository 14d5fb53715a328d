/** Client email templates, one per supported locale (contract §4 `locale`). Plain text and HTML. */
export type Locale = 'en' | 'sv' | 'de' | 'it' | 'pt';

interface Strings {
  subject: (partner: string, employee: string) => string;
  greeting: (client: string) => string;
  body: (partner: string, employee: string) => string;
  action: string;
  expiry: (days: number) => string;
  ignore: string;
  /** A request naming several employees. */
  subjectMany: (partner: string, n: number) => string;
  bodyMany: (partner: string) => string;
}

const strings: Record<Locale, Strings> = {
  en: {
    subject: (p, e) => `${p} asks for access for ${e}`,
    greeting: (c) => `Hello ${c},`,
    body: (p, e) => `Your partner ${p} would like ${e} to get access to your account.`,
    action: 'Grant access',
    expiry: (d) => `This link works once and expires in ${d} days.`,
    ignore: 'If you did not expect this request, you can ignore this email.',
    subjectMany: (p, n) => `${p} asks for access for ${n} people`,
    bodyMany: (p) => `Your partner ${p} would like these people to get access to your account. Each link works for one person:`,
  },
  sv: {
    subject: (p, e) => `${p} ber om åtkomst för ${e}`,
    greeting: (c) => `Hej ${c},`,
    body: (p, e) => `Din partner ${p} vill att ${e} får åtkomst till ert konto.`,
    action: 'Ge åtkomst',
    expiry: (d) => `Länken fungerar en gång och upphör om ${d} dagar.`,
    ignore: 'Om du inte väntade dig denna begäran kan du ignorera detta mejl.',
    subjectMany: (p, n) => `${p} ber om åtkomst för ${n} personer`,
    bodyMany: (p) => `Din partner ${p} vill att dessa personer får åtkomst till ert konto. Varje länk gäller en person:`,
  },
  de: {
    subject: (p, e) => `${p} bittet um Zugriff für ${e}`,
    greeting: (c) => `Hallo ${c},`,
    body: (p, e) => `Ihr Partner ${p} möchte, dass ${e} Zugriff auf Ihr Konto erhält.`,
    action: 'Zugriff gewähren',
    expiry: (d) => `Dieser Link funktioniert einmal und läuft in ${d} Tagen ab.`,
    ignore: 'Wenn Sie diese Anfrage nicht erwartet haben, können Sie diese E-Mail ignorieren.',
    subjectMany: (p, n) => `${p} bittet um Zugriff für ${n} Personen`,
    bodyMany: (p) => `Ihr Partner ${p} möchte, dass diese Personen Zugriff auf Ihr Konto erhalten. Jeder Link gilt für eine Person:`,
  },
  it: {
    subject: (p, e) => `${p} chiede l'accesso per ${e}`,
    greeting: (c) => `Ciao ${c},`,
    body: (p, e) => `Il tuo partner ${p} vorrebbe che ${e} avesse accesso al tuo account.`,
    action: "Concedi l'accesso",
    expiry: (d) => `Questo link funziona una sola volta e scade tra ${d} giorni.`,
    ignore: 'Se non ti aspettavi questa richiesta, puoi ignorare questa email.',
    subjectMany: (p, n) => `${p} chiede l'accesso per ${n} persone`,
    bodyMany: (p) => `Il tuo partner ${p} vorrebbe che queste persone avessero accesso al tuo account. Ogni link vale per una persona:`,
  },
  pt: {
    subject: (p, e) => `${p} pede acesso para ${e}`,
    greeting: (c) => `Olá ${c},`,
    body: (p, e) => `O seu parceiro ${p} gostaria que ${e} tivesse acesso à sua conta.`,
    action: 'Conceder acesso',
    expiry: (d) => `Este link funciona uma vez e expira em ${d} dias.`,
    ignore: 'Se não esperava este pedido, pode ignorar este email.',
    subjectMany: (p, n) => `${p} pede acesso para ${n} pessoas`,
    bodyMany: (p) => `O seu parceiro ${p} gostaria que estas pessoas tivessem acesso à sua conta. Cada link vale para uma pessoa:`,
  },
};

const esc = (s: string) => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

export interface RenderedMail { subject: string; text: string; html: string }

/** The email asking a client to grant a partner employee access (names the partner and the employee, carries the link). */
export function renderAccessRequest(v: { locale: string; clientName: string; partnerName: string; employee: string; link: string; ttlDays: number }): RenderedMail {
  const s = strings[(v.locale in strings ? v.locale : 'en') as Locale];
  const subject = s.subject(v.partnerName, v.employee);
  const text = [s.greeting(v.clientName), '', s.body(v.partnerName, v.employee), '', `${s.action}: ${v.link}`, '', s.expiry(v.ttlDays), s.ignore, ''].join('\n');
  const html = `<!doctype html><html><body style="font-family:sans-serif">
<p>${esc(s.greeting(v.clientName))}</p>
<p>${esc(s.body(v.partnerName, v.employee))}</p>
<p><a href="${esc(v.link)}" style="display:inline-block;padding:10px 16px;background:#ff7a59;color:#fff;text-decoration:none;border-radius:4px">${esc(s.action)}</a></p>
<p style="color:#666">${esc(s.expiry(v.ttlDays))}<br>${esc(s.ignore)}</p>
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
  const s = strings[(v.locale in strings ? v.locale : 'en') as Locale];
  const subject = s.subjectMany(v.partnerName, v.pairs.length);
  const all = v.allLink ? [`${s.action}: ${v.allLink}`, ''] : [];
  const text = [s.greeting(v.clientName), '', s.bodyMany(v.partnerName), '', ...v.pairs.map((x) => `- ${x.employee}: ${x.link}`), '', ...all, s.expiry(v.ttlDays), s.ignore, ''].join('\n');
  const html = `<!doctype html><html><body style="font-family:sans-serif">
<p>${esc(s.greeting(v.clientName))}</p>
<p>${esc(s.bodyMany(v.partnerName))}</p>
<ul>${v.pairs.map((x) => `<li>${esc(x.employee)}: <a href="${esc(x.link)}">${esc(s.action)}</a></li>`).join('')}</ul>
${v.allLink ? `<p><a href="${esc(v.allLink)}" style="display:inline-block;padding:10px 16px;background:#ff7a59;color:#fff;text-decoration:none;border-radius:4px">${esc(s.action)}</a></p>` : ''}
<p style="color:#666">${esc(s.expiry(v.ttlDays))}<br>${esc(s.ignore)}</p>
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
