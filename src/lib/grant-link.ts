import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** The request a grant link answers: one pair and the pair's request sequence. */
export interface GrantRequestRef {
  partnerId: string;
  hubId: string;
  email: string;
  /** The pair's `request_seq` when the request was made: a new request makes a new link. */
  seq: number;
}

/**
 * The grant link's token of one request: `base64url(HMAC-SHA256(GRANT_LINK_SECRET,
 * partnerId \n hubId \n email \n seq))`. It is never stored: the grant link's row holds its
 * {@link hashToken}, and the mail renderer derives the token again from the pair and its sequence
 * when it writes the email. Unguessable without the secret; bound to one pair and one request.
 */
export function grantToken(secret: string, r: GrantRequestRef): string {
  return createHmac('sha256', secret).update(`${r.partnerId}\n${r.hubId}\n${r.email}\n${r.seq}`).digest('base64url');
}

/** How a grant link's token is stored and looked up: SHA-256, base64url. */
export const hashToken = (token: string): string => createHash('sha256').update(token).digest('base64url');

/** The stored form ({@link hashToken}) of a request's token. */
export const grantTokenHash = (secret: string, r: GrantRequestRef): string => hashToken(grantToken(secret, r));

/** The link in the email: `PUBLIC_URL/v1/grants/{token}`. */
export const grantLinkUrl = (publicUrl: string, secret: string, r: GrantRequestRef): string => `${publicUrl}/v1/grants/${grantToken(secret, r)}`;

/** The requests a "grant all" link answers: every pair one command asked for at one client. */
export interface GrantAllRef {
  partnerId: string;
  hubId: string;
  commandId: string;
}

/** A key of its own, derived from the secret, so no pair token can ever pass for a "grant all" signature. */
const allKey = (secret: string) => createHmac('sha256', secret).update('grant-all links').digest();
const allSignature = (secret: string, r: GrantAllRef) => createHmac('sha256', allKey(secret)).update(`${r.partnerId}\n${r.hubId}\n${r.commandId}`).digest('base64url');

/**
 * The token of a digest's "grant all" link: what it answers (partner, client, command; base64url)
 * and an HMAC-SHA256 of them with GRANT_LINK_SECRET. Stored nowhere: {@link readGrantAllToken}
 * checks the signature. It grants nothing by itself: it opens the pairs' own single-use links,
 * each answered once.
 */
export function grantAllToken(secret: string, r: GrantAllRef): string {
  return `${Buffer.from(`${r.partnerId}\n${r.hubId}\n${r.commandId}`).toString('base64url')}.${allSignature(secret, r)}`;
}

/** What a "grant all" token answers, if its signature holds (compared in constant time); else null. */
export function readGrantAllToken(secret: string, token: string): GrantAllRef | null {
  const m = /^([A-Za-z0-9_-]{4,700})\.([A-Za-z0-9_-]{43})$/.exec(token);
  if (!m) return null;
  const parts = Buffer.from(m[1]!, 'base64url').toString('utf8').split('\n');
  if (parts.length !== 3 || parts.some((p) => !p)) return null;
  const ref = { partnerId: parts[0]!, hubId: parts[1]!, commandId: parts[2]! };
  const expected = Buffer.from(allSignature(secret, ref));
  const given = Buffer.from(m[2]!);
  return expected.length === given.length && timingSafeEqual(expected, given) ? ref : null;
}

/** The "grant all" link in a digest: `PUBLIC_URL/v1/grants/all/{token}`. */
export const grantAllLinkUrl = (publicUrl: string, secret: string, r: GrantAllRef): string => `${publicUrl}/v1/grants/all/${grantAllToken(secret, r)}`;
