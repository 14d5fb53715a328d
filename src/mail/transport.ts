import nodemailer, { type Transporter } from 'nodemailer';

/**
 * The SMTP transport. nodemailer does not retry by itself: the mail job does, with backoff.
 * Timeouts are far below the job lock so a hung server fails the attempt instead of stalling it.
 */
export function createTransport(smtpUrl: string, opts: { maxConnections?: number } = {}): Transporter {
  const u = new URL(smtpUrl);
  const secure = u.protocol === 'smtps:';
  return nodemailer.createTransport({
    host: u.hostname,
    port: Number(u.port || (secure ? 465 : 25)),
    secure,
    ignoreTLS: u.searchParams.get('ignoreTLS') === 'true' || (!secure && ['127.0.0.1', 'localhost', '::1'].includes(u.hostname)),
    ...(u.username ? { auth: { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) } } : {}),
    pool: true,
    maxConnections: opts.maxConnections ?? 8,
    maxMessages: 1000,
    connectionTimeout: 5000,
    greetingTimeout: 5000,
    socketTimeout: 10_000,
  });
}
