/**
 * What a database error means, decided from its SQLSTATE (or the network error code) in this one
 * place: callers ask "unavailable?" or "bad data?", never read the message.
 */

/** The SQLSTATE of a Postgres error, or the errno code of a network error ('' when it has none). */
export function sqlState(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

const unreachable = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH']);

/**
 * The two failures `pg` and `pg-pool` raise without any code: a connection closed under a query,
 * and no connection free in time. They are recognised by their exact text, here only.
 */
const codelessConnectionFailures = new Set([
  'Connection terminated',
  'Connection terminated unexpectedly',
  'Connection terminated due to connection timeout',
  'timeout exceeded when trying to connect',
]);

/**
 * Whether Postgres cannot take a write now, whatever the rows: unreachable (network errors, class
 * 08), shutting down or starting (57P01–57P03), out of resources (class 53: disk full, out of
 * memory, too many connections), a transaction state that forbids writing (class 25, e.g. 25006 a
 * read-only transaction on a standby after a failover), or an I/O error (58030). Retrying later can
 * help; the intake answers 503 and workers retry with backoff.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  const code = sqlState(err);
  if (code) {
    return unreachable.has(code)
      || ['57P01', '57P02', '57P03', '58030'].includes(code)
      || code.startsWith('08') || code.startsWith('25') || code.startsWith('53');
  }
  return err instanceof Error && codelessConnectionFailures.has(err.message);
}

/**
 * Whether Postgres refused the values of a statement (class 22, data exception: e.g. 22021 or
 * 22P05 for a NUL character or a lone surrogate, 22008 a date out of range; class 23, integrity
 * constraint violation). The rows are at fault, not the database: the same statement without the
 * offending row succeeds.
 */
export function isDataError(err: unknown): boolean {
  const code = sqlState(err);
  return code.startsWith('22') || code.startsWith('23');
}
