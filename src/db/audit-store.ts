import { sql } from 'kysely';
import type { StoredError } from './command-log.js';
import type { Em } from './orm.js';

/**
 * The audit trail: the command log read as who did what and when, newest first, partner-isolated.
 */

/** Filters of the audit trail; each one absent means "any". */
export interface AuditFilter {
  /** Commands accepted at or after this instant. */
  from?: Date;
  /** Commands accepted before this instant. */
  to?: Date;
  type?: string;
  /** An employee email (lower-cased) named by the command: `email`, `employeeEmail` or one of `employeeEmails`. */
  email?: string;
  /** Commands older than this `seq` (the cursor of the next page). */
  beforeSeq?: number;
  limit: number;
}

/** One command of the audit trail (`seq` a bigint as a string; timestamps as Postgres writes them). */
export interface AuditRow {
  seq: string;
  id: string;
  type: string;
  tokenName: string | null;
  createdAt: string;
  finishedAt: string | null;
  state: string;
  error: StoredError | null;
  result: unknown;
  payload: Record<string, unknown>;
}

/** The partner's commands matching the filter, newest first, at most `limit`. */
export async function listAuditRows(em: Em, partnerId: string, f: AuditFilter): Promise<AuditRow[]> {
  const { from, to, type, email, beforeSeq } = f;
  return em.getKysely()
    .selectFrom('command')
    .select(['seq', 'id', 'type', 'token_name as tokenName', 'created_at as createdAt', 'finished_at as finishedAt', 'state', 'error', 'result', 'payload'])
    .where('partner_id', '=', partnerId)
    .$if(from !== undefined, (q) => q.where('created_at', '>=', from!))
    .$if(to !== undefined, (q) => q.where('created_at', '<', to!))
    .$if(type !== undefined, (q) => q.where('type', '=', type!))
    .$if(email !== undefined, (q) => q.where(sql<boolean>`jsonb_path_exists(payload,
      '$ ? (@.email == $e || @.employeeEmail == $e || @.employeeEmails[*] == $e)', jsonb_build_object('e', ${email!}::text))`))
    .$if(beforeSeq !== undefined, (q) => q.where('seq', '<', String(beforeSeq)))
    .orderBy('seq', 'desc')
    .limit(f.limit)
    .$castTo<AuditRow>()
    .execute();
}
