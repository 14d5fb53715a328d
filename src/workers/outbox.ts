import type { Em } from '../db/orm.js';
import type { AppContext } from '../context.js';
import { jobIds } from '../queues/index.js';

/**
 * Writes an outbox row in the caller's transaction. The notification key makes it once-only:
 * writing the same key again returns null and sends nothing.
 */
export async function writeOutbox(tx: Em, row: { key: string; kind: string; partnerId: string; payload: Record<string, unknown> }): Promise<string | null> {
  const [r] = await tx.execute<{ id: string }[]>(
    `insert into outbox (notification_key, kind, partner_id, payload) values (?, ?, ?, ?::jsonb)
     on conflict (notification_key) do nothing returning id`,
    [row.key, row.kind, row.partnerId, JSON.stringify(row.payload)],
  );
  return r ? String(r.id) : null;
}

/** After commit: one mail job per outbox row (after `delayMs`, if given). A failure here is repaired by the reconciler. */
export async function enqueueMail(ctx: Pick<AppContext, 'queues' | 'logger'>, outboxIds: string[], delayMs = 0): Promise<void> {
  if (!outboxIds.length) return;
  try {
    await ctx.queues.mail.addBulk(outboxIds.map((id) => ({ name: 'send', data: { outboxId: id }, opts: { jobId: jobIds.mail(id), ...(delayMs > 0 ? { delay: delayMs } : {}) } })));
  } catch (err) {
    ctx.logger.warn({ err, outboxIds }, 'mail jobs not enqueued; the reconciler will');
  }
}
