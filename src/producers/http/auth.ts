import { hash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { ApiToken, Scope } from '../../../config/index.js';
import { commandsRefusal } from '../../commands/schemas.js';
import { HttpError } from '../errors.js';

/**
 * Looks tokens up by their SHA-256 so comparison time does not depend on the token's prefix: what
 * the map compares is the digest, which an attacker cannot steer byte by byte. One one-shot digest
 * per lookup, as hex (the known tokens' digests are kept). It took three, twice per request (hook
 * and handler), ~5 % of the API's CPU per single command in the intake bench's profile; then a
 * Hash object, a Buffer, its hex and a timingSafeEqual of two equal digests, ~4 µs a request.
 */
export class TokenRegistry {
  private readonly byDigest = new Map<string, ApiToken>();
  constructor(tokens: ApiToken[]) {
    for (const t of tokens) this.byDigest.set(digest(t.token), t);
  }
  find(token: string): ApiToken | undefined {
    return this.byDigest.get(digest(token));
  }
}
const digest = (s: string) => hash('sha256', s, 'hex');

declare module 'fastify' {
  interface FastifyRequest {
    apiToken?: ApiToken;
  }
}

/** 401 when the bearer token is missing or unknown. */
export function authenticate(registry: TokenRegistry, req: FastifyRequest): ApiToken {
  const header = req.headers.authorization ?? '';
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  const token = m?.[1] ? registry.find(m[1]) : undefined;
  if (!token) throw new HttpError(401, 'UNAUTHENTICATED', m ? 'Unknown token.' : 'Missing bearer token (Authorization: Bearer <token>).');
  req.apiToken = token;
  return token;
}

export const hasScope = (t: ApiToken, scope: Scope) => t.scopes.includes('admin') || t.scopes.includes(scope);
export const canActOn = (t: ApiToken, partnerId: string) => t.scopes.includes('admin') || t.partners === '*' || t.partners.includes(partnerId);

/**
 * 401 without a valid token; 403 when the token holds none of the scopes (one scope, or a list of
 * which any one will do) or may not act on the partner.
 */
export function authorize(registry: TokenRegistry, req: FastifyRequest, scope: Scope | readonly Scope[], partnerId?: string): ApiToken {
  // Authenticated already by the onRequest hook (the same header): not looked up twice.
  const t = req.apiToken ?? authenticate(registry, req);
  const scopes: readonly Scope[] = typeof scope === 'string' ? [scope] : scope;
  if (!scopes.some((s) => hasScope(t, s))) throw new HttpError(403, 'FORBIDDEN', `This token lacks the ${scopes.map((s) => `"${s}"`).join(' or ')} scope.`);
  if (partnerId !== undefined && !canActOn(t, partnerId)) throw new HttpError(403, 'FORBIDDEN', 'This token may not act on this partner.');
  return t;
}

/**
 * 403 FORBIDDEN unless the token may post every one of these raw commands (contract §3, property
 * level: the table is `commandPolicy`); checked before validation, nothing is accepted on refusal.
 */
export function authorizeCommands(token: ApiToken, raws: readonly unknown[], opts: { batch: boolean }): void {
  const refusal = commandsRefusal(token.scopes, raws, opts);
  if (refusal) throw new HttpError(403, 'FORBIDDEN', refusal.message, refusal.details);
}
