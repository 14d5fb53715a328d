import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import type { Locale } from './i18n.js';

/** One signed-in person: the API token they signed in with, bound to one partner. */
export interface Session {
  token: string;
  partnerId: string;
  /** The per-session CSRF token, sent back in a hidden field of every form. */
  csrf: string;
  /** The language chosen with the switcher, if any. */
  lang: Locale | null;
  /** The partner's own locale when the API exposed one at sign-in. */
  partnerLocale: Locale | null;
  signedInAt: string;
}

/** A session id: 32 random bytes, base64url (what the cookie holds). */
const sidShape = /^[A-Za-z0-9_-]{43}$/;

/**
 * Sessions in Redis, so that every API process knows them (an in-memory store would sign people
 * out whenever a request reaches another process). The key is a hash of the session id and the
 * value is encrypted (AES-256-GCM) with a key derived from the session id: whoever reads Redis
 * without the cookie learns neither the session id nor the API token. A session lives `ttlSeconds`
 * from sign-in (not extended by use); signing out deletes it.
 */
export class SessionStore {
  constructor(
    private readonly redis: Redis | Cluster,
    private readonly keyPrefix: string,
    readonly ttlSeconds: number,
  ) {}

  private key(sid: string): string {
    return this.keyPrefix + createHash('sha256').update(`id:${sid}`).digest('base64url');
  }

  private static secret(sid: string): Buffer {
    return Buffer.from(hkdfSync('sha256', sid, 'pap-webapp-session', 'session value', 32));
  }

  private static seal(sid: string, session: Session): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', SessionStore.secret(sid), iv);
    const body = Buffer.concat([cipher.update(JSON.stringify(session), 'utf8'), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64');
  }

  private static open(sid: string, sealed: string): Session | null {
    try {
      const raw = Buffer.from(sealed, 'base64');
      const decipher = createDecipheriv('aes-256-gcm', SessionStore.secret(sid), raw.subarray(0, 12));
      decipher.setAuthTag(raw.subarray(12, 28));
      return JSON.parse(Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8')) as Session;
    } catch {
      return null;
    }
  }

  /** Stores a new session; returns its id (for the cookie). */
  async create(session: Session): Promise<string> {
    const sid = randomBytes(32).toString('base64url');
    await this.redis.set(this.key(sid), SessionStore.seal(sid, session), 'EX', this.ttlSeconds);
    return sid;
  }

  async get(sid: string | undefined): Promise<Session | null> {
    if (!sid || !sidShape.test(sid)) return null;
    const sealed = await this.redis.get(this.key(sid));
    return sealed ? SessionStore.open(sid, sealed) : null;
  }

  /** Rewrites a session, keeping its time to live. */
  async update(sid: string, session: Session): Promise<void> {
    await this.redis.set(this.key(sid), SessionStore.seal(sid, session), 'KEEPTTL', 'XX');
  }

  async destroy(sid: string | undefined): Promise<void> {
    if (sid && sidShape.test(sid)) await this.redis.del(this.key(sid));
  }
}
