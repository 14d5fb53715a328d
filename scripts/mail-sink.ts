// `npm run mail-sink`: a local SMTP server for development (no Docker, no Mailpit needed). It
// accepts every message on 127.0.0.1:1025 (the service's default SMTP_URL), writes each one as an
// .eml file into a folder (open it with any mail program), and prints one line per message with
// its links (the grant links of an access request). Stop it with Ctrl-C.
//
//   npm run mail-sink [-- --port 1025] [--host 127.0.0.1] [--dir /tmp/partner-access-mail]
import { mkdirSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '1025' },
    host: { type: 'string', default: '127.0.0.1' },
    dir: { type: 'string', default: join(tmpdir(), 'partner-access-mail') },
  },
});
const port = Number(values.port);
const dir = resolve(values.dir);
mkdirSync(dir, { recursive: true });

let count = 0;
const server = new SMTPServer({
  // Development only: no TLS, any login accepted (so an SMTP_URL with a user and password works too).
  disabledCommands: ['STARTTLS'],
  authOptional: true,
  allowInsecureAuth: true,
  onAuth: (_auth, _session, callback) => callback(null, { user: 'mail-sink' }),
  logger: false,
  size: 25 * 1024 * 1024,
  onData(stream, session, callback) {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const raw = Buffer.concat(chunks);
      const file = join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${String(++count).padStart(4, '0')}.eml`);
      writeFileSync(file, raw);
      simpleParser(raw).then(
        (mail) => {
          const to = session.envelope.rcptTo.map((r) => r.address).join(', ');
          const links = [...new Set((mail.text ?? '').match(/https?:\/\/[^\s<>"')]+/g) ?? [])];
          console.log(`mail-sink: to ${to} | ${mail.subject ?? '(no subject)'} | ${file}`);
          for (const link of links) console.log(`    ${link}`);
          callback();
        },
        (err: Error) => {
          console.log(`mail-sink: a message that does not parse (${err.message}) | ${file}`);
          callback();
        },
      );
    });
  },
});
server.on('error', (err: NodeJS.ErrnoException) => {
  console.error(err.code === 'EADDRINUSE' ? `mail-sink: port ${values.host}:${port} is already in use (another mail sink or Mailpit?). Use --port.` : `mail-sink: ${err.message}`);
  process.exit(4);
});
server.listen(port, values.host, () => {
  const bound = (server.server.address() as AddressInfo).port;
  console.log(`mail-sink: SMTP on ${values.host}:${bound} (SMTP_URL=smtp://${values.host}:${bound}); each message is written to ${dir}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
