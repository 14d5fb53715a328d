import { randomBytes } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Webhook } from 'standardwebhooks';
import { checkedLookup, isPrivateHostText, PrivateTargetError } from './target.js';

/**
 * Sending one webhook: signed as the Standard Webhooks specification says (the `standardwebhooks`
 * package: `webhook-id` = the event id, `webhook-timestamp` = the attempt's Unix seconds,
 * `webhook-signature` = `v1,` + base64 HMAC-SHA256 of `id.timestamp.body` with the secret's key),
 * POSTed with a bound on the whole exchange, to an address checked at this very send (see target.ts).
 */

/** No answer within this long is a failed attempt (contract §8: 5 s). */
export const WEBHOOK_TIMEOUT_MS = 5000;

/** A new signing secret: `whsec_` + base64 of 32 random bytes (shown to the partner once). */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/** The signature headers of one attempt. */
export function signatureHeaders(secret: string, eventId: string, body: string, at: Date): Record<string, string> {
  return {
    'webhook-id': eventId,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': new Webhook(secret).sign(eventId, at, body),
  };
}

/** What one attempt got: the HTTP status (null: no answer) and, when it failed, why. */
export interface AttemptResult { status: number | null; error: string | null }

export interface SendOptions {
  url: string;
  /** The signing secret, opened (`whsec_…`): never its stored form. */
  secret: string;
  eventId: string;
  body: string;
  /** WEBHOOK_ALLOW_PRIVATE. */
  allowPrivate: boolean;
  timeoutMs?: number;
  userAgent?: string;
  now?: () => Date;
}

/**
 * One attempt: POST the body with its signature. Resolves with the status of any answer (the body
 * of the answer is read and dropped, up to 64 KiB, within the same time bound); with status null
 * and the reason when there was no answer in time, the connection failed, or the target resolved
 * to an address that is not public. Never follows a redirect (a 3xx is an answer that is not 2xx).
 */
export function sendWebhook(o: SendOptions): Promise<AttemptResult> {
  let url: URL;
  try {
    url = new URL(o.url);
  } catch {
    return Promise.resolve({ status: null, error: 'the webhook URL is not valid' });
  }
  // An IP literal is connected to without a lookup: check it here.
  if (!o.allowPrivate && isPrivateHostText(url.hostname)) {
    return Promise.resolve({ status: null, error: new PrivateTargetError(`${url.hostname} is a loopback, private or link-local address`).message });
  }
  const timeoutMs = o.timeoutMs ?? WEBHOOK_TIMEOUT_MS;
  const at = (o.now ?? (() => new Date()))();
  const headers = {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(o.body)),
    'user-agent': o.userAgent ?? 'partner-access-pipeline-webhooks',
    ...signatureHeaders(o.secret, o.eventId, o.body, at),
  };
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<AttemptResult>((resolve) => {
    let settled = false;
    const finish = (r: AttemptResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(r);
    };
    const req = request(url, { method: 'POST', headers, lookup: checkedLookup({ allowPrivate: o.allowPrivate }), agent: false }, (res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      let read = 0;
      res.on('data', (chunk: Buffer) => {
        read += chunk.length;
        if (read > 64 * 1024) finish({ status, error: status >= 200 && status < 300 ? null : `HTTP ${status}` });
      });
      res.on('end', () => finish({ status, error: status >= 200 && status < 300 ? null : `HTTP ${status}` }));
      res.on('error', () => finish({ status, error: status >= 200 && status < 300 ? null : `HTTP ${status}` }));
    });
    const timer = setTimeout(() => finish({ status: null, error: `no answer within ${timeoutMs} ms` }), timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => finish({ status: null, error: err instanceof PrivateTargetError ? err.message : `${err.code ?? err.name}: ${err.message}`.slice(0, 300) }));
    req.end(o.body);
  });
}
