import type { Em } from '../db/orm.js';
import { replaceSecrets, secretsNotSealedWith, webhookTableExists } from '../db/webhook-store.js';
import { openWebhookSecret, sealedPrefix, sealWebhookSecret, WebhookSecretError, type WebhookSecretKeys } from './secret-box.js';

/** Rows read (and written) per statement. */
const BATCH = 500;

/**
 * The start step of every process (src/app.ts, after the migrations): seals with the current key
 * every stored webhook secret that is not sealed with it yet — clear ones from before sealing
 * (`whsec_…`) and, after a key rotation, ones sealed with WEBHOOK_SECRET_KEY_PREVIOUS. Returns how
 * many it sealed.
 *
 * Why at start, and not in a migration or on read: a migration has no key (and must not have one),
 * and sealing on read would leave rows that are never delivered to in clear. At start it is one
 * scan of the webhook table that finds nothing on every start but the first after an upgrade or a
 * rotation.
 * Idempotent: a row already sealed with the current key is not read; each write replaces a row
 * only if it still holds what was read, so processes starting at once do not fight (either's seal
 * opens). Rows that an older version of the service writes in clear during a rolling upgrade are
 * sealed at the next start.
 *
 * Refuses (throws {@link WebhookSecretError}, nothing written) when any stored secret cannot be
 * opened with the keys given: a wrong WEBHOOK_SECRET_KEY, or a rotation without
 * WEBHOOK_SECRET_KEY_PREVIOUS. An operator wants that deployment stopped before it serves: its
 * deliveries would all fail, and sealing the clear rows with a wrong key would make them unreadable
 * to the right one. Nothing is lost meanwhile: deliveries wait, pending, in Postgres.
 */
export async function sealStoredSecrets(em: Em, keys: WebhookSecretKeys): Promise<number> {
  // A database whose migrations have not run yet (MIGRATE_ON_START=false, e.g. the OpenAPI writer's
  // empty scratch database) has no webhook table, hence no secret to seal.
  if (!(await webhookTableExists(em))) return 0;
  const prefix = sealedPrefix(keys.current);
  const set: { id: string; was: string; sealed: string }[] = [];
  const unreadable: string[] = [];
  for (let after = ''; ;) {
    const found = await secretsNotSealedWith(em, prefix, after, BATCH);
    for (const r of found) {
      try {
        set.push({ id: r.id, was: r.secret, sealed: sealWebhookSecret(keys, r.id, openWebhookSecret(keys, r.id, r.secret)) });
      } catch (err) {
        if (!(err instanceof WebhookSecretError)) throw err;
        unreadable.push(err.message);
      }
    }
    if (found.length < BATCH) break;
    after = found.at(-1)!.id;
  }
  if (unreadable.length) {
    throw new WebhookSecretError(`${unreadable.length} stored webhook secret(s) cannot be opened with WEBHOOK_SECRET_KEY or WEBHOOK_SECRET_KEY_PREVIOUS; ` +
      `set the key they were sealed with (as WEBHOOK_SECRET_KEY, or as WEBHOOK_SECRET_KEY_PREVIOUS during a rotation). First: ${unreadable[0]}`);
  }
  let sealed = 0;
  for (let i = 0; i < set.length; i += BATCH) sealed += await replaceSecrets(em, set.slice(i, i + BATCH));
  return sealed;
}
