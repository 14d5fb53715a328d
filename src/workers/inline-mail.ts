import type { Transporter } from 'nodemailer';
import type { AppContext } from '../context.js';
import { handOver, loadOutbox, markSent, type StoredError } from '../db/outbox-store.js';
import { firstBackoffMs } from '../jobs/contracts.js';
import { enqueueMailAfterCommit } from '../jobs/enqueue.js';
import { classify } from './failures.js';
import { sendRow } from './mail.js';

/** How long rows sent right after their commit stay claimed by that worker: the reconciler leaves them alone meanwhile. */
export const INLINE_CLAIM_MS = 120_000;
/**
 * An email whose send has not started this long after its commit goes to a mail job instead. Kept
 * well inside the claim, and below the job lock: a range job is only taken over (and its claims
 * released, see releaseClaims) after its lock lapsed, by which time its worker starts no more sends.
 */
export const inlineStartDeadlineMs = (jobLockMs: number) => Math.min(20_000, Math.floor(jobLockMs / 3));
/** Sent rows are marked in chunks of this many as they go (see InlineMail.send). */
const MARK_EVERY = 32;
/** After a transient SMTP failure, new emails go through mail jobs (with their backoff) for this long. */
const INLINE_PAUSE_MS = 15_000;

/**
 * Sends the emails a pair batch just committed, from the worker that committed them: no mail job
 * per email while SMTP answers. The rows were written claimed (claimed_until), so the reconciler
 * does not hand them to a second sender unless this worker dies. Whatever is not sent here goes
 * to an ordinary mail job: a transient failure (recorded on the row, retried after the first
 * backoff, and inline sending pauses), a 5xx (the row is failed; the job shows the failure), or a
 * send that could not start in time. At most `maxInFlight` sends at once per process, on a
 * transport of its own with as many connections, so a send that starts gets a connection at once.
 */
export class InlineMail {
  private pausedUntil = 0;
  private inFlight = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly ctx: Pick<AppContext, 'config' | 'orm' | 'queues' | 'logger'>,
    private readonly transport: Transporter,
    private readonly maxInFlight: number,
    private readonly onSent?: (n: number) => void,
  ) {}

  /** Whether rows committed now should be claimed and sent right after the commit (else: mail jobs). */
  get active(): boolean {
    return Date.now() >= this.pausedUntil;
  }

  async deliver(outboxIds: string[], committedAt: number): Promise<void> {
    if (!outboxIds.length) return;
    const sent = new Set<string>();
    try {
      await this.send(outboxIds, committedAt, sent);
    } catch (err) {
      // Rows already sent stay claimed (if they could not be marked, the reconciler sends them
      // again once the claim runs out, same Message-ID); the others go to mail jobs now.
      this.ctx.logger.warn({ err, outboxIds }, 'inline email delivery failed; handing the unsent rows to mail jobs');
      await enqueueMailAfterCommit(this.ctx, outboxIds.filter((id) => !sent.has(id)));
    }
  }

  private async send(outboxIds: string[], committedAt: number, sentIds: Set<string>): Promise<void> {
    const rows = await loadOutbox(this.ctx.orm.em.fork(), outboxIds);
    const deadline = committedAt + inlineStartDeadlineMs(this.ctx.config.jobLockMs);
    // Sent rows are marked as they go, MARK_EVERY at a time, not once at the end: a range holds up
    // to PAIR_RANGE_SIZE (256) emails, and every row sent but not yet marked is sent again (same
    // Message-ID, but a second email to its recipient) if this worker dies. Marks are written one
    // chunk after the other; one that fails (after its retries) fails the delivery at the end.
    let toMark: { id: string; messageId: string }[] = [];
    let marking: Promise<void> = Promise.resolve();
    let markError: unknown = null;
    const flush = () => {
      const chunk = toMark;
      toMark = [];
      if (!chunk.length) return marking;
      marking = marking.then(() => withRetries(() => markSent(this.ctx.orm.em.fork(), chunk), 3, 250)).then(
        () => this.onSent?.(chunk.length),
        (err: unknown) => { markError ??= err; },
      );
      return marking;
    };
    const handed: { id: string; state: 'pending' | 'failed'; error: StoredError | null; tried: number; delayMs: number }[] = [];
    await Promise.all(rows.filter((r) => r.state === 'pending').map(async (row) => {
      await this.acquire();
      try {
        if (!this.active || Date.now() > deadline) {
          handed.push({ id: String(row.id), state: 'pending', error: null, tried: 0, delayMs: 0 });
          return;
        }
        try {
          // Sent first, then pushed: `toMark.push(…, await …)` would push to the array current when the
          // send began, which a flush may have taken meanwhile.
          const messageId = await sendRow(this.ctx, this.transport, row);
          toMark.push({ id: String(row.id), messageId });
          sentIds.add(String(row.id));
          if (toMark.length >= MARK_EVERY) void flush();
        } catch (err) {
          const f = classify(err);
          if (f.kind === 'transient') {
            this.pausedUntil = Date.now() + INLINE_PAUSE_MS;
            handed.push({ id: String(row.id), state: 'pending', error: { code: 'SMTP_TRANSIENT', message: (err as Error).message }, tried: 1, delayMs: firstBackoffMs });
          } else {
            handed.push({ id: String(row.id), state: 'failed', error: { code: f.code, message: f.message }, tried: 1, delayMs: 0 });
          }
        }
      } finally {
        this.release();
      }
    }));
    // Marking is idempotent: a database blip here is retried rather than resending what was sent.
    await flush();
    if (markError) throw markError;
    if (!handed.length) return;
    await handOver(this.ctx.orm.em.fork(), handed.map(({ id, state, error, tried }) => ({ id, state, error, tried })));
    for (const delayMs of new Set(handed.map((h) => h.delayMs))) {
      await enqueueMailAfterCommit(this.ctx, handed.filter((h) => h.delayMs === delayMs).map((h) => h.id), delayMs);
    }
  }

  private async acquire(): Promise<void> {
    if (this.inFlight < this.maxInFlight) {
      this.inFlight++;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.inFlight--;
  }
}

async function withRetries<T>(fn: () => Promise<T>, attempts: number, delayMs: number): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= attempts) throw err;
      await new Promise((r) => setTimeout(r, delayMs * i));
    }
  }
}
