import { SMTPServer } from 'smtp-server';
import { simpleParser, type ParsedMail } from 'mailparser';
import type { AddressInfo } from 'node:net';

export interface CapturedMail {
  to: string;
  from: string;
  subject: string;
  text: string;
  html: string;
  messageId: string;
  /** The SMTP envelope's recipients (RCPT TO), lower-cased: who really got the message. */
  recipients: string[];
  raw: ParsedMail;
}

/** An in-process SMTP server on an ephemeral loopback port that records what it accepts. */
export interface TestSmtp {
  port: number;
  url: string;
  messages: CapturedMail[];
  /** Answers the next DATA commands with these SMTP codes before accepting (e.g. [421] or [550]). */
  failNext(codes: number[]): void;
  /** Every delivery attempt (accepted or refused), in order. */
  attempts: number[];
  /**
   * Accepts `n` more messages, then holds every later one (its DATA is not answered) until the
   * returned release is called; `held()` is how many are waiting.
   */
  holdAfter(n: number): { held(): number; release(): void };
  close(): Promise<void>;
}

export async function startSmtp(): Promise<TestSmtp> {
  const messages: CapturedMail[] = [];
  const attempts: number[] = [];
  let queue: number[] = [];
  let holding: { left: number; waiting: (() => void)[] } | null = null;
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (holding && holding.left-- <= 0) {
          const h = holding;
          h.waiting.push(() => finish());
          return;
        }
        finish();
      });
      const finish = () => {
        const code = queue.shift();
        if (code) {
          attempts.push(code);
          const err = new Error(code >= 500 ? 'mailbox unavailable' : 'try again later') as Error & { responseCode: number };
          err.responseCode = code;
          callback(err);
          return;
        }
        attempts.push(250);
        const recipients = session.envelope.rcptTo.map((a) => a.address.toLowerCase());
        simpleParser(Buffer.concat(chunks)).then((mail) => {
          const to = Array.isArray(mail.to) ? mail.to.map((a) => a.text).join(', ') : (mail.to?.text ?? '');
          messages.push({ to, from: mail.from?.text ?? '', subject: mail.subject ?? '', text: mail.text ?? '', html: typeof mail.html === 'string' ? mail.html : '', messageId: mail.messageId ?? '', recipients, raw: mail });
          callback();
        }, callback);
      };
    },
  });
  // A client killed mid-session (the crash tests SIGKILL workers) resets its socket: smtp-server
  // reports that as an 'error' event, which must not take the test process down.
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.server.address() as AddressInfo).port;
  return {
    port,
    url: `smtp://127.0.0.1:${port}`,
    messages,
    attempts,
    failNext(codes) {
      queue = [...codes];
    },
    holdAfter(n) {
      const h = { left: n, waiting: [] as (() => void)[] };
      holding = h;
      return {
        held: () => h.waiting.length,
        release: () => {
          if (holding === h) holding = null;
          for (const go of h.waiting.splice(0)) go();
        },
      };
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
