import { startService, TOKENS, waitFor, type TestService } from '../helpers/harness.js';
import type { CapturedMail } from '../helpers/smtp.js';
import { messageIdFor } from '../../src/workers/mail.js';
import { reconcileOnce } from '../../src/workers/reconciler.js';
import { jobIds } from '../../src/jobs/contracts.js';
import { grantToken } from '../../src/lib/grant-link.js';

/**
 * Email delivery through the outbox (contract §1, §6): retry on SMTP 4xx with backoff, no retry on
 * 5xx, a deterministic Message-ID, and the client's language.
 */

const contactOf = (hubId: string) => `boss.${hubId}@clients.test`;
const CAM = { name: 'Carla Manager', email: 'carla.cam@partner-program.test' };

interface OutboxRow {
  id: string;
  notification_key: string;
  kind: string;
  state: string;
  attempts: number;
  error: { code: string; message: string } | null;
  message_id: string | null;
  payload: { hubId: string; partnerId?: string; pairs?: { email: string; seq: number }[] };
  created_at: Date;
  sent_at: Date | null;
}

describe('email delivery', () => {
  let svc: TestService;

  const apply = async (command: Record<string, unknown>) => {
    const s = await svc.api.apply('p-100', command, command.type === 'partner.upsert' ? TOKENS.admin : command.type === 'client.upsert' ? TOKENS.platform : TOKENS.crm);
    expect({ type: s.type, state: s.state, error: s.error }).toEqual({ type: command.type, state: 'completed', error: undefined });
    return s;
  };

  /** A client and a tagged employee, then one pending assignment: exactly one email to the client's contact. */
  async function requestAccess(hubId: string, clientExtra: Record<string, unknown> = {}, employeeName?: string): Promise<{ commandId: string; email: string }> {
    const email = `ann.${hubId}@agency.test`;
    await apply({ type: 'client.upsert', hubId, name: `Client ${hubId}`, contactEmail: contactOf(hubId), ...clientExtra });
    await apply({ type: 'employee.tag', email, ...(employeeName ? { name: employeeName } : {}) });
    const st = await apply({ type: 'access.assign', clientHubIds: [hubId], employeeEmails: [email] });
    expect(st.items[0].outcome).toBe('pending');
    return { commandId: st.commandId, email };
  }

  const outboxOf = async (hubId: string): Promise<OutboxRow[]> =>
    svc.sql<OutboxRow>(`select id, notification_key, kind, state, attempts, error, message_id, payload, created_at, sent_at from outbox where payload->>'hubId' = ? order by id`, [hubId]);

  async function waitOutbox(hubId: string, state: 'sent' | 'failed'): Promise<OutboxRow> {
    let row: OutboxRow | undefined;
    await waitFor(async () => {
      row = (await outboxOf(hubId))[0];
      return row?.state === state;
    }, { what: `the outbox row of ${hubId} to be ${state}` });
    return row!;
  }

  const mailsTo = (address: string): CapturedMail[] => svc.smtp.messages.filter((m) => m.to.includes(address));
  const mailJob = (outboxId: string) => svc.app.ctx.queues.mail.getJob(jobIds.mail(outboxId));

  beforeAll(async () => {
    svc = await startService();
    await apply({ type: 'partner.upsert', name: 'Acme Partners', team: { channelAccountManager: CAM } });
  });

  afterAll(async () => {
    await svc.close();
  });

  it('when SMTP answers 550, then the outbox row is failed with the error stored, the mail job failed at once and SMTP saw exactly one attempt', async () => {
    const hub = 'm550';
    const before = svc.smtp.attempts.length;
    svc.smtp.failNext([550]);
    await requestAccess(hub);

    const row = await waitOutbox(hub, 'failed');
    expect(row.attempts).toBe(1);
    expect(row.sent_at).toBeNull();
    expect(row.error).toMatchObject({ code: 'SMTP_REJECTED', message: expect.stringContaining('550') });
    await waitFor(async () => (await (await mailJob(row.id))!.getState()) === 'failed', { what: 'the mail job to fail' });
    const job = (await mailJob(row.id))!;
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toMatch(/^SMTP_REJECTED: .*550/);

    // Something that happens after a retry would have: the reconciler picks up a pending outbox row
    // that has no job (written here by hand, older than its grace period) and it gets delivered.
    await svc.sql(
      `insert into outbox (notification_key, kind, partner_id, payload, created_at) values (?, 'team.email', 'p-100', ?::jsonb, now() - interval '1 minute')`,
      ['test:after-550', JSON.stringify({ to: 'channelAccountManager', subject: 'after the 550', body: 'hello' })],
    );
    await waitFor(() => svc.smtp.messages.some((m) => m.subject === 'after the 550'), { what: 'the later email' });
    expect(svc.smtp.attempts.slice(before)).toEqual([550, 250]);
    expect(mailsTo(contactOf(hub))).toEqual([]);
    expect(await outboxOf(hub)).toEqual([expect.objectContaining({ state: 'failed', attempts: 1 })]);
    expect(await (await mailJob(row.id))!.getState()).toBe('failed');
  });

  it('when SMTP answers 421 once, then the email is retried after a backoff and delivered exactly once, and its outbox row is sent', async () => {
    const hub = 'm421';
    const before = svc.smtp.attempts.length;
    svc.smtp.failNext([421]);
    await requestAccess(hub);

    const row = await waitOutbox(hub, 'sent');
    expect(svc.smtp.attempts.slice(before)).toEqual([421, 250]);
    expect(mailsTo(contactOf(hub))).toHaveLength(1);
    expect(row).toMatchObject({ state: 'sent', attempts: 2, error: null });
    expect(row.message_id).toBe(messageIdFor(row.notification_key, svc.config.mailFrom));
    expect(mailsTo(contactOf(hub))[0]!.messageId).toBe(row.message_id);
    // exponential backoff starting at 1 s between the refused and the accepted attempt
    expect(new Date(row.sent_at!).getTime() - new Date(row.created_at).getTime()).toBeGreaterThanOrEqual(900);
    const job = await mailJob(row.id);
    expect(await job!.getState()).toBe('completed');
    expect(await svc.sql(`select count(*)::int as n from outbox where payload->>'hubId' = ?`, [hub])).toEqual([{ n: 1 }]);
  });

  it('when transient SMTP failures use up the mail job\'s attempts, then the outbox row is failed and not left pending', async () => {
    const before = svc.smtp.attempts.length;
    const [row] = await svc.sql<{ id: string }>(
      `insert into outbox (notification_key, kind, partner_id, payload) values (?, 'team.email', 'p-100', ?::jsonb) returning id`,
      ['test:exhausted', JSON.stringify({ to: 'channelAccountManager', subject: 'never delivered', body: 'hello' })],
    );
    svc.smtp.failNext([421]);
    // the job the outbox would get, with its last attempt left (the reconciler sees the job and adds none)
    await svc.app.ctx.queues.mail.add('send', { outboxId: String(row!.id) }, { jobId: jobIds.mail(row!.id), attempts: 1 });

    let out: OutboxRow | undefined;
    await waitFor(async () => {
      [out] = await svc.sql<OutboxRow>('select * from outbox where id = ?', [row!.id]);
      return out!.state !== 'pending';
    }, { what: 'the exhausted outbox row to leave pending' });
    expect(out).toMatchObject({ state: 'failed', sent_at: null, error: { code: expect.any(String), message: expect.any(String) } });
    expect(svc.smtp.attempts.slice(before)).toEqual([421]);
    expect(svc.smtp.messages.filter((m) => m.subject === 'never delivered')).toEqual([]);
    expect(await (await mailJob(String(row!.id)))!.getState()).toBe('failed');
  });

  it('when a pending outbox row is claimed by the worker that is sending it, then the reconciler leaves it alone until the claim expires, and then it is delivered once', async () => {
    const subject = 'claimed row';
    const [row] = await svc.sql<{ id: string }>(
      `insert into outbox (notification_key, kind, partner_id, payload, created_at, claimed_until)
       values (?, 'team.email', 'p-100', ?::jsonb, now() - interval '1 minute', now() + interval '1 hour') returning id`,
      ['test:claimed', JSON.stringify({ to: 'channelAccountManager', subject, body: 'hello' })],
    );
    const id = String(row!.id);
    await reconcileOnce(svc.app.ctx);
    expect(await mailJob(id)).toBeUndefined();
    expect(await svc.sql('select state from outbox where id = ?', [id])).toEqual([{ state: 'pending' }]);

    // The claim runs out (its worker died): the next pass hands the row to a mail job.
    await svc.sql(`update outbox set claimed_until = now() - interval '1 second' where id = ?`, [id]);
    await reconcileOnce(svc.app.ctx);
    expect(await mailJob(id)).toBeDefined();
    await waitFor(async () => (await svc.sql<{ state: string }>('select state from outbox where id = ?', [id]))[0]!.state === 'sent', { what: 'the released row to be sent' });
    expect(svc.smtp.messages.filter((m) => m.subject === subject)).toHaveLength(1);
  });

  it('when an email is sent, then its Message-ID is derived from the notification key and stored on the outbox row', async () => {
    const hub = 'mmid';
    const { commandId, email } = await requestAccess(hub);
    const row = await waitOutbox(hub, 'sent');
    expect(row.notification_key).toBe(`access.request:${commandId}:${hub}`); // once per command and client
    expect(row.payload).toEqual({ partnerId: 'p-100', hubId: hub, commandId, pairs: [{ email, seq: 1 }] });
    const expected = messageIdFor(row.notification_key, svc.config.mailFrom);
    expect(expected).toMatch(/^<[0-9a-f]{32}@partner-access\.local>$/);
    expect(messageIdFor(row.notification_key, svc.config.mailFrom)).toBe(expected); // the same key, the same id
    expect(messageIdFor(`${row.notification_key}x`, svc.config.mailFrom)).not.toBe(expected);
    expect(row.message_id).toBe(expected);
    const mails = mailsTo(contactOf(hub));
    expect(mails).toHaveLength(1);
    expect(mails[0]!.messageId).toBe(expected);

    // team.email too: keyed by its command
    const sent = await apply({ type: 'team.email', to: 'channelAccountManager', subject: 'mid check', body: 'Hi Carla' });
    await waitFor(() => svc.smtp.messages.some((m) => m.subject === 'mid check'), { what: 'the team email' });
    const [teamRow] = await svc.sql<OutboxRow>('select notification_key, message_id, state from outbox where notification_key = ?', [`team.email:${sent.commandId}`]);
    const teamMail = svc.smtp.messages.find((m) => m.subject === 'mid check')!;
    expect(teamMail.to).toContain(CAM.email);
    expect(teamRow!.message_id).toBe(messageIdFor(`team.email:${sent.commandId}`, svc.config.mailFrom));
    expect(teamMail.messageId).toBe(teamRow!.message_id);
  });

  const locales = [
    { locale: 'sv', subject: 'ber om åtkomst för', greeting: 'Hej', action: 'Ge åtkomst', actionHtml: 'Ge åtkomst' },
    { locale: 'de', subject: 'bittet um Zugriff für', greeting: 'Hallo', action: 'Zugriff gewähren', actionHtml: 'Zugriff gewähren' },
    { locale: 'it', subject: "chiede l'accesso per", greeting: 'Ciao', action: "Concedi l'accesso", actionHtml: 'Concedi l&#39;accesso' },
    { locale: 'pt', subject: 'pede acesso para', greeting: 'Olá', action: 'Conceder acesso', actionHtml: 'Conceder acesso' },
    { locale: 'en', subject: 'asks for access for', greeting: 'Hello', action: 'Grant access', actionHtml: 'Grant access' },
    { locale: undefined, subject: 'asks for access for', greeting: 'Hello', action: 'Grant access', actionHtml: 'Grant access' },
  ];

  it.each(locales.map((l) => [l.locale ?? 'not set (English by default)', l] as const))('when the client\'s locale is %s, then the email is in that language, with plain text, HTML and the grant link', async (_name, l) => {
    const hub = `mloc-${l.locale ?? 'none'}`;
    const { commandId, email } = await requestAccess(hub, l.locale ? { locale: l.locale } : {}, 'Ann Agent');
    const row = await waitOutbox(hub, 'sent');
    const mails = mailsTo(contactOf(hub));
    expect(mails).toHaveLength(1);
    const mail = mails[0]!;
    // the outbox holds the pair and its request, never the token: the link is derived when the email is written
    expect(row.payload).toEqual({ partnerId: 'p-100', hubId: hub, commandId, pairs: [{ email, seq: 1 }] });
    const link = `http://grants.test/v1/grants/${grantToken(svc.config.grantLinkSecret, { partnerId: 'p-100', hubId: hub, email, seq: 1 })}`;

    expect(mail.subject).toBe(`Acme Partners ${l.subject} Ann Agent (${email})`);
    expect(mail.text).toContain(`${l.greeting} Client ${hub},`);
    expect(mail.text).toContain(`${l.action}: ${link}`);
    expect(mail.html).toContain(`href="${link}"`);
    expect(mail.html).toContain(`>${l.actionHtml}</a>`);
    expect(mail.html).toContain('Acme Partners');
    // the link in the email is live
    const page = await svc.api.request('GET', new URL(link).pathname, { token: null });
    expect(page.status).toBe(200);
  });
});
