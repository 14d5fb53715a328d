import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/**
 * Webhook signing secrets at rest: sealed with AES-256-GCM under WEBHOOK_SECRET_KEY, so a database
 * dump or a read-only SQL user does not give anyone the means to forge our signed webhooks.
 *
 * Stored form: `v1:{kid}:{base64url(iv ‖ tag ‖ ciphertext)}`
 * - `kid`: 8 hex digits of a SHA-256 of the key: which key sealed it, so the start step finds in SQL
 *   the rows not sealed with the current key, and an error can say which key is missing. (A
 *   truncated hash of 32 random bytes tells nothing about them.)
 * - `iv`: 12 random bytes per seal; `tag`: GCM's 16-byte tag.
 * - Additional data: the webhook id, so a ciphertext copied onto another subscription's row does
 *   not open there (a partner cannot be made to sign with another partner's secret).
 *
 * A stored value that starts with `whsec_` is a secret from before this format, in clear: it is read
 * as it is, and the start step seals it (see secrets-at-rest.ts).
 */

/** The keys: `current` seals and opens; `previous` (during a key rotation) only opens. 32 bytes each. */
export interface WebhookSecretKeys {
  readonly current: Buffer;
  readonly previous: Buffer | null;
}

/** A stored secret that cannot be opened with the keys given: never signed with, never guessed at. */
export class WebhookSecretError extends Error {
  override name = 'WebhookSecretError';
  readonly code = 'WEBHOOK_SECRET_UNREADABLE';
}

const VERSION = 'v1';
const LEGACY_PREFIX = 'whsec_';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const sealedForm = /^v1:([0-9a-f]{8}):([A-Za-z0-9_-]+)$/;

/** Which key sealed a secret, as written in the stored form (not secret: a truncated hash of it). */
export const keyId = (key: Buffer): string => createHash('sha256').update('pap webhook secret key\n').update(key).digest('hex').slice(0, 8);

/** How every secret sealed with `key` starts. */
export const sealedPrefix = (key: Buffer): string => `${VERSION}:${keyId(key)}:`;

const aad = (webhookId: string) => Buffer.from(`webhook secret\n${webhookId}`, 'utf8');

/** The stored form of a subscription's secret, sealed with the current key and bound to its id. */
export function sealWebhookSecret(keys: WebhookSecretKeys, webhookId: string, secret: string): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', keys.current, iv, { authTagLength: TAG_BYTES }).setAAD(aad(webhookId));
  const ciphertext = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
  return sealedPrefix(keys.current) + Buffer.concat([iv, cipher.getAuthTag(), ciphertext]).toString('base64url');
}

/**
 * The signing secret of a subscription from its stored form: opened with the key its `kid` names
 * (current or previous), or as it is when it is a clear secret from before (`whsec_…`). Throws
 * {@link WebhookSecretError} when neither key is the one that sealed it, or when it does not
 * authenticate (altered, or moved from another webhook's row). Messages carry ids, never secrets.
 */
export function openWebhookSecret(keys: WebhookSecretKeys, webhookId: string, stored: string): string {
  if (stored.startsWith(LEGACY_PREFIX)) return stored;
  const m = sealedForm.exec(stored);
  if (!m) throw new WebhookSecretError(`the stored secret of webhook ${webhookId} is in no known format`);
  const kid = m[1]!;
  const raw = Buffer.from(m[2]!, 'base64url');
  const candidates = [keys.current, keys.previous].filter((k): k is Buffer => k !== null && keyId(k) === kid);
  if (!candidates.length) {
    const known = `WEBHOOK_SECRET_KEY is ${keyId(keys.current)}` + (keys.previous ? `, WEBHOOK_SECRET_KEY_PREVIOUS ${keyId(keys.previous)}` : ', WEBHOOK_SECRET_KEY_PREVIOUS unset');
    throw new WebhookSecretError(`the secret of webhook ${webhookId} is sealed with key ${kid}, which this process does not have (${known})`);
  }
  if (raw.length > IV_BYTES + TAG_BYTES) {
    for (const key of candidates) {
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES }).setAAD(aad(webhookId));
        decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
        return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
      } catch {
        // Not this key (two keys may share a kid, once in 4 billion): try the other.
      }
    }
  }
  throw new WebhookSecretError(`the secret of webhook ${webhookId} does not authenticate with key ${kid}: altered, or copied from another webhook`);
}
