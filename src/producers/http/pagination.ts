import type { z } from 'zod';
import { toIssues, type Issue } from '../../commands/schemas.js';
import { PageQuery } from './api-schemas.js';

/**
 * Cursor pagination of the lists (contract §5): `limit` (default 100, at most 1000) and an opaque
 * `cursor` (the `nextCursor` of the previous page, null at the end). A cursor is the list's sort
 * key of the last item, as base64url JSON: a list reads the page after it (keyset), so pages stay
 * right while rows are added.
 */

export const DEFAULT_PAGE = 100;

/** An opaque cursor of a list's sort key. */
export const encodeCursor = (key: readonly string[]): string => Buffer.from(JSON.stringify(key)).toString('base64url');

/** The sort key of a cursor this service gave (`arity` strings), or null. */
export function decodeCursor(cursor: string, arity: number): string[] | null {
  try {
    const v: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    return Array.isArray(v) && v.length === arity && v.every((x) => typeof x === 'string' && x.length <= 1000) ? (v as string[]) : null;
  } catch {
    return null;
  }
}

/** A checked page request: its limit and the sort key it starts after. */
export interface Page { limit: number; after: string[] | null }

/**
 * Checks `limit` and `cursor` of a list's query (other parameters are the route's business) with
 * the schema the document shows; `valid` checks a decoded key (a timestamp, …).
 */
export function parsePage(query: unknown, arity: number, valid: (key: string[]) => boolean = () => true): { ok: true; page: Page } | { ok: false; issues: Issue[] } {
  const q = (query ?? {}) as Record<string, unknown>;
  const parsed = (PageQuery as z.ZodType<{ limit?: number; cursor?: string }>).safeParse({ limit: q.limit, cursor: q.cursor });
  if (!parsed.success) return { ok: false, issues: toIssues(parsed.error) };
  const { limit = DEFAULT_PAGE, cursor } = parsed.data;
  if (cursor === undefined) return { ok: true, page: { limit, after: null } };
  const after = decodeCursor(cursor, arity);
  if (after === null || !valid(after)) return { ok: false, issues: [{ path: 'cursor', message: 'is not a cursor this list gave' }] };
  return { ok: true, page: { limit, after } };
}

/** The items of a page read with `limit + 1` rows, and the cursor of the next page (null at the end). */
export function pageOf<T>(found: readonly T[], limit: number, keyOf: (last: T) => string[]): { items: T[]; nextCursor: string | null } {
  const items = found.slice(0, limit);
  const last = items.at(-1);
  return { items, nextCursor: found.length > limit && last !== undefined ? encodeCursor(keyOf(last)) : null };
}
