import { createHash } from 'node:crypto';
import { UnrecoverableError } from 'bullmq';
import type { Transporter } from 'nodemailer';
import type { AppContext } from '../context.js';
import { composeMime, mailbox } from '../mail/mime.js';
import { renderAccessRequest, renderTeamEmail, type RenderedMail } from '../mail/templates.js';
import { classify, PermanentError, toUnrecoverable } from './failures.js';
import { Batcher } from '../lib/batcher.js';
import { enqueueMail } from './outbox.js';
import { defaultJobOptions } from '../queues/index.js';

/** The first retry delay of a job (the backoff's base). */
const backoffMs = typeof defaultJobOptions.backoff === 'object' ? defaultJobOptions.backoff.delay ?? 1000 : 1000;

/** A deterministic Message-ID per notification key: a resend after a crash is recognisably the same message. */
export function messageIdFor(key: string, from: string): string {
  const domain = /@([^>\s]+)/.exec(from)?.[1] ?? 'partner-access.local';
  return `<${createHash('sha256').update(key).digest('hex').slice(0, 32)}@${domain}>`;
}

interface OutboxRow {
  id: string; notification_key: string; kind: string; partner_id: string; payload: Record<string, string>; state: string; error: { code: string; message: string } | null;
  partner_name: string | null; team: Record<string, { name: string; email: string }> | null;
  client_name: string | null; contact_email: string | null; locale: string | null; employee_name: string | null;
}

/** The outbox row with everything its email names, in one query. */
const selectRow = `
  select o.id, o.notification_key, o.kind, o.partner_id, o.payload, o.state, o.error,
         p.name as partner_name, p.team, c.name as client_name, c.contact_email, c.locale, e.name as employee_name
    from outbox o
    left join partner p on p.id = o.partner_id
    left join client c on o.kind = 'access.pending' and c.partner_id = o.partner_id and c.hub_id = o.payload->>'hubId'
    left join employee e on o.kind = 'access.pending' and e.partner_id = o.partner_id and e.email = o.payload->>'email'
   where o.id in (select jsonb_array_elements_text(?::jsonb)::bigint)`;

/** Marks rows sent, many in one statement. */
async function markSent(ctx: AppContext, rows: { id: string; messageId: string }[]): Promise<void> {
  if (!rows.length) return;
  await ctx.orm.em.fork().execute(
    `update outbox o set state = 'sent', sent_at = now(), message_id = t.message_id, error = null, attempts = o.attempts + 1
       from jsonb_to_recordset(?::jsonb) as t(id bigint, message_id text) where o.id = t.id`,
    [JSON.stringify(rows.map((r) => ({ id: r.id, message_id: r.messageId })))],
  );
}

/** Marks sent rows, many in one commit; a job completes only once its row is marked. */
export const sentMarker = (ctx: AppContext, max: number) => new Batcher<{ id: string; messageId: string }, void>(async (rows) => {
  await markSent(ctx, rows);
  return rows.map(() => undefined);
}, max, 1);

/** Loads outbox rows for many jobs in one query (jobs arriving together share it). */
export const outboxLoader = (ctx: AppContext, max: number) => new Batcher<string, OutboxRow | undefined>(async (ids) => {
  const rows = await ctx.orm.em.fork().execute<OutboxRow[]>(selectRow, [JSON.stringify(ids)]);
  const byId = new Map(rows.map((r) => [String(r.id), r]));
  return ids.map((id) => byId.get(id));
}, max);

function render(ctx: AppContext, row: OutboxRow): { to: string; mail: RenderedMail } {
  if (row.partner_name === null) throw new PermanentError('UNKNOWN_PARTNER', 'partner of the outbox row no longer exists');
  if (row.kind === 'access.pending') {
    const p = row.payload as { hubId: string; email: string; token: string };
    if (row.client_name === null || row.contact_email === null) throw new PermanentError('UNKNOWN_CLIENT', 'client of the outbox row no longer exists');
    const employeeLabel = row.employee_name ? `${row.employee_name} (${p.email})` : p.email;
    return {
      to: row.contact_email,
      mail: renderAccessRequest({ locale: row.locale ?? 'en', clientName: row.client_name, partnerName: row.partner_name, employee: employeeLabel, link: `${ctx.config.publicUrl}/v1/grants/${p.token}`, ttlDays: ctx.config.grantTtlDays }),
    };
  }
  if (row.kind === 'team.email') {
    const p = row.payload as { to: string; subject: string; body: string };
    const person = row.team?.[p.to];
    if (!person) throw new PermanentError('NOT_FOUND', `the partner has no ${p.to}`);
    return { to: person.email, mail: renderTeamEmail({ partnerName: row.partner_name, subject: p.subject, body: p.body }) };
  }
  throw new PermanentError('VALIDATION_FAILED', `unknown outbox kind ${row.kind}`);
}

/** A mail job that used up its attempts on transient errors: the outbox row is marked failed. */
export async function failMailFinally(ctx: AppContext, data: unknown, message: string): Promise<void> {
  const outboxId = (data as { outboxId?: unknown } | null)?.outboxId;
  if (typeof outboxId !== 'string') return;
  await ctx.orm.em.fork().execute(`update outbox set state = 'failed', error = ?::jsonb where id = ? and state = 'pending'`, [JSON.stringify({ code: 'SMTP_UNAVAILABLE', message }), outboxId]);
}

/** Renders and sends one outbox row; returns its Message-ID. Throws what rendering or SMTP throws (see classify). */
async function sendRow(ctx: AppContext, transport: Transporter, row: OutboxRow): Promise<string> {
  const messageId = messageIdFor(row.notification_key, ctx.config.mailFrom);
  const { to, mail } = render(ctx, row);
  const raw = composeMime({
    from: ctx.config.mailFrom, to, subject: mail.subject, text: mail.text, html: mail.html, messageId, date: new Date(),
    headers: { 'X-Notification-Key': createHash('sha256').update(row.notification_key).digest('hex').slice(0, 16) },
  });
  // messageId only spares nodemailer generating one for its (unused) root node: the raw message is sent as is.
  await transport.sendMail({ envelope: { from: mailbox(ctx.config.mailFrom).address, to: [mailbox(to).address] }, raw, messageId });
  return messageId;
}

/**
 * The `mail` job: `{outboxId}`. Idempotency key: the outbox row (a sent row is never sent again).
 * SMTP 4xx and connection errors retry with backoff; 5xx fails at once and is stored on the row.
 * A row that already failed (a 5xx when it was sent right after its commit) fails the job's first
 * run at once with the stored error, so the failure shows on the dashboard; an operator's retry
 * (attemptsMade > 0) sends it again.
 */
export async function processMailJob(ctx: AppContext, transport: Transporter, data: unknown, loader = outboxLoader(ctx, 1), marker?: Batcher<{ id: string; messageId: string }, void>, attemptsMade = 0): Promise<unknown> {
  const outboxId = (data as { outboxId?: unknown } | null)?.outboxId;
  if (typeof outboxId !== 'string' || !/^\d+$/.test(outboxId)) throw new UnrecoverableError('VALIDATION_FAILED: job data has no outboxId');
  const em = ctx.orm.em.fork();
  const row = await loader.submit(outboxId);
  if (!row) throw new UnrecoverableError(`NOT_FOUND: outbox row ${outboxId}`);
  if (row.state === 'sent') return { state: 'sent', replayed: true };
  if (row.state === 'failed' && attemptsMade === 0 && row.error) throw toUnrecoverable(row.error);
  try {
    const messageId = await sendRow(ctx, transport, row);
    await (marker ?? sentMarker(ctx, 1)).submit({ id: outboxId, messageId });
    ctx.logger.debug({ outboxId, kind: row.kind }, 'email sent');
    return { state: 'sent', messageId };
  } catch (err) {
    const f = classify(err);
    if (f.kind === 'transient') {
      await em.execute('update outbox set error = ?::jsonb, attempts = attempts + 1 where id = ?', [JSON.stringify({ code: 'SMTP_TRANSIENT', message: (err as Error).message }), outboxId]);
      throw err;
    }
    await em.execute(`update outbox set state = 'failed', error = ?::jsonb, attempts = attempts + 1 where id = ?`, [JSON.stringify({ code: f.code, message: f.message }), outboxId]);
    throw toUnrecoverable(f);
  }
}

/** How long rows sent right after their commit stay claimed by that worker: the reconciler leaves them alone meanwhile. */
export const INLINE_CLAIM_MS = 120_000;
/**
 * An email whose send has not started this long after its commit goes to a mail job instead. Kept
 * well inside the claim, and below the job lock: a range job is only taken over (and its claims
 * released, see releaseClaims) after its lock lapsed, by which time its worker starts no more sends.
 */
export const inlineStartDeadlineMs = (jobLockMs: number) => Math.min(20_000, Math.floor(jobLockMs / 3));
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
    private readonly ctx: AppContext,
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
      await enqueueMail(this.ctx, outboxIds.filter((id) => !sent.has(id)));
    }
  }

  private async send(outboxIds: string[], committedAt: number, sentIds: Set<string>): Promise<void> {
    const rows = await this.ctx.orm.em.fork().execute<OutboxRow[]>(selectRow, [JSON.stringify(outboxIds)]);
    const deadline = committedAt + inlineStartDeadlineMs(this.ctx.config.jobLockMs);
    const sent: { id: string; messageId: string }[] = [];
    const handOver: { id: string; state: 'pending' | 'failed'; error: { code: string; message: string } | null; tried: number; delayMs: number }[] = [];
    await Promise.all(rows.filter((r) => r.state === 'pending').map(async (row) => {
      await this.acquire();
      try {
        if (!this.active || Date.now() > deadline) {
          handOver.push({ id: String(row.id), state: 'pending', error: null, tried: 0, delayMs: 0 });
          return;
        }
        try {
          sent.push({ id: String(row.id), messageId: await sendRow(this.ctx, this.transport, row) });
          sentIds.add(String(row.id));
        } catch (err) {
          const f = classify(err);
          if (f.kind === 'transient') {
            this.pausedUntil = Date.now() + INLINE_PAUSE_MS;
            handOver.push({ id: String(row.id), state: 'pending', error: { code: 'SMTP_TRANSIENT', message: (err as Error).message }, tried: 1, delayMs: backoffMs });
          } else {
            handOver.push({ id: String(row.id), state: 'failed', error: { code: f.code, message: f.message }, tried: 1, delayMs: 0 });
          }
        }
      } finally {
        this.release();
      }
    }));
    // Marking is idempotent: a database blip here is retried rather than resending what was sent.
    await withRetries(() => markSent(this.ctx, sent), 3, 250);
    if (sent.length) this.onSent?.(sent.length);
    if (!handOver.length) return;
    await this.ctx.orm.em.fork().execute(
      `update outbox o set state = t.state, error = coalesce(t.error, o.error), attempts = o.attempts + t.tried, claimed_until = null
         from jsonb_to_recordset(?::jsonb) as t(id bigint, state text, error jsonb, tried int) where o.id = t.id and o.state = 'pending'`,
      [JSON.stringify(handOver.map(({ id, state, error, tried }) => ({ id, state, error, tried })))],
    );
    for (const delayMs of new Set(handOver.map((h) => h.delayMs))) {
      await enqueueMail(this.ctx, handOver.filter((h) => h.delayMs === delayMs).map((h) => h.id), delayMs);
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
