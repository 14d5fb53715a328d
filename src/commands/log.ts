import { createHash, randomUUID } from 'node:crypto';
import type { Em, Orm } from '../db/orm.js';
import type { Queues } from '../queues/index.js';
import { jobIds } from '../queues/index.js';
import { HttpError, isDatabaseUnavailable, serviceUnavailable } from './errors.js';
import { canonicalBody, pairTypes, type Command, type CommandType } from './schemas.js';

export type CommandState = 'waiting' | 'active' | 'completed' | 'failed';

export interface Accepted {
  commandId: string;
  type: CommandType;
  state: CommandState;
  statusUrl: string;
  /** false when the commandId was already known with the same body (the reply is then 200). */
  created: boolean;
}

export const statusUrl = (commandId: string) => `/v1/commands/${encodeURIComponent(commandId)}`;

interface Row { id: string; partnerId: string; type: CommandType; payload: Command; bodyHash: string; issuedAt: Date | null }

/**
 * Writes commands to the command log and enqueues one job each, all or nothing: a 2xx means both
 * the log and the queue have them, and a failure (503) leaves neither. A known commandId with the same body is returned as it is
 * (no second job); with another body the whole call fails with IDEMPOTENCY_KEY_REUSED.
 */
export async function acceptCommands(
  orm: Orm,
  queues: Queues,
  input: { partnerId: string; tokenName: string | null; commands: Command[] },
): Promise<Accepted[]> {
  const rows: Row[] = input.commands.map((c) => {
    const commandId = c.commandId ?? randomUUID();
    const payload = { ...c, commandId } as Command;
    return {
      id: commandId,
      partnerId: input.partnerId,
      type: c.type,
      payload,
      bodyHash: createHash('sha256').update(canonicalBody(c)).digest('base64url'),
      issuedAt: c.issuedAt ? new Date(c.issuedAt) : null,
    };
  });
  let outcome: { result: Accepted[]; toEnqueue: Row[] };
  const em0 = orm.em.fork();
  try {
    outcome = await em0.transactional(async (em) => {
      const inserted = await em.execute<{ id: string }[]>(
        `insert into command (id, partner_id, type, payload, body_hash, issued_at, token_name, enqueued_at)
         select t.id, ?, t.type, t.payload, t.body_hash, t.issued_at, ?, now()
           from jsonb_to_recordset(?::jsonb) as t(id text, type text, payload jsonb, body_hash text, issued_at timestamptz)
         on conflict (id) do nothing
         returning id`,
        [input.partnerId, input.tokenName, JSON.stringify(rows.map((r) => ({ id: r.id, type: r.type, payload: r.payload, body_hash: r.bodyHash, issued_at: r.issuedAt?.toISOString() ?? null })))],
      );
      const createdIds = new Set(inserted.map((r) => r.id));
      const existing = rows.filter((r) => !createdIds.has(r.id));
      const known = new Map<string, { partner_id: string; body_hash: string; state: CommandState }>();
      if (existing.length) {
        const found = await em.execute<{ id: string; partner_id: string; body_hash: string; state: CommandState }[]>(
          'select id, partner_id, body_hash, state from command where id in (select jsonb_array_elements_text(?::jsonb))',
          [JSON.stringify(existing.map((r) => r.id))],
        );
        for (const f of found) known.set(f.id, f);
      }
      const seen = new Set<string>();
      const result: Accepted[] = [];
      const toEnqueue: Row[] = [];
      for (const r of rows) {
        const prior = known.get(r.id);
        const firstHere = createdIds.has(r.id) && !seen.has(r.id);
        seen.add(r.id);
        if (firstHere) {
          toEnqueue.push(r);
          result.push({ commandId: r.id, type: r.type, state: 'waiting', statusUrl: statusUrl(r.id), created: true });
          continue;
        }
        const first = rows.find((x) => x.id === r.id);
        const sameBody = prior ? prior.partner_id === r.partnerId && prior.body_hash === r.bodyHash : first?.bodyHash === r.bodyHash;
        if (!sameBody) {
          throw new HttpError(409, 'IDEMPOTENCY_KEY_REUSED', `commandId "${r.id}" was already used with a different body.`, { commandId: r.id });
        }
        result.push({ commandId: r.id, type: r.type, state: prior?.state ?? 'waiting', statusUrl: statusUrl(r.id), created: false });
      }
      return { result, toEnqueue };
    });
  } catch (err) {
    if (err instanceof HttpError) throw err;
    if (isDatabaseUnavailable(err)) throw serviceUnavailable('database', err);
    throw err;
  }
  // Committed first, so a worker never sees a job before its row. If Redis refuses the jobs, the
  // rows are taken back and the caller gets 503 (a crash in between leaves rows the reconciler enqueues).
  const { result, toEnqueue } = outcome;
  if (toEnqueue.length) {
    try {
      await queues.commands.addBulk(toEnqueue.map((r) => ({ name: r.type, data: { commandId: r.id }, opts: { jobId: jobIds.command(r.id) } })));
    } catch (err) {
      await em0.execute(`delete from command where id in (select jsonb_array_elements_text(?::jsonb)) and state = 'waiting'`, [JSON.stringify(toEnqueue.map((r) => r.id))])
        .catch(() => undefined);
      throw serviceUnavailable('queue', err);
    }
  }
  return result;
}

export interface CommandStatus {
  commandId: string;
  type: string;
  partnerId: string;
  state: CommandState;
  attempts: number;
  createdAt: string;
  finishedAt?: string;
  issuedAt?: string;
  result?: unknown;
  error?: { code: string; message: string };
  items?: { clientHubId: string; employeeEmail: string; state: CommandState; outcome?: string; error?: { code: string; message: string } }[];
}

const iso = (v: unknown) => (v == null ? undefined : new Date(v as string).toISOString());

/** The status of one command, from the command log (never from Redis, which may have forgotten the job). */
export async function getCommandStatus(em: Em, commandId: string): Promise<CommandStatus | null> {
  const [row] = await em.execute<Record<string, unknown>[]>(
    'select id, partner_id, type, state, attempts, created_at, finished_at, issued_at, result, error from command where id = ?',
    [commandId],
  );
  if (!row) return null;
  const status: CommandStatus = {
    commandId: row.id as string,
    type: row.type as string,
    partnerId: row.partner_id as string,
    state: row.state as CommandState,
    attempts: row.attempts as number,
    createdAt: iso(row.created_at)!,
  };
  const finishedAt = iso(row.finished_at);
  if (finishedAt) status.finishedAt = finishedAt;
  const issuedAt = iso(row.issued_at);
  if (issuedAt) status.issuedAt = issuedAt;
  if (row.result != null) status.result = row.result;
  if (row.error != null) status.error = row.error as { code: string; message: string };
  if (pairTypes.has(status.type as CommandType)) {
    const items = await em.execute<{ hub_id: string; email: string; state: CommandState; outcome: string | null; error: { code: string; message: string } | null }[]>(
      'select hub_id, email, state, outcome, error from command_item where command_id = ? order by idx',
      [commandId],
    );
    status.items = items.map((i) => ({
      clientHubId: i.hub_id,
      employeeEmail: i.email,
      state: i.state,
      ...(i.outcome ? { outcome: i.outcome } : {}),
      ...(i.error ? { error: i.error } : {}),
    }));
    const counts: Record<string, number> = {};
    for (const i of items) {
      const k = i.state === 'failed' ? 'failed' : (i.outcome ?? i.state);
      counts[k] = (counts[k] ?? 0) + 1;
    }
    status.result = { pairs: items.length, outcomes: counts };
    const firstFailure = items.find((i) => i.state === 'failed');
    if (status.state === 'failed' && firstFailure?.error) status.error = firstFailure.error;
  }
  return status;
}
