import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

/**
 * A minimal in-process SMTP sink: accepts everything on an ephemeral loopback port, counts
 * messages and their distinct Message-IDs (to prove "exactly one email per pair"), keeps nothing else.
 */
export interface SmtpSink {
  url: string;
  /** Messages accepted so far. */
  count(): number;
  /** Distinct Message-ID headers seen so far. */
  distinctIds(): number;
  close(): Promise<void>;
}

const HEADER_END = Buffer.from('\r\n\r\n');

export async function startSmtpSink(): Promise<SmtpSink> {
  let count = 0;
  const ids = new Set<string>();
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    maxClients: 1000,
    onData(stream, _session, callback) {
      // Keep only the header block (enough for Message-ID), discard the body.
      let head = Buffer.alloc(0);
      let headDone = false;
      stream.on('data', (chunk: Buffer) => {
        if (headDone) return;
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf(HEADER_END);
        if (end >= 0) {
          head = head.subarray(0, end);
          headDone = true;
        } else if (head.length > 64 * 1024) {
          headDone = true;
        }
      });
      stream.on('end', () => {
        count++;
        const m = /^message-id:\s*(\S+)/im.exec(head.toString('latin1'));
        if (m?.[1]) ids.add(m[1]);
        callback();
      });
      stream.on('error', (err) => callback(err));
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.server.address() as AddressInfo).port;
  return {
    url: `smtp://127.0.0.1:${port}`,
    count: () => count,
    distinctIds: () => ids.size,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
