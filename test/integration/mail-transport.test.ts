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

  it('when our transport is created, then nodemailer gives it the pool that sendRaw hands messages to', () => {
    const transport = createTransport(smtp.url, { maxConnections: 2 });
    try {
      expect((transport as unknown as { transporter: { name: string } }).transporter.name).toBe('SMTP (pool)');
    } finally {
      transport.close();
    }
  });

  it('when messages with a line that starts with a dot and an IDN recipient are sent, then each arrives whole, once, to its recipient', async () => {
    const transport = createTransport(smtp.url, { maxConnections: 2 });
    const before = smtp.messages.length;
    try {
      const text = 'first line\n.a line that starts with a dot\n..and two\nlast line';
      await Promise.all(Array.from({ length: 5 }, (_, i) =>
        sendRaw(transport, { from: 'no-reply@pap.test', to: [`kontakt${i}@bücher.test`] }, compose(`Kontakt <kontakt${i}@bücher.test>`, text, `<m${i}@pap.test>`), `<m${i}@pap.test>`)));
      const got = smtp.messages.slice(before);
      expect(got.map((m) => m.messageId).sort()).toEqual([0, 1, 2, 3, 4].map((i) => `<m${i}@pap.test>`));
      for (const m of got) {
        expect(m.text.trim()).toBe(text);
        expect(m.subject).toBe('Zugriff für Ihr Konto');
        // nodemailer sends the domain punycoded; smtp-server gives it back in Unicode.
        expect(m.recipients).toEqual([expect.stringMatching(/^kontakt\d@bücher\.test$/)]);
      }
    } finally {
      transport.close();
    }
  });

  it('when the server refuses the message, then the send rejects with the SMTP code, and a later send on the pool goes through', async () => {
    const transport = createTransport(smtp.url, { maxConnections: 1 });
    const before = smtp.messages.length;
    try {
      smtp.failNext([550]);
      await expect(sendRaw(transport, { from: 'no-reply@pap.test', to: ['a@pap.test'] }, compose('a@pap.test', 'refused', '<r1@pap.test>'), '<r1@pap.test>'))
        .rejects.toMatchObject({ responseCode: 550 });
      smtp.failNext([421]);
      await expect(sendRaw(transport, { from: 'no-reply@pap.test', to: ['a@pap.test'] }, compose('a@pap.test', 'later', '<r2@pap.test>'), '<r2@pap.test>'))
        .rejects.toMatchObject({ responseCode: 421 });
      await sendRaw(transport, { from: 'no-reply@pap.test', to: ['a@pap.test'] }, compose('a@pap.test', 'accepted', '<r3@pap.test>'), '<r3@pap.test>');
      expect(smtp.messages.slice(before).map((m) => m.messageId)).toEqual(['<r3@pap.test>']);
    } finally {
      transport.close();
    }
  });
});
