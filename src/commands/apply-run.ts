import type { Em } from '../db/orm.js';
import type { StoredError } from '../db/command-log.js';
import { pairTypes, type Command, type CommandType } from './schemas.js';
import { handlers, type HandlerEnv, type HandlerResult } from './handlers.js';
import { applyPairBatch, type BatchPair, type RequestSettings } from './apply-pairs.js';
import {
  commandSavepoint, insertDecidedItems, lockRun, releaseCommandSavepoint, rollbackToCommandSavepoint, settleRun, type DecidedItem, type RunSettlement,
} from '../db/command-progress.js';
import { insertEvents } from '../db/webhook-store.js';
import { commandEvent, type NewEvent } from '../webhooks/events.js';
import { DomainError } from '../domain/errors.js';

/**
 * A run: a partner's consecutive waiting commands, applied in their order (`seq`) in one
 * transaction by whichever command job gets the partner's turn. Each command keeps its own state,
 * result and failure; the other commands' jobs find their command settled and finish at once.
 *
 * What a run holds: non-pair commands (their handlers, in order) and pair commands of exactly one
 * pair whose items were never written (their pairs decided together by the pair batch machinery,
 * set-based). A pair command of several pairs ends the run: it fans out into range jobs as before.
 */

/** A command of a run, validated. */
export interface RunMember {
  id: string;
  seq: string;
  partnerId: string;
  type: CommandType;
  command: Command;
  issuedAt: Date | null;
}

/** How a command takes part in a run: its handler, its one pair, or not at all (it ends the run). */
export function runRole(type: CommandType, command: Command, itemsTotal: number): 'handler' | 'pair' | null {
  if (!pairTypes.has(type)) return 'handler';
  const c = command as { clientHubIds: string[]; employeeEmails: string[] };
  return itemsTotal === 0 && c.clientHubIds.length === 1 && c.employeeEmails.length === 1 ? 'pair' : null;
}

/** A command as the run settled it. `refusedPair`: a pair command whose one pair was refused (its pair job shows the failure). */
export interface RunSettled {
  id: string;
  seq: string;
  type: CommandType;
  state: 'completed' | 'failed';
  result: Record<string, unknown> | null;
  error: StoredError | null;
  refusedPair: boolean;
}

export interface RunResult {
  /** The commands settled, in order (a command settled by somebody else meanwhile is not among them). */
  settled: RunSettled[];
  /** Outbox rows written unclaimed: one mail job each after the commit. */
  mailIds: string[];
  /** Outbox rows written claimed (`mailClaimMs`): the caller sends them right after the commit. */
  claimedMailIds: string[];
}

export interface RunEnv {
  now: Date;
  renewalAlertDays: number;
  settings: RequestSettings;
  /** Grant emails are written claimed for this long, for the caller to send right after the commit (null: mail jobs). */
  mailClaimMs: number | null;
  /** The command whose job runs the run: its attempt is already counted. */
  headId: string;
  /**
   * Each non-pair command inside a savepoint, so a refused one is undone alone and the run goes
   * on. Without it a refusal throws its DomainError and the caller runs the run again with it.
   */
  oneByOne: boolean;
}

/** Types whose handlers write webhook events of their own: the command events before them are written first, to keep the partner's events in order. */
const eventfulHandlers = new Set<CommandType>(['employee.remove', 'client.upsert', 'client.terminate']);

const singlePair = (m: RunMember) => {
  const c = m.command as { clientHubIds: string[]; employeeEmails: string[] };
  return { hubId: c.clientHubIds[0]!, email: c.employeeEmails[0]! };
};

/**
 * Applies a run in the caller's transaction, in order: the commands' rows are locked first (in
 * order; one settled meanwhile is skipped), then each stretch of consecutive single-pair commands
 * is decided as one pair batch (a later pair sees the earlier ones, `issuedAt` supersedes as for
 * any batch) and each non-pair command runs its handler, so every command sees the effect of those
 * before it. Then, set-based: the pair commands' items with their results, every command's state,
 * result and failure, and the `command.completed` / `command.failed` events. A refused pair fails
 * its command alone; a refused non-pair command fails alone when `oneByOne`, else its DomainError
 * is thrown (the caller runs the run again one by one). Any other error aborts the run whole.
 */
export async function applyRun(tx: Em, members: readonly RunMember[], env: RunEnv): Promise<RunResult> {
  const open = new Set(await lockRun(tx, members.map((m) => m.id)));
  const todo = members.filter((m) => open.has(m.id));
  const settled: RunSettled[] = [];
  const items: DecidedItem[] = [];
  const mailIds: string[] = [];
  const claimedMailIds: string[] = [];
  let events: NewEvent[] = [];
  const flushEvents = async () => {
    await insertEvents(tx, events);
    events = [];
  };
  const settle = (m: RunMember, s: Omit<RunSettled, 'id' | 'seq' | 'type'>) => {
    settled.push({ id: m.id, seq: m.seq, type: m.type, ...s });
    events.push(commandEvent(m.partnerId, {
      commandId: m.id, commandType: m.type, state: s.state,
      ...(s.result !== null ? { result: s.result } : {}), ...(pairTypes.has(m.type) || s.error ? { error: s.error } : {}),
    }));
  };

  for (let i = 0; i < todo.length;) {
    const m = todo[i]!;
    if (pairTypes.has(m.type)) {
      let j = i;
      while (j < todo.length && pairTypes.has(todo[j]!.type)) j++;
      const stretch = todo.slice(i, j);
      await flushEvents();
      await applyPairStretch(tx, stretch, env, { settle, items, mailIds, claimedMailIds });
      i = j;
      continue;
    }
    if (eventfulHandlers.has(m.type)) await flushEvents();
    const out = await runOne(tx, m, env);
    if (out.ok) {
      settle(m, { state: 'completed', result: out.value.result, error: null, refusedPair: false });
      mailIds.push(...out.value.outboxIds);
    } else {
      settle(m, { state: 'failed', result: null, error: out.error.toJSON(), refusedPair: false });
    }
    i++;
  }
  await insertDecidedItems(tx, items);
  const itemsOf = new Set(items.map((it) => it.commandId));
  await settleRun(tx, settled.map((s): RunSettlement => ({
    id: s.id, state: s.state, result: s.result, error: s.error, itemsTotal: itemsOf.has(s.id) ? 1 : 0, counted: s.id === env.headId,
  })));
  await flushEvents();
  return { settled, mailIds, claimedMailIds };
}

/** Runs one non-pair handler; a refusal is returned (one by one, rolled back to its savepoint) or thrown. */
async function runOne(tx: Em, m: RunMember, env: RunEnv): Promise<{ ok: true; value: HandlerResult } | { ok: false; error: DomainError }> {
  const handler = handlers[m.type as keyof typeof handlers] as (tx: Em, c: Command, env: HandlerEnv) => Promise<HandlerResult>;
  const henv: HandlerEnv = { partnerId: m.partnerId, commandId: m.id, issuedAt: m.issuedAt, now: env.now, renewalAlertDays: env.renewalAlertDays };
  if (!env.oneByOne) return { ok: true, value: await handler(tx, m.command, henv) };
  await commandSavepoint(tx);
  try {
    const value = await handler(tx, m.command, henv);
    await releaseCommandSavepoint(tx);
    return { ok: true, value };
  } catch (err) {
    if (!(err instanceof DomainError)) throw err;
    await rollbackToCommandSavepoint(tx);
    return { ok: false, error: err };
  }
}

/** A stretch of single-pair commands: their pairs decided in order as one pair batch. */
async function applyPairStretch(
  tx: Em,
  stretch: readonly RunMember[],
  env: RunEnv,
  into: { settle: (m: RunMember, s: Omit<RunSettled, 'id' | 'seq' | 'type'>) => void; items: DecidedItem[]; mailIds: string[]; claimedMailIds: string[] },
): Promise<void> {
  const pairs: BatchPair[] = stretch.map((m) => ({ partnerId: m.partnerId, ...singlePair(m), commandId: m.id, idx: 0, issuedAt: m.issuedAt, type: m.type as BatchPair['type'] }));
  const outcomes = await applyPairBatch(tx, pairs, env.settings, env.mailClaimMs, env.now);
  stretch.forEach((m, k) => {
    const p = pairs[k]!;
    const o = outcomes[k]!;
    if (o.ok) {
      const outcome = o.decision.outcome;
      into.items.push({ commandId: m.id, idx: 0, hubId: p.hubId, email: p.email, state: 'completed', outcome, error: null });
      into.settle(m, { state: 'completed', result: { pairs: 1, outcomes: { [outcome]: 1 }, outcome }, error: null, refusedPair: false });
      if (o.outboxId) (env.mailClaimMs === null ? into.mailIds : into.claimedMailIds).push(o.outboxId);
    } else {
      const error = o.error.toJSON();
      into.items.push({ commandId: m.id, idx: 0, hubId: p.hubId, email: p.email, state: 'failed', outcome: null, error });
      into.settle(m, { state: 'failed', result: { pairs: 1, outcomes: { failed: 1 }, outcome: 'failed' }, error, refusedPair: true });
    }
  });
}
