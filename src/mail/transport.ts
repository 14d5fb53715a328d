import nodemailer, { type Transporter } from 'nodemailer';

const loopback = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

/**
 * The SMTP transport, from the SMTP URL as nodemailer reads it (`smtp://user:pass@host:port`,
 * `smtps://…`, options such as `?ignoreTLS=true` in the query). Plain SMTP to this machine skips
 * STARTTLS unless the URL says otherwise (development servers such as Mailpit do not offer it).
 * nodemailer does not retry by itself: the mail job does, with backoff. Timeouts are far below the
 * job lock so a hung server fails the attempt instead of stalling it.
 */
export function createTransport(smtpUrl: string, opts: { maxConnections?: number } = {}): Transporter {
  const { protocol, hostname } = new URL(smtpUrl);
  return nodemailer.createTransport({
    url: smtpUrl,
    ignoreTLS: protocol === 'smtp:' && loopback.has(hostname),
    pool: true,
    maxConnections: opts.maxConnections ?? 8,
    maxMessages: 1000,
    connectionTimeout: 5000,
    greetingTimeout: 5000,
    socketTimeout: 10_000,
  });
}
