import type { AppContext } from '../context.js';
import type { Em } from '../db/orm.js';
import { commandOrder, hasEarlierUnfinished, nextUnfinished } from '../db/command-progress.js';
import { jobIds } from '../jobs/contracts.js';

/**
 * Per-partner order: the commands of one partner are applied in the order they were accepted
 * (`seq`); partners proceed in parallel. A command whose partner has an earlier unfinished command
 * waits (its job is delayed); the command that finishes promotes the next one at once.
 */

/** Whether the command must wait for an earlier unfinished command of its partner. */
export async function mustWait(em: Em, cmd: { partnerId: string; seq: string }): Promise<boolean> {
  return hasEarlierUnfinished(em, cmd.partnerId, cmd.seq);
}

/**
 * A command of the partner finished: promote the partner's next waiting command, whose job is
 * delayed while it waits for its turn. Best effort: the delayed job wakes up by itself anyway.
 */
export async function wakeNext(ctx: Pick<AppContext, 'orm' | 'queues'>, partnerId: string, seq: string): Promise<void> {
  try {
    const next = await nextUnfinished(ctx.orm.em.fork(), partnerId, seq);
    if (!next) return;
    const job = await ctx.queues.commands.getJob(jobIds.command(next.id, next.seq));
    if (job && (await job.isDelayed())) await job.promote();
  } catch {
    /* the job is not delayed (any more), or Redis blinked: its fallback delay wakes it */
  }
}

/** {@link wakeNext} after the command `commandId`, wherever it stands. */
export async function wakeNextAfter(ctx: Pick<AppContext, 'orm' | 'queues'>, commandId: string): Promise<void> {
  const c = await commandOrder(ctx.orm.em.fork(), commandId);
  if (c) await wakeNext(ctx, c.partner_id, String(c.seq));
}

/** A command that a run of this process settled, as its own job answers it. */
export interface SettledHere {
  seq: string;
  type: string;
  state: 'completed' | 'failed';
  result: unknown;
  error: { code: string; message: string } | null;
  /** A pair command whose pair was refused: its pair job shows the failure, the command job completes. */
  refusedPair: boolean;
}

/**
 * This process's side of the per-partner order: one command job of a partner at a time (the others
 * of that partner wait here, in arrival order, instead of being delayed in Redis), and the commands
 * that its runs settled lately, so their own jobs finish without a database read.
 */
export class PartnerTurns {
  private readonly tails = new Map<string, Promise<void>>();
  private readonly recent = new Map<string, SettledHere>();

  /** @param remember how many settled commands are remembered (the oldest are forgotten first). */
  constructor(private readonly remember = 20_000) {}

  /**
   * Runs `fn` when the partner's earlier jobs in this process are done with their turn. `fn` is told
   * whether it waited (what it read before may be stale).
   */
  async inTurn<T>(partnerId: string, fn: (waited: boolean) => Promise<T>): Promise<T> {
    const prev = this.tails.get(partnerId);
    let release!: () => void;
    const mine = new Promise<void>((resolve) => { release = resolve; });
    const tail = prev ? prev.then(() => mine) : mine;
    this.tails.set(partnerId, tail);
    try {
      if (prev) await prev;
      return await fn(prev !== undefined);
    } finally {
      release();
      if (this.tails.get(partnerId) === tail) this.tails.delete(partnerId);
    }
  }

  /** Commands a run of this process committed. */
  settledNow(commands: readonly (SettledHere & { id: string })[]): void {
    for (const { id, ...s } of commands) {
      this.recent.delete(id);
      this.recent.set(id, s);
    }
    for (const id of this.recent.keys()) {
      if (this.recent.size <= this.remember) break;
      this.recent.delete(id);
    }
  }

  /** The command, if a run of this process settled it lately. */
  settled(commandId: string): SettledHere | undefined {
    return this.recent.get(commandId);
  }
}
