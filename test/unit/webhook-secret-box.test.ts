import { randomBytes } from 'node:crypto';
import { loadConfig } from '../../config/index.js';
import { keyId, openWebhookSecret, sealWebhookSecret, WebhookSecretError, type WebhookSecretKeys } from '../../src/webhooks/secret-box.js';
import { newWebhookSecret } from '../../src/webhooks/sender.js';

/** Webhook signing secrets at rest: AES-256-GCM, bound to the webhook id, with a previous key for rotations. */

const keyA = randomBytes(32);
const keyB = randomBytes(32);
const onlyA: WebhookSecretKeys = { current: keyA, previous: null };
const onlyB: WebhookSecretKeys = { current: keyB, previous: null };
const rotated: WebhookSecretKeys = { current: keyB, previous: keyA };

/** The stored form with one byte of its payload (iv ‖ tag ‖ ciphertext) flipped at `at`. */
function flipped(stored: string, at: number): string {
  const cut = stored.lastIndexOf(':') + 1;
  const raw = Buffer.from(stored.slice(cut), 'base64url');
  raw[at] = raw[at]! ^ 0x01;
  return stored.slice(0, cut) + raw.toString('base64url');
}

describe('webhook secret box', () => {
  it('when a secret is sealed, then the stored form names the key, holds nothing of the secret, differs each time, and opens to the secret', () => {
    const secret = newWebhookSecret();
    const stored = sealWebhookSecret(onlyA, 'wh_1', secret);
    expect(stored).toMatch(new RegExp(`^v1:${keyId(keyA)}:[A-Za-z0-9_-]+$`));
    expect(stored).not.toContain(secret.slice('whsec_'.length, 20));
    expect(Buffer.from(stored.split(':')[2]!, 'base64url').toString('latin1')).not.toContain(secret);
    expect(sealWebhookSecret(onlyA, 'wh_1', secret)).not.toBe(stored);
    expect(openWebhookSecret(onlyA, 'wh_1', stored)).toBe(secret);
  });

  it('when a sealed secret is read for another webhook id, then it does not open (the id is bound as additional data)', () => {
    const stored = sealWebhookSecret(onlyA, 'wh_1', newWebhookSecret());
    expect(() => openWebhookSecret(onlyA, 'wh_2', stored)).toThrow(WebhookSecretError);
    expect(() => openWebhookSecret(onlyA, 'wh_2', stored)).toThrow(/webhook wh_2 does not authenticate/);
  });

  it.each([
    ['the iv', 0],
    ['the tag', 12],
    ['the ciphertext', 28],
  ])('when a byte of %s is altered, then it does not open', (_what, at) => {
    const stored = sealWebhookSecret(onlyA, 'wh_1', newWebhookSecret());
    expect(() => openWebhookSecret(onlyA, 'wh_1', flipped(stored, at))).toThrow(WebhookSecretError);
  });

  it('when the stored form is truncated, has a key id of no key, or is in no known format, then it does not open, with a code and no secret in the message', () => {
    const secret = newWebhookSecret();
    const stored = sealWebhookSecret(onlyA, 'wh_1', secret);
    const cases = [stored.slice(0, stored.lastIndexOf(':') + 20), stored.replace(keyId(keyA), 'ffffffff'), 'v2:whatever', '', secret.slice(1)];
    for (const bad of cases) {
      let err: unknown;
      try {
        openWebhookSecret(onlyA, 'wh_1', bad);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(WebhookSecretError);
      expect((err as WebhookSecretError).code).toBe('WEBHOOK_SECRET_UNREADABLE');
      expect((err as Error).message).not.toContain(secret.slice(6));
    }
  });

  it('when the key has been rotated, then a secret sealed with the previous key still opens, and without it the error names the missing key', () => {
    const secret = newWebhookSecret();
    const old = sealWebhookSecret(onlyA, 'wh_1', secret);
    expect(openWebhookSecret(rotated, 'wh_1', old)).toBe(secret);
    expect(openWebhookSecret(rotated, 'wh_1', sealWebhookSecret(rotated, 'wh_1', secret))).toBe(secret);
    expect(sealWebhookSecret(rotated, 'wh_1', secret).startsWith(`v1:${keyId(keyB)}:`)).toBe(true);
    expect(() => openWebhookSecret(onlyB, 'wh_1', old)).toThrow(`sealed with key ${keyId(keyA)}, which this process does not have (WEBHOOK_SECRET_KEY is ${keyId(keyB)}, WEBHOOK_SECRET_KEY_PREVIOUS unset)`);
  });

  it('when a stored secret is a clear one from before sealing (whsec_…), then it is read as it is', () => {
    const secret = newWebhookSecret();
    expect(openWebhookSecret(onlyB, 'wh_1', secret)).toBe(secret);
  });
});

describe('WEBHOOK_SECRET_KEY settings', () => {
  it('when the key is given in base64 or base64url, then both read as the same 32 bytes, and the previous key is read too', () => {
    const key = randomBytes(32);
    const previous = randomBytes(32);
    const a = loadConfig({ WEBHOOK_SECRET_KEY: key.toString('base64'), WEBHOOK_SECRET_KEY_PREVIOUS: previous.toString('base64url') });
    const b = loadConfig({ WEBHOOK_SECRET_KEY: key.toString('base64url') });
    expect(a.webhookSecretKeys.current.equals(key)).toBe(true);
    expect(a.webhookSecretKeys.previous?.equals(previous)).toBe(true);
    expect(b.webhookSecretKeys.current.equals(key)).toBe(true);
    expect(b.webhookSecretKeys.previous).toBeNull();
    expect(a.webhookSecretKeyIsDefault).toBe(false);
  });

  it.each([
    ['16 bytes', randomBytes(16).toString('base64')],
    ['48 bytes', randomBytes(48).toString('base64')],
    ['not base64', `${'!'.repeat(43)}=`],
    ['a passphrase', 'correct horse battery staple correct horse b'],
  ])('when the key is %s, then the configuration is refused naming the key, not its value', (_what, value) => {
    expect(() => loadConfig({ WEBHOOK_SECRET_KEY: value })).toThrow(/WEBHOOK_SECRET_KEY: expected 32 bytes/);
    expect(() => loadConfig({ WEBHOOK_SECRET_KEY: value })).not.toThrow(value);
    expect(() => loadConfig({ WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64'), WEBHOOK_SECRET_KEY_PREVIOUS: value })).toThrow(/WEBHOOK_SECRET_KEY_PREVIOUS: expected 32 bytes/);
  });

  it('when NODE_ENV is production without WEBHOOK_SECRET_KEY, then it refuses to start; elsewhere a fixed development key is used and said to be one', () => {
    const prod = { NODE_ENV: 'production', API_TOKENS: JSON.stringify([{ token: 'tok-0123456789', name: 'x', partners: '*', scopes: ['admin'] }]), GRANT_LINK_SECRET: 'a-grant-link-secret-of-enough-length' };
    expect(() => loadConfig(prod)).toThrow(/WEBHOOK_SECRET_KEY: required when NODE_ENV=production/);
    expect(loadConfig({ ...prod, WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64') }).env).toBe('production');
    const dev = loadConfig({});
    expect(dev.webhookSecretKeyIsDefault).toBe(true);
    expect(dev.webhookSecretKeys.current).toHaveLength(32);
    expect(loadConfig({}).webhookSecretKeys.current.equals(dev.webhookSecretKeys.current)).toBe(true);
  });
});
