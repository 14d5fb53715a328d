import { createHash, randomUUID } from 'node:crypto';
import type { Em, Orm } from '../db/orm.js';
import type { Queues } from '../queues/index.js';
import { jobIds } from '../queues/index.js';
import { HttpError, isDatabaseUnavailable, serviceUnavailable } from './errors.js';
import { Coalescer } from '../lib/batcher.js';
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

interface Row { id: string; partnerId: string; tokenName: string | null; type: CommandType; payload: Command; bodyHash: string; issuedAt: Date | null }

export interface IntakeRequest { partnerId: string; tokenName: string | null; commands: Command[] }

/**
 * Writes commands to the command log and enqueues one job each, all or nothing: a 2xx means both
 * the log and the queue have them, and a failure (503) leaves neither. A known commandId with the same body is returned as it is
 * (no second job); with another body the whole call fails with IDEMPOTENCY_KEY_REUSED.
 */
export async function acceptCommands(orm: Orm, queues: Queues, input: IntakeRequest): Promise<Accepted[]> {
  const [r] = await acceptGroup(orm, queues, [input]);
  if (r instanceof Error) throw r;
  return r!;
}

/** One request of a group reused a commandId with another body: the group is rolled back and its requests are accepted one by one. */
class GroupConflict extends Error {}

const toRow = (input: IntakeRequest, c: Command): Row => {
  const commandId = c.commandId ?? randomUUID();
  return {
    id: commandId,
    partnerId: input.partnerId,
    tokenName: input.tokenName,
    type: c.type,
    payload: { ...c, commandId } as Command,
    bodyHash: createHash('sha256').update(canonicalBody(c)).digest('base64url'),
    issuedAt: c.issuedAt ? new Date(c.issuedAt) : null,
  };
};

/**
 * acceptCommands for several requests at once (group commit: one transaction and one `addBulk` for
 * all), with one result per request, exactly as if each had been accepted alone, one after the
 * other: a 409 of one request never touches the others (the group is then retried request by
 * request), and a 503 (database or queue unavailable) is thrown for all.
 */
export async function acceptGroup(orm: Orm, queues: Queues, inputs: IntakeRequest[]): Promise<(Accepted[] | Error)[]> {
  const rowsOf = inputs.map((input) => input.commands.map((c) => toRow(input, c)));
  const rows = rowsOf.flat();
  let outcome: { results: Accepted[][]; toEnqueue: Row[] };
  const em0 = orm.em.fork();
  try {
    outcome = await em0.transactional(async (em) => {
      // Rows are inserted in arrival order: `seq`, each partner's order of application, follows it.
      const inserted = await em.execute<{ id: string }[]>(
        `insert into command (id, partner_id, type, payload, body_hash, issued_at, token_name, enqueued_at)
         select t.id, t.partner_id, t.type, t.payload, t.body_hash, t.issued_at, t.token_name, now()
           from jsonb_to_recordset(?::jsonb) as t(id text, partner_id text, type text, payload jsonb, body_hash text, issued_at timestamptz, token_name text)
         on conflict (id) do nothing
         returning id`,
        [JSON.stringify(rows.map((r) => ({ id: r.id, partner_id: r.partnerId, type: r.type, payload: r.payload, body_hash: r.bodyHash, issued_at: r.issuedAt?.toISOString() ?? null, token_name: r.tokenName })))],
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
      // In order: the first row of an id that this group inserted is the created one; any later row
      // of that id (same request or a later one) must have the same partner and body.
      const firstOf = new Map<string, Row>();
      const toEnqueue: Row[] = [];
      const results = rowsOf.map((reqRows) => reqRows.map((r): Accepted => {
        const prior = known.get(r.id);
        const first = firstOf.get(r.id);
        if (!first) firstOf.set(r.id, r);
        if (createdIds.has(r.id) && !first) {
          toEnqueue.push(r);
          return { commandId: r.id, type: r.type, state: 'waiting', statusUrl: statusUrl(r.id), created: true };
        }
        const same = prior ?? { partner_id: (first ?? r).partnerId, body_hash: (first ?? r).bodyHash, state: 'waiting' as const };
        if (same.partner_id !== r.partnerId || same.body_hash !== r.bodyHash) {
          if (inputs.length > 1) throw new GroupConflict();
          throw new HttpError(409, 'IDEMPOTENCY_KEY_REUSED', `commandId "${r.id}" was already used with a different body.`, { commandId: r.id });
        }
        return { commandId: r.id, type: r.type, state: same.state, statusUrl: statusUrl(r.id), created: false };
      }));
      return { results, toEnqueue };
    });
  } catch (err) {
    if (err instanceof GroupConflict) {
      // One by one, as if they had come alone: each gets its own reply, a 503 included.
      const each: (Accepted[] | Error)[] = [];
      for (const input of inputs) each.push(await acceptGroup(orm, queues, [input]).then((r) => r[0]!, (e: unknown) => e as Error));
      return each;
    }
    if (err instanceof HttpError && inputs.length === 1) return [err];
    if (isDatabaseUnavailable(err)) throw serviceUnavailable('database', err);
    throw err;
  }
  // Committed first, so a worker never sees a job before its row. If Redis refuses the jobs, the
  // rows are taken back and the caller gets 503 (a crash in between leaves rows the reconciler enqueues).
  const { results, toEnqueue } = outcome;
  if (toEnqueue.length) {
    try {
      await queues.commands.addBulk(toEnqueue.map((r) => ({ name: r.type, data: { commandId: r.id }, opts: { jobId: jobIds.command(r.id) } })));
    } catch (err) {
      await em0.execute(`delete from command where id in (select jsonb_array_elements_text(?::jsonb)) and state = 'waiting'`, [JSON.stringify(toEnqueue.map((r) => r.id))])
        .catch(() => undefined);
      throw serviceUnavailable('queue', err);
    }
  }
  return results;
}

/** Accepts concurrent requests in groups (group commit): see acceptGroup and Coalescer. */
export const commandIntake = (orm: Orm, queues: Queues) =>
  new Coalescer<IntakeRequest, Accepted[]>((inputs) => acceptGroup(orm, queues, inputs), { concurrency: 2, maxWeight: 1000, weigh: (r) => r.commands.length });

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
