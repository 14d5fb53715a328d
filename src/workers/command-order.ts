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
