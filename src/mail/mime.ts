import { createHash } from 'node:crypto';

/**
 * Composes one RFC 5322 / MIME message (multipart/alternative: text and HTML, UTF-8, base64) as a
 * string, handed to nodemailer as `raw`. Our emails have one fixed shape, so composing them is a
 * few string operations, where nodemailer's general MIME tree (header normalisation, random
 * boundaries, encoder streams) was the largest cost of a worker sending thousands of them.
 * nodemailer still does all of SMTP (pool, timeouts, envelope, dot-stuffing).
 */
export interface MimeMessage {
  /** `Name <address>` or a bare address. */
  from: string;
  to: string;
  subject: string;
  text: string;
  html: string;
  /** `<…@…>` */
  messageId: string;
  date: Date;
  headers?: Record<string, string>;
}

const CRLF = '\r\n';
const isPlainAscii = (s: string) => /^[\x20-\x7e]*$/.test(s);

/** RFC 2047 encoded words (UTF-8, base64), each at most 64 characters (a header line stays within 78), never splitting a character. */
export function encodeWords(value: string): string {
  const words: string[] = [];
  let chunk = '';
  // The chunk's UTF-8 length, kept as it grows (measuring chunk + ch each time was quadratic: 10 µs for a long subject, now 3).
  let bytes = 0;
  for (const ch of value) {
    const c = ch.codePointAt(0)!;
    const n = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    if (bytes + n > 39) {
      words.push(chunk);
      chunk = '';
      bytes = 0;
    }
    chunk += ch;
    bytes += n;
  }
  if (chunk || !words.length) words.push(chunk);
  return words.map((w) => `=?UTF-8?B?${Buffer.from(w).toString('base64')}?=`).join(`${CRLF} `);
}

/** A header line: the value as is when it is printable ASCII and the line fits in 78 characters, else encoded words. */
function header(name: string, value: string): string {
  const plain = isPlainAscii(value) && name.length + 2 + value.length <= 78 && !value.includes('=?');
  return `${name}: ${plain ? value : encodeWords(value)}`;
}

/** `Name <address>`: the display name quoted or encoded as needed; a bare address stays bare. */
export function mailbox(value: string): { header: string; address: string } {
  const m = /^\s*(.*?)\s*<([^<>\s]+)>\s*$/.exec(value);
  if (!m) return { header: value.trim(), address: value.trim() };
  const [, name = '', address = ''] = m;
  const display = /^".*"$/.test(name) ? name.slice(1, -1).replace(/\\(.)/g, '$1') : name;
  if (!display) return { header: `<${address}>`, address };
  const quoted = isPlainAscii(display) ? (/^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+$/.test(display) ? display : `"${display.replace(/(["\\])/g, '\\$1')}"`) : encodeWords(display);
  return { header: `${quoted} <${address}>`, address };
}

/** Base64 in lines of 76 characters. */
function base64Lines(s: string): string {
  const b64 = Buffer.from(s).toString('base64');
  let out = '';
  for (let i = 0; i < b64.length; i += 76) out += (i ? CRLF : '') + b64.slice(i, i + 76);
  return out;
}

/** RFC 5322 date in UTC: `Sun, 22 Nov 2026 22:40:31 +0000`. */
const rfcDate = (d: Date) => d.toUTCString().replace(/GMT$/, '+0000');

export function composeMime(m: MimeMessage): string {
  // A boundary that cannot occur in base64 bodies ("=_" is outside base64), fixed per message.
  const boundary = `=_pap_${createHash('sha256').update(m.messageId).digest('hex').slice(0, 24)}`;
  const extra = Object.entries(m.headers ?? {}).map(([k, v]) => header(k, v));
  const part = (type: string, body: string) =>
    [`--${boundary}`, `Content-Type: ${type}; charset=utf-8`, 'Content-Transfer-Encoding: base64', '', base64Lines(body)].join(CRLF);
  return [
    `From: ${mailbox(m.from).header}`,
    `To: ${mailbox(m.to).header}`,
    header('Subject', m.subject),
    `Date: ${rfcDate(m.date)}`,
    `Message-ID: ${m.messageId}`,
    ...extra,
    'MIME-Version: 1.0',
    `Content-Type: multipart/alternative; boundary="${boundary}"`,
    '',
    part('text/plain', m.text),
    part('text/html', m.html),
    `--${boundary}--`,
    '',
  ].join(CRLF);
}
