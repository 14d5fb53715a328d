/**
 * A range's request emails are sent by the worker right after its commit and marked sent as they
 * go, not once the whole range (up to PAIR_RANGE_SIZE emails) is through: a worker that dies in the
 * middle then resends only what was sent but not yet marked (same Message-ID, but a second email
 * to its recipient).
 */
import { startService, TOKENS, waitFor, type TestService } from '../helpers/harness.js';
import { startSmtp, type TestSmtp } from '../helpers/smtp.js';

const contactOf = (hubId: string) => `boss.${hubId}@clients.test`;

describe('marking a range\'s emails sent while it is being sent', () => {
  let smtp: TestSmtp;
  let svc: TestService;
  beforeAll(async () => {
    smtp = await startSmtp();
    svc = await startService({}, { smtp });
    await svc.api.apply('p-100', { type: 'partner.upsert', name: 'Acme Partners' });
  });
  afterAll(async () => {
    await svc.close();
    await smtp.close();
  });

  const sentRows = async (prefix: string) =>
    Number((await svc.sql<{ n: string }>(`select count(*) as n from outbox where payload->>'hubId' like ? and state = 'sent'`, [`${prefix}-%`]))[0]?.n ?? 0);

  it('when the SMTP server holds the last emails of a 50-email range, then the ones it accepted are already marked sent, and after it lets go every email is sent once', async () => {
    const hubs = Array.from({ length: 50 }, (_, i) => `mk-c${i}`);
    const setup = await svc.api.batch('p-100', [
      { type: 'employee.tag', email: 'ann.mk@agency.test' },
      ...hubs.map((hubId) => ({ type: 'client.upsert', hubId, name: hubId, contactEmail: contactOf(hubId) })),
    ], TOKENS.admin);
    for (const c of setup.body.commands as { commandId: string }[]) await svc.api.waitCommand(c.commandId);
    const before = smtp.messages.length;

    const hold = smtp.holdAfter(40);
    try {
      const st = await svc.api.apply('p-100', { type: 'access.assign', clientHubIds: hubs, employeeEmails: ['ann.mk@agency.test'] }, TOKENS.admin);
      expect(st.state).toBe('completed');
      await waitFor(() => hold.held() > 0, { what: 'the SMTP server to hold the last emails of the range' });
      // The delivery of the range is not finished (its last emails are held), yet what the server
      // accepted is marked: at least one chunk of 32 of the 40. Bounded below the transport's
      // 10 s socket timeout, after which the held sends would fail and the delivery end anyway
      // (marking everything it sent: the old behaviour then passes this poll, too late).
      await waitFor(async () => (await sentRows('mk')) >= 32, { what: 'the accepted emails of the unfinished range to be marked sent', timeoutMs: 8000 });
      expect(hold.held()).toBeGreaterThan(0);
    } finally {
      hold.release();
    }
    await waitFor(async () => (await sentRows('mk')) === 50, { what: 'all 50 emails marked sent' });
    const got = smtp.messages.slice(before).filter((m) => m.to.includes('boss.mk-'));
    expect(got).toHaveLength(50);
    expect(new Set(got.map((m) => m.messageId)).size).toBe(50);
  });
});
