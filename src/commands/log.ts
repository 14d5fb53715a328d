import { createHash, randomUUID } from 'node:crypto';
import type { Em, Orm } from '../db/orm.js';
import type { Queues } from '../jobs/queues.js';
import { enqueueCommands } from '../jobs/enqueue.js';
import { deleteWaitingCommands, findCommand, markEnqueued, findCommandKeys, insertCommands, listCommandItems, type CommandKey, type CommandState, type StoredError } from '../db/command-log.js';
import { isDatabaseUnavailable, isDataError } from '../db/errors.js';
import { IdempotencyKeyReused, IntakeError, ServiceUnavailable, ValidationFailed } from './errors.js';
import { Coalescer } from '../lib/batcher.js';
import { canonicalBody, isStorableText, pairTypes, type Command, type CommandType } from './schemas.js';

export type { CommandState } from '../db/command-log.js';

export interface Accepted {
  commandId: string;
  type: CommandType;
  state: CommandState;
  statusUrl: string;
  /** false when the commandId was already known with the same body (the reply is then 200). */
  created: boolean;
}

export const statusUrl = (commandId: string) => `/v1/commands/${encodeURIComponent(commandId)}`;

interface Row { id: string; partnerId: string; tokenName: string | null; type: CommandType; payload: Command; bodyHash: string; issuedAt: string | null }

/** One caller's commands. `batch`: they came as a batch (issue paths are then `commands.{i}.…`). */
export interface IntakeRequest { partnerId: string; tokenName: string | null; commands: Command[]; batch?: boolean }

/**
 * Writes commands to the command log and enqueues one job each, all or nothing: success means both
 * the log and the queue have them, and a failure leaves neither. A known commandId with the same
 * body is returned as it is (no second job). Refusals are IntakeError: IdempotencyKeyReused (the
 * commandId is known with another body), ValidationFailed (Postgres refused a value of the caller's
 * commands), ServiceUnavailable (the database or the queue cannot take them now).
 */
export async function acceptCommands(orm: Orm, queues: Queues, input: IntakeRequest): Promise<Accepted[]> {
  const [r] = await acceptGroup(orm, queues, [input]);
  if (r instanceof Error) throw r;
  return r!;
}

/** A request of a group failed on its own (a reused commandId, a value Postgres refused): the group is rolled back and its requests are accepted one by one. */
class GroupMemberFailed extends Error {}

const toRow = (input: IntakeRequest, c: Command, i: number): Row => {
  const commandId = c.commandId ?? randomUUID();
  const issuedAt = c.issuedAt ? new Date(c.issuedAt) : null;
  if (issuedAt && Number.isNaN(issuedAt.getTime())) throw new ValidationFailed([{ path: [...(input.batch ? ['commands', i] : []), 'issuedAt'].join('.'), message: 'must be an ISO-8601 instant' }]);
  return {
    id: commandId,
    partnerId: input.partnerId,
    tokenName: input.tokenName,
    type: c.type,
    payload: { ...c, commandId } as Command,
    bodyHash: createHash('sha256').update(canonicalBody(c)).digest('base64url'),
    issuedAt: issuedAt?.toISOString() ?? null,
  };
};

/** The path of the first string (value or key) in `value` that Postgres cannot store, or null. */
function unstorablePath(value: unknown, path: (string | number)[]): (string | number)[] | null {
  if (typeof value === 'string') return isStorableText(value) ? null : path;
  if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) {
      const found = unstorablePath(v, [...path, i]);
      if (found) return found;
    }
  } else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      const found = isStorableText(k) ? unstorablePath(v, [...path, k]) : [...path, k];
      if (found) return found;
    }
  }
  return null;
}

/**
 * The refusal of one request whose rows Postgres refused (a data error, SQLSTATE class 22 or 23):
 * its own input is at fault, so 400 naming the field when it is text Postgres cannot store.
 */
function refusedInput(input: IntakeRequest, cause: unknown): ValidationFailed {
  for (const [i, c] of input.commands.entries()) {
    const path = unstorablePath(c, input.batch ? ['commands', i] : []);
    if (path) return new ValidationFailed([{ path: path.join('.'), message: 'must not contain NUL characters or unpaired surrogates' }], undefined, { cause });
  }
  return new ValidationFailed([{ path: '', message: 'a value cannot be stored' }], undefined, { cause });
}

/**
 * acceptCommands for several requests at once (group commit: one transaction and one enqueue for
 * all), with one result per request, exactly as if each had been accepted alone, one after the
 * other: a failure of one request (IDEMPOTENCY_KEY_REUSED, a value Postgres refuses, any error that
 * is not the database being unavailable) never touches the others, since the group is then rolled
 * back and retried request by request. ServiceUnavailable (database or queue) is thrown for all.
 */
export async function acceptGroup(orm: Orm, queues: Queues, inputs: IntakeRequest[]): Promise<(Accepted[] | Error)[]> {
  let outcome: { results: Accepted[][]; toEnqueue: (Row & { seq: string })[] };
  const em0 = orm.em.fork();
  try {
    const rowsOf = inputs.map((input) => input.commands.map((c, i) => toRow(input, c, i)));
    const rows = rowsOf.flat();
    outcome = await em0.transactional(async (em) => {
      // Rows are inserted in arrival order: `seq`, each partner's order of application, follows it.
      const created = new Map((await insertCommands(em, rows)).map((c) => [c.id, c.seq]));
      const createdIds = new Set(created.keys());
      const existing = rows.filter((r) => !createdIds.has(r.id));
      const known = new Map<string, CommandKey>();
      for (const f of await findCommandKeys(em, existing.map((r) => r.id))) known.set(f.id, f);
      // In order: the first row of an id that this group inserted is the created one; any later row
      // of that id (same request or a later one) must have the same partner and body.
      const firstOf = new Map<string, Row>();
      const toEnqueue: (Row & { seq: string })[] = [];
      const results = rowsOf.map((reqRows) => reqRows.map((r): Accepted => {
        const prior = known.get(r.id);
        const first = firstOf.get(r.id);
        if (!first) firstOf.set(r.id, r);
        if (createdIds.has(r.id) && !first) {
          toEnqueue.push({ ...r, seq: created.get(r.id)! });
          return { commandId: r.id, type: r.type, state: 'waiting', statusUrl: statusUrl(r.id), created: true };
        }
        const same = prior ?? { partnerId: (first ?? r).partnerId, bodyHash: (first ?? r).bodyHash, state: 'waiting' as const };
        if (same.partnerId !== r.partnerId || same.bodyHash !== r.bodyHash) {
          if (inputs.length > 1) throw new GroupMemberFailed();
          throw new IdempotencyKeyReused(r.id);
        }
        return { commandId: r.id, type: r.type, state: same.state, statusUrl: statusUrl(r.id), created: false };
      }));
      // The last add failed and Redis has not answered since (a stall, an outage): a new command
      // is refused at once (503, rolled back) rather than held for the command timeout; a replay
      // of a known one needs no queue and is answered.
      if (toEnqueue.length && queues.gate.shut) {
        if (inputs.length > 1) throw new GroupMemberFailed();
        throw new ServiceUnavailable('queue', new Error('Redis has not answered since the last add failed'));
      }
      return { results, toEnqueue };
    });
  } catch (err) {
    if (isDatabaseUnavailable(err)) throw new ServiceUnavailable('database', err);
    if (inputs.length > 1) {
      // One by one, in arrival order, as if they had come alone: each gets its own reply.
      const each: (Accepted[] | Error)[] = [];
      for (const input of inputs) each.push(await acceptGroup(orm, queues, [input]).then((r) => r[0]!, (e: unknown) => e as Error));
      return each;
    }
    if (err instanceof IntakeError) return [err];
    if (isDataError(err)) return [refusedInput(inputs[0]!, err)];
    throw err;
  }
  // Committed first, so a worker never sees a job before its row. If Redis refuses the jobs, or
  // does not answer within the command timeout, the rows are taken back and the caller gets 503 (a
  // crash in between leaves rows the reconciler enqueues). A timed-out add may still have run in
  // Redis: its job finds no row and does nothing, and a new acceptance of the commandId gets a job
  // of its own (job ids carry the row's `seq`).
  const { results, toEnqueue } = outcome;
  if (toEnqueue.length) {
    try {
      await enqueueCommands(queues, toEnqueue);
    } catch (err) {
      queues.gate.addFailed();
      await deleteWaitingCommands(em0, toEnqueue.map((r) => r.id)).catch(() => undefined);
      throw new ServiceUnavailable('queue', err);
    }
    // Confirmed: a partner's run may now apply them with its own (see loadRun). If this write
    // fails, the rows count as confirmed once they are older than the confirmation grace.
    await markEnqueued(em0, toEnqueue.map((r) => r.id)).catch(() => undefined);
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
  error?: StoredError;
  items?: { clientHubId: string; employeeEmail: string; state: CommandState; outcome?: string; error?: StoredError }[];
}

const iso = (v: string | null) => (v == null ? undefined : new Date(v).toISOString());

/** The status of one command, from the command log (never from Redis, which may have forgotten the job). */
export async function getCommandStatus(em: Em, commandId: string): Promise<CommandStatus | null> {
  const row = await findCommand(em, commandId);
  if (!row) return null;
  const status: CommandStatus = {
    commandId: row.id,
    type: row.type,
    partnerId: row.partnerId,
    state: row.state,
    attempts: row.attempts,
    createdAt: iso(row.createdAt)!,
  };
  const finishedAt = iso(row.finishedAt);
  if (finishedAt) status.finishedAt = finishedAt;
  const issuedAt = iso(row.issuedAt);
  if (issuedAt) status.issuedAt = issuedAt;
  if (row.result != null) status.result = row.result;
  if (row.error != null) status.error = row.error;
  if (pairTypes.has(status.type as CommandType)) {
    const items = await listCommandItems(em, commandId);
    status.items = items.map((i) => ({
      clientHubId: i.hubId,
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
