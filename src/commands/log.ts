import { hash, randomUUID } from 'node:crypto';
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

/** `given`: the caller chose the commandId (only such an id can be logged already: ours are random UUIDs). */
interface Row { id: string; partnerId: string; tokenName: string | null; type: CommandType; payload: Command; bodyHash: string; issuedAt: string | null; given: boolean }

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
    // The one-shot hash (the same digest): createHash's object and stream cost ~2 µs more a command.
    bodyHash: hash('sha256', canonicalBody(c), 'base64url'),
    issuedAt: issuedAt?.toISOString() ?? null,
    given: c.commandId !== undefined,
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

/** What a group decided: each request's result (or its own refusal), and the rows it created, to enqueue. */
interface Decided { results: (Accepted[] | Error)[]; toEnqueue: (Row & { seq: string })[] }

/**
 * Inserts a group's rows and decides each request's result from what was created and what was
 * already logged: the first row of an id that this group inserted is the created one; any later row
 * of that id (same request or a later one), or a row of an id already logged, must have the same
 * partner and body. `refuse` says what becomes of a request that may not be accepted. The same
 * statement confirms the earlier groups' commands of `confirming` (see Confirmations).
 */
async function insertAndDecide(em: Em, rowsOf: Row[][], refuse: (err: IntakeError) => Error, confirming: readonly string[], inTransaction: boolean): Promise<Decided> {
  // Rows are inserted in arrival order: `seq`, each partner's order of application, follows it.
  const rows = rowsOf.length === 1 ? rowsOf[0]! : rowsOf.flat();
  const inserted = await insertCommands(em, rows, confirming, rows.filter((r) => r.given).map((r) => r.id));
  const created = new Map(inserted.created.map((c) => [c.id, c.seq]));
  const known = new Map(inserted.known.map((k) => [k.id, k]));
  // Rare: an id another intake committed while this statement ran (a client retrying at once) is
  // in neither list; it is read now. Written without a transaction, this group's new rows are
  // taken back if that read fails, so that no request gets an error for a row that stays.
  const unseen = rows.filter((r) => !created.has(r.id) && !known.has(r.id));
  if (unseen.length) {
    try {
      for (const f of await findCommandKeys(em, unseen.map((r) => r.id))) known.set(f.id, f);
    } catch (err) {
      if (!inTransaction) await deleteWaitingCommands(em, [...created.keys()]).catch(() => undefined);
      throw err;
    }
  }
  const firstOf = new Map<string, Row>();
  const toEnqueue: (Row & { seq: string })[] = [];
  const results = rowsOf.map((reqRows): Accepted[] | Error => {
    const accepted: Accepted[] = [];
    for (const r of reqRows) {
      const first = firstOf.get(r.id);
      if (!first) firstOf.set(r.id, r);
      const seq = created.get(r.id);
      if (seq !== undefined && !first) {
        toEnqueue.push({ ...r, seq });
        accepted.push({ commandId: r.id, type: r.type, state: 'waiting', statusUrl: statusUrl(r.id), created: true });
        continue;
      }
      const same = known.get(r.id) ?? { partnerId: (first ?? r).partnerId, bodyHash: (first ?? r).bodyHash, state: 'waiting' as const };
      if (same.partnerId !== r.partnerId || same.bodyHash !== r.bodyHash) return refuse(new IdempotencyKeyReused(r.id));
      accepted.push({ commandId: r.id, type: r.type, state: same.state, statusUrl: statusUrl(r.id), created: false });
    }
    return accepted;
  });
  return { results, toEnqueue };
}

/**
 * Where a group's confirmations go (`enqueued_at`: its jobs are in Redis). Alone (acceptCommands),
 * each group writes its own before it returns; the HTTP intake hands them to {@link Confirmations}.
 */
export interface ConfirmationSink {
  /** Confirms these commands; the group's results wait for the returned promise (written by then when `now`). */
  add(ids: string[], now: boolean): Promise<void>;
  /** Confirmations still to write, which the group's own insert writes along (given back if it fails). */
  take(): string[];
  giveBack(ids: string[]): void;
}

/** Each group writes its own confirmation, before it returns. */
const confirmAtOnce = (orm: Orm): ConfirmationSink => ({
  add: (ids) => markEnqueued(orm.em.fork(), ids),
  take: () => [],
  giveBack: () => undefined,
});

/**
 * acceptCommands for several requests at once (group commit: one insert and one enqueue for all),
 * with one result per request, exactly as if each had been accepted alone, one after the other: a
 * failure of one request (IDEMPOTENCY_KEY_REUSED, a value Postgres refuses, any error that is not
 * the database being unavailable) never touches the others. ServiceUnavailable (database or queue)
 * is thrown for all.
 *
 * A group whose requests hold one command each is written by one autocommitted statement (no
 * BEGIN/COMMIT round trips): each request is then all or nothing by itself, and a request that may
 * not be accepted (a reused commandId) created no row. A group with a multi-command request is
 * written in a transaction, rolled back when any request fails (its commands are all or none), and
 * then retried request by request. Measured on the intake bench (single commands, 32 connections,
 * ~9 requests a group): BEGIN + INSERT + COMMIT + the confirming UPDATE were ~13 ms of a ~16 ms
 * group on a busy event loop; the one INSERT (carrying the previous groups' confirmations) ~5 ms.
 */
export async function acceptGroup(orm: Orm, queues: Queues, inputs: IntakeRequest[], confirmations: ConfirmationSink = confirmAtOnce(orm)): Promise<(Accepted[] | Error)[]> {
  let outcome: Decided;
  const em0 = orm.em.fork();
  const confirming = confirmations.take();
  try {
    const rowsOf = inputs.map((input) => input.commands.map((c, i) => toRow(input, c, i)));
    // The gate shut (see below) is the transaction's business: a new command is then rolled back.
    const singles = !queues.gate.shut && inputs.every((input) => input.commands.length === 1);
    outcome = singles
      ? await insertAndDecide(em0, rowsOf, (err) => err, confirming, false)
      : await em0.transactional(async (em) => {
        const decided = await insertAndDecide(em, rowsOf, (err) => {
          if (inputs.length > 1) throw new GroupMemberFailed();
          throw err;
        }, confirming, true);
        // The last add failed and Redis has not answered since (a stall, an outage): a new command
        // is refused at once (503, rolled back) rather than held for the command timeout; a replay
        // of a known one needs no queue and is answered.
        if (decided.toEnqueue.length && queues.gate.shut) {
          if (inputs.length > 1) throw new GroupMemberFailed();
          throw new ServiceUnavailable('queue', new Error('Redis has not answered since the last add failed'));
        }
        return decided;
      });
  } catch (err) {
    // Nothing of the statement was written: the confirmations it carried go back.
    if (confirming.length) confirmations.giveBack(confirming);
    if (isDatabaseUnavailable(err)) throw new ServiceUnavailable('database', err);
    if (confirming.length) {
      // Tried again without them, so that they never decide the group's answer.
      return acceptGroup(orm, queues, inputs, { add: (ids, now) => confirmations.add(ids, now), take: () => [], giveBack: (ids) => confirmations.giveBack(ids) });
    }
    if (inputs.length > 1) {
      // One by one, in arrival order, as if they had come alone: each gets its own reply.
      const each: (Accepted[] | Error)[] = [];
      for (const input of inputs) each.push(await acceptGroup(orm, queues, [input], confirmations).then((r) => r[0]!, (e: unknown) => e as Error));
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
    // fails, the rows count as confirmed once they are older than the confirmation grace. A batch
    // is answered once confirmed, so a run started after its reply takes the whole batch at once.
    await confirmations.add(toEnqueue.map((r) => r.id), inputs.some((input) => input.batch)).catch(() => undefined);
  }
  return results;
}

/**
 * How long confirmations wait for a group's insert to carry them before they are written alone
 * (a quiet intake). A run of the partner's commands takes an unconfirmed command along only after
 * this (its own job applies it meanwhile), see loadRun.
 */
const CONFIRM_ALONE_AFTER_MS = 20;

/**
 * The HTTP intake's confirmations. Those of single posts are off the reply's path: the reply does
 * not wait for them (its row is committed and its job queued before; the confirmation only lets a
 * partner's run take the command along with an earlier one, and a lost one counts after the grace,
 * see loadRun). The next group's insert writes them in its own statement; when no group comes
 * within CONFIRM_ALONE_AFTER_MS they are written alone, one statement at a time. A group with a
 * batch writes its own (and any waiting) before it answers. Measured on the intake bench: the
 * confirmation was one autocommitted UPDATE (one round trip and WAL flush) per group on the
 * reply's path, ~4.7 ms of a ~16 ms group.
 */
class Confirmations implements ConfirmationSink {
  private pending: string[] = [];
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> | null = null;

  constructor(private readonly orm: Orm) {}

  add(ids: string[], now: boolean): Promise<void> {
    for (const id of ids) this.pending.push(id);
    if (now) return markEnqueued(this.orm.em.fork(), this.take());
    this.timer ??= setTimeout(() => this.writeAlone(), CONFIRM_ALONE_AFTER_MS);
    return Promise.resolve();
  }

  take(): string[] {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const ids = this.pending;
    this.pending = [];
    return ids;
  }

  giveBack(ids: string[]): void {
    void this.add(ids, false);
  }

  private writeAlone(): void {
    this.timer = null;
    if (this.writing || !this.pending.length) return;
    const writing = (async () => {
      while (this.pending.length) {
        const ids = this.take();
        await markEnqueued(this.orm.em.fork(), ids).catch(() => undefined);
      }
    })();
    this.writing = writing;
    void writing.finally(() => {
      if (this.writing === writing) this.writing = null;
    });
  }

  /** Resolves once every confirmation handed over so far is written (or has failed): at shutdown. */
  async flushed(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.writeAlone();
    while (this.writing) await this.writing;
  }
}

/** The intake of the HTTP API: concurrent requests in groups (group commit, see acceptGroup and Coalescer). */
export interface CommandIntake {
  submit(request: IntakeRequest): Promise<Accepted[]>;
  /** Resolves once the confirmations of every command accepted so far are written (at shutdown). */
  flushed(): Promise<void>;
}

/** Accepts concurrent requests in groups (group commit): see acceptGroup and Coalescer. */
export function commandIntake(orm: Orm, queues: Queues): CommandIntake {
  const confirmations = new Confirmations(orm);
  const groups = new Coalescer<IntakeRequest, Accepted[]>((inputs) => acceptGroup(orm, queues, inputs, confirmations), { concurrency: 2, maxWeight: 1000, weigh: (r) => r.commands.length });
  return { submit: (request) => groups.submit(request), flushed: () => confirmations.flushed() };
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
