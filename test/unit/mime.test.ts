import { simpleParser } from 'mailparser';
import { composeMime, encodeWords, mailbox, type MimeMessage } from '../../src/mail/mime.js';
import { renderAccessRequest } from '../../src/mail/templates.js';

/** The composed message, read back by a real MIME parser (mailparser), must say exactly what was composed. */
const base: MimeMessage = {
  from: 'Partner Program <no-reply@partners.test>',
  to: 'contact@client.test',
  subject: 'Hello',
  text: 'Plain body\n',
  html: '<p>HTML body</p>',
  messageId: '<0123456789abcdef@partners.test>',
  date: new Date('2026-11-22T10:20:30Z'),
  headers: { 'X-Notification-Key': 'abc123' },
};

describe('composeMime', () => {
  it('when a Swedish grant email is composed, then a MIME parser reads back its subject, both bodies, addresses, Message-ID, date and headers', async () => {
    const mail = renderAccessRequest({ locale: 'sv', clientName: 'Åsa & Co', partnerName: 'Bräcke Byrå', employee: 'Örjan (orjan@agency.test)', link: 'http://x.test/v1/grants/tok', ttlDays: 14 });
    const raw = composeMime({ ...base, subject: mail.subject, text: mail.text, html: mail.html });
    const parsed = await simpleParser(raw);
    expect(parsed.subject).toBe(mail.subject);
    expect(parsed.text).toBe(mail.text);
    expect(parsed.html).toBe(mail.html);
    expect(parsed.from?.value).toEqual([{ name: 'Partner Program', address: 'no-reply@partners.test' }]);
    expect(parsed.to && !Array.isArray(parsed.to) ? parsed.to.value : []).toEqual([{ name: '', address: 'contact@client.test' }]);
    expect(parsed.messageId).toBe(base.messageId);
    expect(parsed.date?.toISOString()).toBe('2026-11-22T10:20:30.000Z');
    expect(parsed.headers.get('x-notification-key')).toBe('abc123');
    expect(parsed.headers.get('mime-version')).toBe('1.0');
  });

  it('when the subject is long and not ASCII, then it is folded into encoded words of at most 75 characters (RFC 2047) and reads back whole', async () => {
    const subject = `${'Ä'.repeat(40)} — ${'ü'.repeat(50)} 🎉 ${'x'.repeat(30)}`;
    const raw = composeMime({ ...base, subject });
    const header = raw.slice(0, raw.indexOf('\r\n\r\n'));
    const subjectLines = header.split('\r\n').filter((l, i, all) => l.startsWith('Subject:') || (l.startsWith(' ') && all.slice(0, i).some((x) => x.startsWith('Subject:'))));
    for (const w of encodeWords(subject).split('\r\n ')) expect(w.length).toBeLessThanOrEqual(75);
    expect(subjectLines.length).toBeGreaterThan(1);
    expect((await simpleParser(raw)).subject).toBe(subject);
  });

  it('when any message is composed, then every line ends in CRLF and is at most 78 characters (bodies in base64 lines of 76)', () => {
    for (const subject of ['Ünïcödé '.repeat(20), `Plain ASCII, but long: ${'word '.repeat(40)}`]) {
      const raw = composeMime({ ...base, subject, text: 'é'.repeat(5000), html: `<p>${'ø'.repeat(3000)}</p>` });
      expect(raw.replace(/\r\n/g, '')).not.toMatch(/[\r\n]/);
      for (const line of raw.split('\r\n')) expect(line.length).toBeLessThanOrEqual(78);
    }
  });

  it('when display names need quoting or encoding, then the mailbox header keeps the name and the address is bare', async () => {
    expect(mailbox('Acme, Inc. <a@b.test>')).toEqual({ header: '"Acme, Inc." <a@b.test>', address: 'a@b.test' });
    expect(mailbox('"Quoted \\"Name\\"" <a@b.test>')).toEqual({ header: '"Quoted \\"Name\\"" <a@b.test>', address: 'a@b.test' });
    expect((await simpleParser(composeMime({ ...base, from: '"Quoted \\"Name\\"" <q@b.test>' }))).from?.value).toEqual([{ name: 'Quoted "Name"', address: 'q@b.test' }]);
    expect(mailbox('a@b.test')).toEqual({ header: 'a@b.test', address: 'a@b.test' });
    const raw = composeMime({ ...base, from: 'Bräcke Byrå <no-reply@b.test>' });
    expect((await simpleParser(raw)).from?.value).toEqual([{ name: 'Bräcke Byrå', address: 'no-reply@b.test' }]);
  });

  it('when the same message is composed twice, then the boundary is the same (no randomness) and does not occur in the bodies', () => {
    const a = composeMime(base);
    const b = composeMime(base);
    expect(a).toBe(b);
    const boundary = /boundary="([^"]+)"/.exec(a)![1]!;
    expect(boundary.startsWith('=_')).toBe(true);
    expect(a.split(`--${boundary}`)).toHaveLength(4); // preamble, text part, html part, closing
  });
});
