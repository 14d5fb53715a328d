import { timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { ApiToken, Scope } from '../../../config/index.js';
import { commandsRefusal } from '../../commands/schemas.js';
import { HttpError } from '../errors.js';

/**
 * Looks tokens up by their SHA-256 so comparison time does not depend on the token's prefix. One
 * digest per lookup (the known tokens' digests are kept): it took three, twice per request (hook
 * and handler), ~5 % of the API's CPU per single command in the intake bench's profile.
 */
export class TokenRegistry {
  private readonly byHash = new Map<string, { token: ApiToken; digest: Buffer }>();
  constructor(tokens: ApiToken[]) {
    for (const t of tokens) {
      const d = digest(t.token);
      this.byHash.set(d.toString('hex'), { token: t, digest: d });
    }
  }
  find(token: string): ApiToken | undefined {
    const d = digest(token);
    const known = this.byHash.get(d.toString('hex'));
    return known && timingSafeEqual(known.digest, d) ? known.token : undefined;
  }
}
const digest = (s: string) => createHash('sha256').update(s).digest();

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
