import { createHash, createHmac } from 'node:crypto';

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
