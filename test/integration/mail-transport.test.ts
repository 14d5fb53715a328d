import type { Transporter } from 'nodemailer';
import { createTransport, sendRaw } from '../../src/mail/transport.js';
import { composeMime } from '../../src/mail/mime.js';
import { startSmtp, type TestSmtp } from '../helpers/smtp.js';

/**
 * sendRaw hands a composed message to nodemailer's SMTP pool without sendMail's MIME layer. These
 * tests hold it to what sendMail gave: the bytes arrive as composed (dot-stuffing included), the
 * envelope is nodemailer's (IDN domains included), SMTP refusals reject with their code, and the
 * pool it relies on is the one nodemailer builds for our transport.
 */
describe('sending a composed message through the SMTP pool (sendRaw)', () => {
  let smtp: TestSmtp;
  beforeAll(async () => {
    smtp = await startSmtp();
  });
  afterAll(async () => {
    await smtp.close();
  });

  const compose = (to: string, text: string, messageId: string) => composeMime({
    from: 'Partner Program <no-reply@pap.test>', to, subject: 'Zugriff für Ihr Konto', text, html: `<p>${text}</p>`, messageId, date: new Date('2026-11-30T00:00:00Z'), headers: {},
  });
  /** Runs `fn` with our transport (a pool of `connections`), closed afterwards whatever happens. */
  async function withTransport(connections: number, fn: (transport: Transporter) => unknown): Promise<void> {
    const transport = createTransport(smtp.url, { maxConnections: connections });
    try {
      await fn(transport);
    } finally {
      transport.close();
    }
  }
  /** Composes a message to `to` and sends it with sendRaw. */
  const send = (transport: Transporter, to: string, text: string, messageId: string) =>
    sendRaw(transport, { from: 'no-reply@pap.test', to: [to] }, compose(to, text, messageId), messageId);

  it('when our transport is created, then nodemailer gives it the pool that sendRaw hands messages to', () => withTransport(2, (transport) => {
    expect((transport as unknown as { transporter: { name: string } }).transporter.name).toBe('SMTP (pool)');
  }));

  it('when messages with a line that starts with a dot and an IDN recipient are sent, then each arrives whole, once, to its recipient', () => withTransport(2, async (transport) => {
    const before = smtp.messages.length;
    const text = 'first line\n.a line that starts with a dot\n..and two\nlast line';
    await Promise.all(Array.from({ length: 5 }, (_, i) => send(transport, `kontakt${i}@bücher.test`, text, `<m${i}@pap.test>`)));
    const got = smtp.messages.slice(before);
    expect(got.map((m) => m.messageId).sort()).toEqual([0, 1, 2, 3, 4].map((i) => `<m${i}@pap.test>`));
    for (const m of got) {
      expect(m.text.trim()).toBe(text);
      expect(m.subject).toBe('Zugriff für Ihr Konto');
      // nodemailer sends the domain punycoded; smtp-server gives it back in Unicode.
      expect(m.recipients).toEqual([expect.stringMatching(/^kontakt\d@bücher\.test$/)]);
    }
  }));

  it('when the server refuses the message, then the send rejects with the SMTP code, and a later send on the pool goes through', () => withTransport(1, async (transport) => {
    const before = smtp.messages.length;
    smtp.failNext([550]);
    await expect(send(transport, 'a@pap.test', 'refused', '<r1@pap.test>')).rejects.toMatchObject({ responseCode: 550 });
    smtp.failNext([421]);
    await expect(send(transport, 'a@pap.test', 'later', '<r2@pap.test>')).rejects.toMatchObject({ responseCode: 421 });
    await send(transport, 'a@pap.test', 'accepted', '<r3@pap.test>');
    expect(smtp.messages.slice(before).map((m) => m.messageId)).toEqual(['<r3@pap.test>']);
  }));
});
