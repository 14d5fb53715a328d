/**
 * The bare SMTP ceiling, run as its own process like a service worker: renders and composes the
 * same access-request emails as the worker (src/mail templates + MIME composer, a grant link
 * derived per message) and sends BENCH_MESSAGES of them through a nodemailer pool of
 * BENCH_CONNECTIONS connections (the service's transport factory and its `sendRaw`) to SMTP_URL, keeping
 * BENCH_IN_FLIGHT sends in flight. No queue, no database. Prints `CEILING_READY` once the pool's
 * first message went through (connect and warm-up are not measured), then one line
 * `CEILING_RESULT {"messages","seconds"}` and exits.
 */
import { createHash } from 'node:crypto';
import { createTransport, sendRaw } from '../../src/mail/transport.js';
import { composeMime, mailbox } from '../../src/mail/mime.js';
import { renderAccessRequests } from '../../src/mail/templates.js';
import { grantLinkUrl } from '../../src/lib/grant-link.js';

const need = (k: string) => {
  const v = process.env[k];
  if (!v) throw new Error(`smtp ceiling: ${k} is not set`);
  return v;
};

const total = Number(need('BENCH_MESSAGES'));
const connections = Number(process.env.BENCH_CONNECTIONS ?? '8');
const inFlight = Number(process.env.BENCH_IN_FLIGHT ?? String(connections * 2));
const from = process.env.MAIL_FROM ?? 'Partner Program <no-reply@bench.test>';
const transport = createTransport(need('SMTP_URL'), { maxConnections: connections });

async function sendOne(i: number): Promise<void> {
  const hubId = `ceil-${i}`;
  const email = `emp-${i % 97}@ceiling.bench.test`;
  const key = `access.request:ceiling-${i}:${hubId}`;
  const messageId = `<${createHash('sha256').update(key).digest('hex').slice(0, 32)}@bench.test>`;
  const link = grantLinkUrl('http://bench.test', 'bench-ceiling-secret', { partnerId: 'ceiling', hubId, email, seq: 1 });
  const mail = renderAccessRequests({ locale: 'en', clientName: `Client ${i}`, partnerName: 'Bench partner', pairs: [{ employee: `Employee (${email})`, link }], ttlDays: 14 });
  const to = `contact-${i}@client.bench.test`;
  const raw = composeMime({
    from, to, subject: mail.subject, text: mail.text, html: mail.html, messageId, date: new Date(),
    headers: { 'Reply-To': 'partner@bench.test', 'X-Notification-Key': createHash('sha256').update(key).digest('hex').slice(0, 16) },
  });
  // The worker's own way of handing a composed message to the pool (src/mail/transport.ts sendRaw).
  await sendRaw(transport, { from: mailbox(from).address, to: [mailbox(to).address] }, raw, messageId);
}

// Warm-up: the pool's connections open (one message each, not counted).
await Promise.all(Array.from({ length: connections }, (_, k) => sendOne(total + k)));
console.log('CEILING_READY');
const t0 = performance.now();
let next = 0;
await Promise.all(Array.from({ length: inFlight }, async () => {
  while (next < total) await sendOne(next++);
}));
const seconds = (performance.now() - t0) / 1000;
console.log(`CEILING_RESULT ${JSON.stringify({ messages: total, seconds })}`);
transport.close();
process.exit(0);
