import type { Job } from 'bullmq';
import { startService, TOKENS, waitFor, type TestService } from '../helpers/harness.js';
import type { CapturedMail } from '../helpers/smtp.js';
import { jobIds } from '../../src/jobs/contracts.js';

/**
 * The access flow of contract §1, §4 and §6 end to end: HTTP commands → command log → pair jobs →
 * Postgres + outbox → SMTP, and the grant link back in.
 */

const LINKED_MESSAGE = 'Their email address is already linked to another partner record for this client.';
const PARTNER_NAMES: Record<string, string> = { 'p-100': 'Acme Partners', 'p-200': 'Rival Agency' };
const tokenOf = (partnerId: string) => (partnerId === 'p-100' ? TOKENS.crm : partnerId === 'p-200' ? TOKENS.other : TOKENS.admin);

/** Every client's contact address is derived from its hubId, so a test can find its own emails. */
const contactOf = (hubId: string) => `boss.${hubId}@clients.test`;

describe('the partner access flow', () => {
  let svc: TestService;

  // ---- helpers ---------------------------------------------------------------------------------

  const apply = (partnerId: string, command: Record<string, unknown>) => svc.api.apply(partnerId, command, tokenOf(partnerId));

  /** Posts a command and returns its id without waiting. */
  async function post(partnerId: string, command: Record<string, unknown>): Promise<string> {
    const r = await svc.api.post(partnerId, command, tokenOf(partnerId));
    expect(r.status).toBe(202);
    return r.body.commandId as string;
  }

  /** Posts the commands as one batch and waits until each finished; each must complete. */
  async function applyAll(partnerId: string, commands: Record<string, unknown>[]): Promise<void> {
    const r = await svc.api.batch(partnerId, commands, TOKENS.admin); // client facts and employees together: admin holds both scopes
    expect(r.status).toBe(202);
    for (const [i, c] of (r.body.commands as { commandId: string }[]).entries()) {
      const s = await svc.api.waitCommand(c.commandId);
      expect({ type: s.type, state: s.state, error: s.error }).toEqual({ type: commands[i]!.type, state: 'completed', error: undefined });
    }
  }

  const clientCmd = (hubId: string, extra: Record<string, unknown> = {}) => ({ type: 'client.upsert', hubId, name: `Client ${hubId}`, contactEmail: contactOf(hubId), ...extra });
  const tagCmd = (email: string) => ({ type: 'employee.tag', email });

  async function setup(partnerId: string, opts: { clients?: (string | [string, Record<string, unknown>])[]; employees?: string[] }): Promise<void> {
    const commands = [
      ...(opts.clients ?? []).map((c) => (typeof c === 'string' ? clientCmd(c) : clientCmd(c[0], c[1]))),
      ...(opts.employees ?? []).map(tagCmd),
    ];
    if (commands.length) await applyAll(partnerId, commands);
  }

  const assign = (partnerId: string, clientHubIds: string[], employeeEmails: string[], extra: Record<string, unknown> = {}) =>
    apply(partnerId, { type: 'access.assign', clientHubIds, employeeEmails, ...extra });
  const revoke = (partnerId: string, clientHubIds: string[], employeeEmails: string[], extra: Record<string, unknown> = {}) =>
    apply(partnerId, { type: 'access.revoke', clientHubIds, employeeEmails, ...extra });

  const mailsTo = (address: string): CapturedMail[] => svc.smtp.messages.filter((m) => m.to.includes(address));

  /** The outbox rows of the clients whose hubId starts with this test's prefix. */
  const outboxOf = (prefix: string) =>
    svc.sql<{ id: string; partner_id: string; state: string; payload: { hubId: string } }>(
      `select id, partner_id, state, payload from outbox where payload->>'hubId' like ? order by id`, [`${prefix}-%`]);

  /**
   * Waits until every outbox row of the prefix is sent, then returns the delivered emails to the
   * prefix's contacts. An email needs an outbox row, written in the pair's transaction, so once the
   * rows are all sent no further email of this prefix can arrive: the count is final.
   */
  async function settledMails(prefix: string, expectedRows: number): Promise<CapturedMail[]> {
    await waitFor(async () => {
      const rows = await outboxOf(prefix);
      return rows.length === expectedRows && rows.every((r) => r.state === 'sent');
    }, { what: `${expectedRows} sent outbox rows for ${prefix}` });
    return svc.smtp.messages.filter((m) => m.to.includes(`boss.${prefix}-`));
  }

  const linkIn = (mail: CapturedMail): string => {
    const path = /http:\/\/grants\.test(\/v1\/grants\/[A-Za-z0-9_-]+)/.exec(mail.text)?.[1];
    expect(path).toBeDefined();
    return path!;
  };
  /** Every grant link of an email (one per employee it names). */
  const linksIn = (mail: CapturedMail): string[] => [...mail.text.matchAll(/http:\/\/grants\.test(\/v1\/grants\/(?!all\/)[A-Za-z0-9_-]+)/g)].map((m) => m[1]!);
  /** The link of one employee in an email that names several (its line: `- employee: link`). */
  const linkFor = (mail: CapturedMail, email: string): string => {
    const line = mail.text.split('\n').find((l) => l.includes(email));
    const path = line ? /http:\/\/grants\.test(\/v1\/grants\/[A-Za-z0-9_-]+)/.exec(line)?.[1] : undefined;
    expect(path).toBeDefined();
    return path!;
  };
  const grantPage = (path: string) => svc.api.request('GET', path, { token: null });
  const grantPost = (path: string) => svc.api.request('POST', path, { token: null });

  const liveAccess = (prefix: string) =>
    svc.sql<{ partner_id: string; hub_id: string; email: string; state: string }>(
      `select partner_id, hub_id, email, state from access where hub_id like ? and state in ('pending', 'active') order by partner_id, hub_id, email`, [`${prefix}-%`]);

  const clientsOf = async (partnerId: string, prefix: string) => {
    const r = await svc.api.get(`/v1/partners/${partnerId}/clients`, tokenOf(partnerId));
    expect(r.status).toBe(200);
    return (r.body.clients as { hubId: string; status: string; managed: boolean; employees: { email: string; access: string }[] }[]).filter((c) => c.hubId.startsWith(`${prefix}-`));
  };

  const pairJob = async (commandId: string, idx: number): Promise<Job> => {
    let job: Job | undefined;
    await waitFor(async () => {
      job = await svc.app.ctx.queues.pairs.getJob(jobIds.pair(commandId, idx));
      return job !== undefined && (await job.getState()) === 'failed';
    }, { what: `pair job ${idx} of ${commandId} to be failed` });
    return (await svc.app.ctx.queues.pairs.getJob(jobIds.pair(commandId, idx)))!;
  };

  /** A refused pair: the item says why, and its job failed once, finally, with `CODE: message`. */
  async function expectRefusedAtOnce(status: any, code: string): Promise<void> {
    expect(status.state).toBe('failed');
    expect(status.items).toHaveLength(1);
    expect(status.items[0]).toMatchObject({ state: 'failed', error: { code } });
    expect(status.items[0].outcome).toBeUndefined();
    expect(status.error).toEqual(status.items[0].error);
    const job = await pairJob(status.commandId, 0);
    expect(job.attemptsMade).toBe(1);
    expect(job.attemptsMade).toBeLessThan(job.opts.attempts ?? 1); // retries were available, yet not used
    expect(job.failedReason).toBe(`${code}: ${status.items[0].error.message}`);
    const [item] = await svc.sql<{ attempts: number }>('select attempts from command_item where command_id = ? and idx = 0', [status.commandId]);
    expect(item!.attempts).toBe(1);
  }

  const commandStatus = async (commandId: string) => (await svc.api.get(`/v1/commands/${commandId}`)).body;

  // ---- lifecycle --------------------------------------------------------------------------------

  beforeAll(async () => {
    svc = await startService();
    for (const [id, name] of Object.entries(PARTNER_NAMES)) {
      expect((await svc.api.apply(id, { type: 'partner.upsert', name }, TOKENS.admin)).state).toBe('completed');
    }
  });

  afterAll(async () => {
    await svc.close();
  });

  // ---- assign outcomes -------------------------------------------------------------------------

  describe('assigning one pair', () => {
    it('when the employee is already a portal user of the client, then the access is active at once and the client gets no email', async () => {
      const p = 'act';
      await setup('p-100', { clients: [[`${p}-c1`, { portalUserEmails: ['Ann.Act@Agency.test'] }]], employees: ['ann.act@agency.test', 'bob.act@agency.test'] });

      const st = await assign('p-100', [`${p}-c1`], ['ANN.act@agency.test']);
      expect(st.state).toBe('completed');
      expect(st.items).toEqual([{ clientHubId: `${p}-c1`, employeeEmail: 'ann.act@agency.test', state: 'completed', outcome: 'active' }]);
      expect(await outboxOf(p)).toHaveLength(0);
      const [client] = await clientsOf('p-100', p);
      expect(client).toMatchObject({ managed: true, employees: [{ email: 'ann.act@agency.test', access: 'active' }] });

      // A later pending email to the same contact arrives alone: nothing was sent for Ann.
      expect((await assign('p-100', [`${p}-c1`], ['bob.act@agency.test'])).items[0].outcome).toBe('pending');
      const mails = await settledMails(p, 1);
      expect(mails).toHaveLength(1);
      expect(mails[0]!.text).toContain('bob.act@agency.test');
      expect(mails[0]!.text).not.toContain('ann.act@agency.test');
    });

    it('when the employee is not a portal user, then the access is pending and the client contact gets exactly one email', async () => {
      const p = 'pend';
      await setup('p-100', { clients: [`${p}-c1`], employees: ['ann.pend@agency.test'] });

      const st = await assign('p-100', [`${p}-c1`], ['ann.pend@agency.test']);
      expect(st.state).toBe('completed');
      expect(st.items).toEqual([{ clientHubId: `${p}-c1`, employeeEmail: 'ann.pend@agency.test', state: 'completed', outcome: 'pending' }]);
      const mails = await settledMails(p, 1);
      expect(mails).toHaveLength(1);
      expect(mails[0]!.to).toContain(contactOf(`${p}-c1`));
      expect(mails[0]!.subject).toContain('Acme Partners');
      expect(mails[0]!.text).toContain('ann.pend@agency.test');
      linkIn(mails[0]!);
      const [client] = await clientsOf('p-100', p);
      expect(client).toMatchObject({ managed: false, employees: [{ email: 'ann.pend@agency.test', access: 'pending' }] });
    });

    it('when a pending pair is assigned again, then its outcome is unchanged and no second email is sent', async () => {
      const p = 'again';
      await setup('p-100', { clients: [`${p}-c1`], employees: ['ann.again@agency.test', 'bob.again@agency.test'] });
      expect((await assign('p-100', [`${p}-c1`], ['ann.again@agency.test'])).items[0].outcome).toBe('pending');

      const again = await assign('p-100', [`${p}-c1`], ['ann.again@agency.test']);
      expect(again.state).toBe('completed');
      expect(again.items).toEqual([{ clientHubId: `${p}-c1`, employeeEmail: 'ann.again@agency.test', state: 'completed', outcome: 'unchanged' }]);
      expect(await outboxOf(p)).toHaveLength(1);

      // A later email for Bob arrives; Ann still has exactly one.
      expect((await assign('p-100', [`${p}-c1`], ['bob.again@agency.test'])).items[0].outcome).toBe('pending');
      const mails = await settledMails(p, 2);
      expect(mails.filter((m) => m.text.includes('ann.again@agency.test'))).toHaveLength(1);
      expect(mails.filter((m) => m.text.includes('bob.again@agency.test'))).toHaveLength(1);
    });

    const refusals: { name: string; code: string; arrange: (p: string) => Promise<void> }[] = [
      {
        name: 'the employee is unknown to the partner (known only to another partner)',
        code: 'UNKNOWN_EMPLOYEE',
        arrange: async (p) => {
          await setup('p-100', { clients: [`${p}-c1`] });
          await setup('p-200', { employees: [`ann.${p}@agency.test`] });
        },
      },
      {
        name: 'the employee was untagged',
        code: 'NOT_A_PARTNER_EMPLOYEE',
        arrange: async (p) => {
          await setup('p-100', { clients: [`${p}-c1`], employees: [`ann.${p}@agency.test`] });
          expect((await apply('p-100', { type: 'employee.untag', email: `ann.${p}@agency.test` })).state).toBe('completed');
        },
      },
      {
        name: 'the employee was removed from the partner account',
        code: 'NOT_A_PARTNER_EMPLOYEE',
        arrange: async (p) => {
          await setup('p-100', { clients: [`${p}-c1`], employees: [`ann.${p}@agency.test`] });
          expect((await apply('p-100', { type: 'employee.remove', email: `ann.${p}@agency.test` })).state).toBe('completed');
        },
      },
      {
        name: 'the client is not in the partner\'s list (only in another partner\'s)',
        code: 'UNKNOWN_CLIENT',
        arrange: async (p) => {
          await setup('p-100', { employees: [`ann.${p}@agency.test`] });
          await setup('p-200', { clients: [`${p}-c1`] });
        },
      },
      {
        name: 'the client was terminated',
        code: 'CLIENT_TERMINATED',
        arrange: async (p) => {
          await setup('p-100', { clients: [`${p}-c1`], employees: [`ann.${p}@agency.test`] });
          expect((await apply('p-100', { type: 'client.terminate', hubId: `${p}-c1` })).state).toBe('completed');
        },
      },
    ];

    it.each(refusals.map((r, i) => [r.name, r.code, i] as const))('when %s, then the pair fails at once with %s, without retry or email', async (_name, code, i) => {
      const p = `ref${i}`;
      await refusals[i]!.arrange(p);
      const st = await assign('p-100', [`${p}-c1`], [`ann.${p}@agency.test`]);
      await expectRefusedAtOnce(st, code);
      expect(await liveAccess(p)).toEqual([]);
      expect(await outboxOf(p)).toHaveLength(0);
    });
  });

  // ---- bulk --------------------------------------------------------------------------------------

  describe('assigning in bulk', () => {
    it('when three clients are assigned to one employee, then each client contact gets one email', async () => {
      const p = 'bulk1';
      const hubs = [`${p}-c1`, `${p}-c2`, `${p}-c3`];
      await setup('p-100', { clients: hubs, employees: ['ann.bulk1@agency.test'] });

      const st = await assign('p-100', hubs, ['ann.bulk1@agency.test']);
      expect(st.state).toBe('completed');
      expect(st.items).toEqual(hubs.map((h) => ({ clientHubId: h, employeeEmail: 'ann.bulk1@agency.test', state: 'completed', outcome: 'pending' })));
      const mails = await settledMails(p, 3);
      expect(mails).toHaveLength(3);
      for (const h of hubs) {
        const mine = mailsTo(contactOf(h));
        expect(mine).toHaveLength(1);
        expect(mine[0]!.text).toContain('ann.bulk1@agency.test');
      }
    });

    it('when three employees are assigned to one client, then the client contact gets one email naming each of them with a link of its own', async () => {
      const p = 'bulk2';
      const emails = ['ann.bulk2@agency.test', 'bob.bulk2@agency.test', 'cid.bulk2@agency.test'];
      await setup('p-100', { clients: [`${p}-c1`], employees: emails });

      const st = await assign('p-100', [`${p}-c1`], emails);
      expect(st.state).toBe('completed');
      expect(st.items).toEqual(emails.map((e) => ({ clientHubId: `${p}-c1`, employeeEmail: e, state: 'completed', outcome: 'pending' })));
      const mails = await settledMails(p, 1);
      expect(mails).toHaveLength(1);
      for (const e of emails) expect(mails[0]!.text).toContain(e);
      expect(new Set(emails.map((e) => linkFor(mails[0]!, e))).size).toBe(3);
      expect(linksIn(mails[0]!)).toHaveLength(3);
    });

    it('when a bulk assign mixes new, already pending and portal-user pairs, then only the newly pending pairs get an email', async () => {
      const p = 'bulk3';
      const [c1, c2] = [`${p}-c1`, `${p}-c2`];
      const [ann, bob] = ['ann.bulk3@agency.test', 'bob.bulk3@agency.test'];
      await setup('p-100', { clients: [c1, [c2, { portalUserEmails: [bob] }]], employees: [ann, bob] });
      expect((await assign('p-100', [c1], [ann])).items[0].outcome).toBe('pending');

      const st = await assign('p-100', [c1, c2], [ann, bob]);
      expect(st.state).toBe('completed');
      expect(st.items.map((i: any) => [i.clientHubId, i.employeeEmail, i.outcome])).toEqual([
        [c1, ann, 'unchanged'],
        [c1, bob, 'pending'],
        [c2, ann, 'pending'],
        [c2, bob, 'active'],
      ]);
      const mails = await settledMails(p, 3); // the first assign's and two new ones
      expect(mailsTo(contactOf(c1)).map((m) => (m.text.includes(ann) ? 'ann' : 'bob')).sort()).toEqual(['ann', 'bob']);
      expect(mailsTo(contactOf(c2)).map((m) => (m.text.includes(ann) ? 'ann' : 'bob'))).toEqual(['ann']);
      expect(mails).toHaveLength(3);
    });
  });

  // ---- duplicate-email conflict -------------------------------------------------------------------

  describe('the duplicate-email conflict', () => {
    it('when another partner assigns an email pending for the same client, then its pair fails without naming the first partner, is listed as a conflict, sends nothing, and succeeds after the first partner revokes', async () => {
      const p = 'dup';
      const hub = `${p}-c1`;
      const ann = 'ann.dup@agency.test';
      await setup('p-100', { clients: [hub], employees: [ann] });
      await setup('p-200', { clients: [hub], employees: [ann] });
      expect((await assign('p-100', [hub], [ann])).items[0].outcome).toBe('pending');

      const rival = await assign('p-200', [hub], [ann]);
      expect(rival.state).toBe('failed');
      expect(rival.items).toEqual([{ clientHubId: hub, employeeEmail: ann, state: 'failed', error: { code: 'EMAIL_LINKED_TO_OTHER_PARTNER', message: LINKED_MESSAGE } }]);
      expect(rival.error).toEqual({ code: 'EMAIL_LINKED_TO_OTHER_PARTNER', message: LINKED_MESSAGE });
      const visibleToRival = JSON.stringify(rival) + JSON.stringify((await svc.api.get(`/v1/commands/${rival.commandId}`, TOKENS.other)).body);
      expect(visibleToRival).not.toContain('p-100');
      expect(visibleToRival).not.toContain('Acme');
      const job = await pairJob(rival.commandId, 0);
      expect(job.failedReason).toBe(`EMAIL_LINKED_TO_OTHER_PARTNER: ${LINKED_MESSAGE}`);
      expect(job.attemptsMade).toBe(1);

      const conflicts = await svc.api.get('/v1/partners/p-200/conflicts', TOKENS.other);
      expect(conflicts.status).toBe(200);
      const mine = conflicts.body.conflicts.filter((c: any) => c.clientHubId === hub);
      expect(mine).toEqual([{ email: ann, clientHubId: hub, commandId: rival.commandId, at: expect.any(String) }]);
      expect(JSON.stringify(conflicts.body)).not.toContain('p-100');
      expect((await svc.api.get('/v1/partners/p-100/conflicts', TOKENS.crm)).body.conflicts.filter((c: any) => c.clientHubId === hub)).toEqual([]);

      // no email for the rival: only p-100's request reached the contact
      const first = await settledMails(p, 1);
      expect(first).toHaveLength(1);
      expect(first[0]!.subject).toContain('Acme Partners');
      expect(await liveAccess(p)).toEqual([{ partner_id: 'p-100', hub_id: hub, email: ann, state: 'pending' }]);

      expect((await revoke('p-100', [hub], [ann])).items[0].outcome).toBe('revoked');
      const retried = await assign('p-200', [hub], [ann]);
      expect(retried.state).toBe('completed');
      expect(retried.items[0]).toEqual({ clientHubId: hub, employeeEmail: ann, state: 'completed', outcome: 'pending' });
      const both = await settledMails(p, 2);
      expect(both.map((m) => m.subject.includes('Rival Agency'))).toEqual([false, true]);
      expect(await liveAccess(p)).toEqual([{ partner_id: 'p-200', hub_id: hub, email: ann, state: 'pending' }]);
    });

    it('when a bulk assign of five clients has one refused pair, then one range job applies and emails the four others, and only the refused pair gets a job of its own, failed with its code', async () => {
      const p = 'rng';
      const hubs = [1, 2, 3, 4, 5].map((i) => `${p}-c${i}`);
      const ann = 'ann.rng@agency.test';
      await setup('p-100', { clients: [hubs[2]!], employees: [ann] });
      await setup('p-200', { clients: hubs, employees: [ann] });
      expect((await assign('p-100', [hubs[2]!], [ann])).items[0].outcome).toBe('pending');

      const st = await assign('p-200', hubs, [ann]);
      expect(st.state).toBe('failed');
      expect(st.items.map((i: any) => i.outcome ?? i.error.code)).toEqual(['pending', 'pending', 'EMAIL_LINKED_TO_OTHER_PARTNER', 'pending', 'pending']);
      const pairs = svc.app.ctx.queues.pairs;
      const range = await pairs.getJob(jobIds.pairRange(st.commandId, 0, 5));
      expect(range && (await range.getState())).toBe('completed');
      expect(range!.data).toEqual({ commandId: st.commandId, from: 0, to: 5 });
      expect(range!.returnvalue).toEqual({ pairs: 5, applied: 4, alone: 1 });
      const refused = await pairJob(st.commandId, 2);
      expect(refused.failedReason).toBe(`EMAIL_LINKED_TO_OTHER_PARTNER: ${LINKED_MESSAGE}`);
      expect(refused.attemptsMade).toBe(1);
      for (const idx of [0, 1, 3, 4]) expect(await pairs.getJob(jobIds.pair(st.commandId, idx))).toBeUndefined();

      // The four grant emails were sent by the range job itself: sent rows, no mail job for any of them.
      const mails = await settledMails(p, 5);
      expect(mails.filter((m) => m.subject.includes('Rival Agency'))).toHaveLength(4);
      expect(hubs.map((h) => mailsTo(contactOf(h)).filter((m) => m.subject.includes('Rival Agency')).length)).toEqual([1, 1, 0, 1, 1]);
      const rows = (await outboxOf(p)).filter((r) => r.partner_id === 'p-200');
      expect(rows).toHaveLength(4);
      for (const r of rows) expect(await svc.app.ctx.queues.mail.getJob(jobIds.mail(r.id))).toBeUndefined();
    });

    it('when an operator retries the failed pair job after the first partner revoked, then the item completes and the command becomes completed', async () => {
      const p = 'opretry';
      const hub = `${p}-c1`;
      const ann = 'ann.opretry@agency.test';
      await setup('p-100', { clients: [hub], employees: [ann] });
      await setup('p-200', { clients: [hub], employees: [ann] });
      expect((await assign('p-100', [hub], [ann])).items[0].outcome).toBe('pending');
      const rival = await assign('p-200', [hub], [ann]);
      expect(rival.state).toBe('failed');
      const job = await pairJob(rival.commandId, 0);

      // retried while p-100 still holds the email: refused again, the same way, listed once
      await job.retry();
      await waitFor(async () => (await job.getState()) === 'failed' && (await svc.sql<{ attempts: number }>('select attempts from command_item where command_id = ?', [rival.commandId]))[0]?.attempts === 2,
        { what: 'the first retry to be refused' });
      const refusedAgain = await commandStatus(rival.commandId);
      expect(refusedAgain.state).toBe('failed');
      expect(refusedAgain.items).toEqual(rival.items);
      const conflicts = (await svc.api.get('/v1/partners/p-200/conflicts', TOKENS.other)).body.conflicts.filter((c: any) => c.clientHubId === hub);
      expect(conflicts).toEqual([expect.objectContaining({ email: ann, commandId: rival.commandId })]);

      expect((await revoke('p-100', [hub], [ann])).items[0].outcome).toBe('revoked');
      await job.retry();

      let st: any;
      await waitFor(async () => {
        st = await commandStatus(rival.commandId);
        return st.state === 'completed';
      }, { what: 'the retried command to complete' });
      expect(st.items).toEqual([{ clientHubId: hub, employeeEmail: ann, state: 'completed', outcome: 'pending' }]);
      expect(st.error).toBeUndefined();
      await waitFor(async () => (await job.getState()) === 'completed', { what: 'the retried job to complete' });
      expect(await liveAccess(p)).toEqual([{ partner_id: 'p-200', hub_id: hub, email: ann, state: 'pending' }]);
      const mails = await settledMails(p, 2);
      expect(mails.filter((m) => m.subject.includes('Rival Agency'))).toHaveLength(1);
    });

    it('when another partner assigns an email that is active (a portal user) for the same client, then its pair fails with EMAIL_LINKED_TO_OTHER_PARTNER and nothing is sent', async () => {
      const p = 'dupact';
      const hub = `${p}-c1`;
      const ann = 'ann.dupact@agency.test';
      await setup('p-100', { clients: [[hub, { portalUserEmails: [ann] }]], employees: [ann] });
      await setup('p-200', { clients: [hub], employees: [ann] });
      expect((await assign('p-100', [hub], [ann])).items[0].outcome).toBe('active');

      const rival = await assign('p-200', [hub], [ann]);
      expect(rival.items).toEqual([{ clientHubId: hub, employeeEmail: ann, state: 'failed', error: { code: 'EMAIL_LINKED_TO_OTHER_PARTNER', message: LINKED_MESSAGE } }]);
      expect(JSON.stringify(rival)).not.toContain('p-100');
      expect(await liveAccess(p)).toEqual([{ partner_id: 'p-100', hub_id: hub, email: ann, state: 'active' }]);
      expect(await outboxOf(p)).toHaveLength(0);
    });

    it('when two partners assign the same fresh email to the same fresh client at the same moment, then exactly one wins every round and never two live rows exist', async () => {
      const rounds = 15;
      const p = 'race';
      const hubs = Array.from({ length: rounds }, (_, i) => `${p}-c${i}`);
      const emails = Array.from({ length: rounds }, (_, i) => `emp${i}.race@agency.test`);
      await Promise.all(['p-100', 'p-200'].map((partner) => setup(partner, { clients: hubs, employees: emails })));

      const winners: string[] = [];
      for (let i = 0; i < rounds; i++) {
        const cmd = { type: 'access.assign', clientHubIds: [hubs[i]], employeeEmails: [emails[i]] };
        const [a, b] = await Promise.all([post('p-100', cmd), post('p-200', cmd)]);
        const [sa, sb] = await Promise.all([svc.api.waitCommand(a), svc.api.waitCommand(b)]);
        const byPartner = { 'p-100': sa, 'p-200': sb };
        const won = Object.entries(byPartner).filter(([, s]) => s.state === 'completed');
        const lost = Object.entries(byPartner).filter(([, s]) => s.state === 'failed');
        expect(won).toHaveLength(1);
        expect(lost).toHaveLength(1);
        expect(won[0]![1].items[0].outcome).toBe('pending');
        expect(lost[0]![1].items[0].error).toEqual({ code: 'EMAIL_LINKED_TO_OTHER_PARTNER', message: LINKED_MESSAGE });
        winners.push(won[0]![0]);
        expect(await svc.sql(`select hub_id, email, count(*) from access where state in ('pending','active') group by 1, 2 having count(*) > 1`)).toEqual([]);
        expect((await liveAccess(p)).filter((r) => r.hub_id === hubs[i])).toEqual([
          { partner_id: won[0]![0], hub_id: hubs[i], email: emails[i], state: 'pending' },
        ]);
      }
      // one email per round, from the winner
      const mails = await settledMails(p, rounds);
      expect(mails).toHaveLength(rounds);
      for (let i = 0; i < rounds; i++) {
        const mine = mailsTo(contactOf(hubs[i]!));
        expect(mine).toHaveLength(1);
        expect(mine[0]!.subject).toContain(PARTNER_NAMES[winners[i]!]);
      }
    });
  });

  // ---- revoke and grant ---------------------------------------------------------------------------

  describe('revoking and granting', () => {
    it('when a live access is revoked, then it is revoked, and revoking it (or a never-assigned pair) again is unchanged', async () => {
      const p = 'rev';
      const [hub, ann, bob] = [`${p}-c1`, 'ann.rev@agency.test', 'bob.rev@agency.test'];
      await setup('p-100', { clients: [hub], employees: [ann, bob] });
      expect((await assign('p-100', [hub], [ann])).items[0].outcome).toBe('pending');
      const [mail] = await settledMails(p, 1);

      const st = await revoke('p-100', [hub], [ann, bob]);
      expect(st.state).toBe('completed');
      expect(st.items).toEqual([
        { clientHubId: hub, employeeEmail: ann, state: 'completed', outcome: 'revoked' },
        { clientHubId: hub, employeeEmail: bob, state: 'completed', outcome: 'unchanged' },
      ]);
      expect((await revoke('p-100', [hub], [ann])).items[0].outcome).toBe('unchanged');
      expect(await liveAccess(p)).toEqual([]);
      expect((await clientsOf('p-100', p))[0]!.employees).toEqual([]);
      // the pending link of a revoked pair no longer grants anything
      expect([404, 410]).toContain((await grantPost(linkIn(mail!))).status);
      expect(await liveAccess(p)).toEqual([]);
    });

    it('when access.grant is applied to a pending pair, then it is active as a membership of that pair only (not a portal user), so a re-assign after a revoke asks the client again', async () => {
      const p = 'grantcmd';
      const [hub, ann] = [`${p}-c1`, 'ann.grantcmd@agency.test'];
      await setup('p-100', { clients: [hub], employees: [ann] });
      expect((await assign('p-100', [hub], [ann])).items[0].outcome).toBe('pending');
      const [mail] = await settledMails(p, 1);

      const granted = await svc.api.apply('p-100', { type: 'access.grant', clientHubId: hub, employeeEmail: ann }, TOKENS.platform);
      expect(granted.state).toBe('completed');
      expect(granted.result).toMatchObject({ outcome: 'active' });
      expect((await clientsOf('p-100', p))[0]).toMatchObject({ managed: true, employees: [{ email: ann, access: 'active' }] });
      expect(await svc.sql('select email from portal_user where hub_id = ?', [hub])).toEqual([]);
      expect((await grantPage(linkIn(mail!))).status).toBe(410); // granted another way: the link is spent

      expect((await revoke('p-100', [hub], [ann])).items[0].outcome).toBe('revoked');
      const again = await assign('p-100', [hub], [ann]);
      expect(again.items).toEqual([{ clientHubId: hub, employeeEmail: ann, state: 'completed', outcome: 'pending' }]);
      expect(await outboxOf(p)).toHaveLength(2);
      expect(await settledMails(p, 2)).toHaveLength(2);
    });
  });

  // ---- cascades -------------------------------------------------------------------------------------

  describe('cascades', () => {
    it('when an employee with access to 60 clients is removed, then every access is revoked, reads show none and the pending links stop working', async () => {
      const p = 'casc';
      const n = 60;
      const ann = 'ann.casc@agency.test';
      const hubs = Array.from({ length: n }, (_, i) => `${p}-c${i}`);
      const portal = new Set(hubs.slice(0, 10)); // 10 active at once, 50 pending
      await setup('p-100', { clients: hubs.map((h) => (portal.has(h) ? [h, { portalUserEmails: [ann] }] as [string, Record<string, unknown>] : h)), employees: [ann] });

      const st = await assign('p-100', hubs, [ann]);
      expect(st.state).toBe('completed');
      expect(st.result).toEqual({ pairs: n, outcomes: { active: 10, pending: 50 } });
      const mails = await settledMails(p, 50);
      expect(mails).toHaveLength(50);
      const links = mails.map(linkIn);

      const removed = await apply('p-100', { type: 'employee.remove', email: ann });
      expect(removed.state).toBe('completed');
      expect(removed.result).toMatchObject({ revoked: n });

      expect(await liveAccess(p)).toEqual([]);
      const clients = await clientsOf('p-100', p);
      expect(clients).toHaveLength(n);
      expect(clients.filter((c) => c.employees.length > 0)).toEqual([]);
      const employees = await svc.api.get('/v1/partners/p-100/employees', TOKENS.crm);
      expect(employees.body.employees.find((e: any) => e.email === ann)).toMatchObject({ status: 'removed', tagged: false, clients: [] });

      const pages = await Promise.all(links.map(grantPage));
      expect(pages.filter((r) => r.status !== 410 && r.status !== 404).map((r) => r.status)).toEqual([]);
      const posts = await Promise.all(links.slice(0, 5).map(grantPost));
      expect(posts.filter((r) => r.status !== 410 && r.status !== 404).map((r) => r.status)).toEqual([]);
      expect(await liveAccess(p)).toEqual([]);
    });

    it('when a client is terminated, then it shows terminated, its accesses are revoked and new assigns fail, until client.upsert re-activates it', async () => {
      const p = 'term';
      const [hub, ann, bob] = [`${p}-c1`, 'ann.term@agency.test', 'bob.term@agency.test'];
      await setup('p-100', { clients: [[hub, { portalUserEmails: [bob] }]], employees: [ann, bob] });
      const st = await assign('p-100', [hub], [ann, bob]);
      expect(st.items.map((i: any) => i.outcome)).toEqual(['pending', 'active']);
      const [mail] = await settledMails(p, 1);

      const terminated = await apply('p-100', { type: 'client.terminate', hubId: hub });
      expect(terminated.state).toBe('completed');
      expect(terminated.result).toMatchObject({ revoked: 2 });
      expect(await clientsOf('p-100', p)).toEqual([expect.objectContaining({ hubId: hub, status: 'terminated', managed: false, employees: [] })]);
      expect(await liveAccess(p)).toEqual([]);
      expect([404, 410]).toContain((await grantPage(linkIn(mail!))).status);

      await expectRefusedAtOnce(await assign('p-100', [hub], [ann]), 'CLIENT_TERMINATED');

      await setup('p-100', { clients: [hub] });
      expect((await clientsOf('p-100', p))[0]!.status).toBe('active');
      const back = await assign('p-100', [hub], [ann, bob]);
      expect(back.state).toBe('completed');
      expect(back.items.map((i: any) => i.outcome)).toEqual(['pending', 'active']);
      const mails = await settledMails(p, 2);
      expect((await grantPage(linkIn(mails[1]!))).status).toBe(200);
    });
  });

  // ---- ordering -----------------------------------------------------------------------------------

  describe('ordering by issuedAt', () => {
    const t = (minutes: number) => new Date(Date.UTC(2026, 0, 1, 12, minutes)).toISOString();

    it('when an older access.assign arrives after a newer access.revoke was applied, then it is superseded and the pair stays revoked', async () => {
      const p = 'ord1';
      const [hub, ann] = [`${p}-c1`, 'ann.ord1@agency.test'];
      await setup('p-100', { clients: [hub], employees: [ann] });
      expect((await assign('p-100', [hub], [ann], { issuedAt: t(0) })).items[0].outcome).toBe('pending');
      expect((await revoke('p-100', [hub], [ann], { issuedAt: t(20) })).items[0].outcome).toBe('revoked');

      const late = await assign('p-100', [hub], [ann], { issuedAt: t(10) });
      expect(late.state).toBe('completed');
      expect(late.items).toEqual([{ clientHubId: hub, employeeEmail: ann, state: 'completed', outcome: 'superseded' }]);
      expect(await svc.sql('select state from access where hub_id = ?', [hub])).toEqual([{ state: 'revoked' }]);
      expect(await outboxOf(p)).toHaveLength(1);

      // a newer assign still works
      expect((await assign('p-100', [hub], [ann], { issuedAt: t(30) })).items[0].outcome).toBe('pending');
      expect(await settledMails(p, 2)).toHaveLength(2);
    });

    it('when a revoke of a never-assigned pair is followed by an older assign, then the assign is superseded and nothing is live or sent', async () => {
      const p = 'ord2';
      const [hub, ann] = [`${p}-c1`, 'ann.ord2@agency.test'];
      await setup('p-100', { clients: [hub], employees: [ann] });
      const rev = await revoke('p-100', [hub], [ann], { issuedAt: t(20) });
      expect(rev.items).toEqual([{ clientHubId: hub, employeeEmail: ann, state: 'completed', outcome: 'unchanged' }]);

      const late = await assign('p-100', [hub], [ann], { issuedAt: t(10) });
      expect(late.items).toEqual([{ clientHubId: hub, employeeEmail: ann, state: 'completed', outcome: 'superseded' }]);
      expect(await liveAccess(p)).toEqual([]);
      expect(await outboxOf(p)).toHaveLength(0);
      expect((await clientsOf('p-100', p))[0]!.employees).toEqual([]);

      expect((await assign('p-100', [hub], [ann], { issuedAt: t(30) })).items[0].outcome).toBe('pending');
      expect(await settledMails(p, 1)).toHaveLength(1);
    });
  });

  // ---- grant links ------------------------------------------------------------------------------------

  describe('the grant link', () => {
    /** Assigns one pending pair and returns the link from its email. */
    async function pendingLink(p: string, partnerId = 'p-100'): Promise<{ hub: string; ann: string; link: string }> {
      const [hub, ann] = [`${p}-c1`, `ann.${p}@agency.test`];
      await setup(partnerId, { clients: [hub], employees: [ann] });
      expect((await assign(partnerId, [hub], [ann])).items[0].outcome).toBe('pending');
      const [mail] = await settledMails(p, 1);
      return { hub, ann, link: linkIn(mail!) };
    }

    it('when a valid link is opened, then the page names the partner, and posting it makes the access active once', async () => {
      const { hub, ann, link } = await pendingLink('gl1');
      const page = await grantPage(link);
      expect(page.status).toBe(200);
      expect(String(page.body)).toContain('Acme Partners');
      expect(String(page.body)).toContain(ann);
      expect(String(page.body)).toContain('Grant access');
      expect(await liveAccess('gl1')).toEqual([{ partner_id: 'p-100', hub_id: hub, email: ann, state: 'pending' }]); // GET changes nothing

      const post1 = await grantPost(link);
      expect(post1.status).toBe(200);
      expect(await liveAccess('gl1')).toEqual([{ partner_id: 'p-100', hub_id: hub, email: ann, state: 'active' }]);
      expect((await clientsOf('p-100', 'gl1'))[0]).toMatchObject({ managed: true, employees: [{ email: ann, access: 'active' }] });
      // the grant's membership is the pair itself (granted_at), not a platform portal user
      expect(await svc.sql('select email from portal_user where hub_id = ?', [hub])).toEqual([]);
      expect(await svc.sql('select granted_at is not null as granted from access where hub_id = ? and email = ?', [hub, ann])).toEqual([{ granted: true }]);
    });

    it('when a used link is posted or opened again, then it answers 410', async () => {
      const { link } = await pendingLink('gl2');
      expect((await grantPost(link)).status).toBe(200);
      expect((await grantPost(link)).status).toBe(410);
      expect((await grantPage(link)).status).toBe(410);
    });

    it('when a link is posted twice at the same moment, then exactly one post grants and the other answers 410', async () => {
      const { hub, ann, link } = await pendingLink('gl2b');
      const statuses = (await Promise.all([grantPost(link), grantPost(link)])).map((r) => r.status).sort();
      expect(statuses).toEqual([200, 410]);
      expect(await liveAccess('gl2b')).toEqual([{ partner_id: 'p-100', hub_id: hub, email: ann, state: 'active' }]);
      expect(await svc.sql(`select count(*)::int as n from command where type = 'access.grant' and payload->>'clientHubId' = ?`, [hub])).toEqual([{ n: 1 }]);
    });

    it('when a link has expired, then it answers 410 and the access stays pending', async () => {
      const { hub, ann, link } = await pendingLink('gl3');
      await svc.sql(`update grant_token set expires_at = now() - interval '1 second' where hub_id = ?`, [hub]);
      expect((await grantPage(link)).status).toBe(410);
      expect((await grantPost(link)).status).toBe(410);
      expect(await liveAccess('gl3')).toEqual([{ partner_id: 'p-100', hub_id: hub, email: ann, state: 'pending' }]);
    });

    it('when a link is tampered with, then it answers 404 and grants nothing, while the real link still works', async () => {
      const { hub, ann, link } = await pendingLink('gl4');
      const i = link.length - 10;
      const tampered = link.slice(0, i) + (link[i] === 'A' ? 'B' : 'A') + link.slice(i + 1);
      expect(tampered).not.toBe(link);
      expect((await grantPage(tampered)).status).toBe(404);
      expect((await grantPost(tampered)).status).toBe(404);
      expect((await grantPost(`${link}x`)).status).toBe(404);
      expect(await liveAccess('gl4')).toEqual([{ partner_id: 'p-100', hub_id: hub, email: ann, state: 'pending' }]);
      expect((await grantPage(link)).status).toBe(200);
    });

    it('when one of several pending links is granted, then only its own pair becomes active', async () => {
      const p = 'gl5';
      const hubs = [`${p}-c1`, `${p}-c2`];
      const emails = ['ann.gl5@agency.test', 'bob.gl5@agency.test'];
      await setup('p-100', { clients: hubs, employees: emails });
      expect((await assign('p-100', hubs, emails)).items.map((i: any) => i.outcome)).toEqual(['pending', 'pending', 'pending', 'pending']);
      await settledMails(p, 2); // one email per client, each naming both employees
      const mail = mailsTo(contactOf(hubs[1]!)).find((m) => m.text.includes(emails[0]!));
      expect(mail).toBeDefined();
      const granted = linkFor(mail!, emails[0]!);

      expect((await grantPost(granted)).status).toBe(200);
      expect(await liveAccess(p)).toEqual([
        { partner_id: 'p-100', hub_id: hubs[0], email: emails[0], state: 'pending' },
        { partner_id: 'p-100', hub_id: hubs[0], email: emails[1], state: 'pending' },
        { partner_id: 'p-100', hub_id: hubs[1], email: emails[0], state: 'active' },
        { partner_id: 'p-100', hub_id: hubs[1], email: emails[1], state: 'pending' },
      ]);
      // the other links still work
      const others = svc.smtp.messages.filter((x) => x.to.includes(`boss.${p}-`)).flatMap(linksIn).filter((l) => l !== granted);
      expect(others).toHaveLength(3);
      for (const l of others) expect((await grantPage(l)).status).toBe(200);
    });
  });
});
