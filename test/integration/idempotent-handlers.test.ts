import type { Job } from 'bullmq';
import { startService, TOKENS, waitFor, type TestService } from '../helpers/harness.js';
import { parseCommand, type Command } from '../../src/commands/schemas.js';
import { handlers, type HandlerEnv, type HandlerResult } from '../../src/commands/handlers.js';
import { processPairJob, splitPairRange } from '../../src/workers/pairs.js';
import { INLINE_CLAIM_MS } from '../../src/workers/inline-mail.js';
import { jobIds } from '../../src/jobs/contracts.js';

/**
 * "An idempotent worker": every handler, the pair job and the command job can run twice on the
 * same input (a redelivery, a stalled job taken over, an operator retry, the reconciler) and the
 * second run changes nothing and sends nothing.
 */

/** The tables a worker writes, each with a stable order. */
const TABLES: Record<string, string> = {
  partner: 'id',
  employee: 'partner_id, email',
  client: 'partner_id, hub_id',
  client_account: 'hub_id',
  portal_user: 'hub_id, email',
  access: 'partner_id, hub_id, email',
  grant_token: 'token_hash',
  outbox: 'id',
  sale: 'partner_id, sale_id',
  churn: 'partner_id, hub_id, on_date',
  conflict: 'id',
  credit_snapshot: 'partner_id',
  command: 'id',
  command_item: 'command_id, idx',
};
/** Columns that are bookkeeping, not state: write times, and the delivery progress of an outbox row (the mail worker's, not the handler's). */
const VOLATILE = new Set(['updated_at', 'created_at', 'calculated_at', 'started_at', 'finished_at', 'enqueued_at']);
const OUTBOX_DELIVERY = new Set(['state', 'attempts', 'error', 'message_id', 'sent_at']);

const contactOf = (hubId: string) => `boss.${hubId}@clients.test`;

describe('an idempotent worker', () => {
  let svc: TestService;

  async function snapshot(): Promise<Record<string, unknown[]>> {
    const out: Record<string, unknown[]> = {};
    for (const [table, order] of Object.entries(TABLES)) {
      const rows = await svc.sql<Record<string, unknown>>(`select * from ${table} order by ${order}`);
      out[table] = rows.map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !VOLATILE.has(k) && !(table === 'outbox' && OUTBOX_DELIVERY.has(k)))));
    }
    return out;
  }

  /** Nothing of the service is still moving: no unfinished command, no unsent email. */
  async function settle(): Promise<void> {
    await waitFor(async () => {
      const [r] = await svc.sql<{ open: number; unsent: number }>(
        `select (select count(*)::int from command where state in ('waiting', 'active')) as open,
                (select count(*)::int from outbox where state = 'pending') as unsent`);
      return r!.open === 0 && r!.unsent === 0;
    }, { what: 'the service to be idle' });
  }

  const apply = async (partnerId: string, command: Record<string, unknown>) => {
    const s = await svc.api.apply(partnerId, command, TOKENS.admin);
    expect({ type: s.type, state: s.state, error: s.error }).toEqual({ type: command.type, state: 'completed', error: undefined });
    return s;
  };

  const parsed = (raw: Record<string, unknown>): Command => {
    const r = parseCommand(raw);
    if (!r.ok) throw new Error(JSON.stringify(r.issues));
    return r.command;
  };

  /** Runs one handler directly, in its own transaction, as the command worker would. */
  async function runHandler(partnerId: string, command: Command, commandId: string): Promise<HandlerResult> {
    const env: HandlerEnv = { partnerId, commandId, issuedAt: null, now: new Date(), renewalAlertDays: 90 };
    const em = svc.db.em.fork();
    const handler = (handlers as unknown as Record<string, (tx: unknown, c: Command, e: HandlerEnv) => Promise<HandlerResult>>)[command.type]!;
    return em.transactional((tx) => handler(tx, command, env));
  }

  beforeAll(async () => {
    svc = await startService();
    await apply('p-100', { type: 'partner.upsert', name: 'Acme Partners', team: { channelAccountManager: { name: 'Carla Manager', email: 'carla.cam@partner-program.test' } } });
  });

  afterAll(async () => {
    await svc.close();
  });

  // ---- every non-pair handler, run twice ---------------------------------------------------------

  interface Case {
    name: string;
    partnerId?: string;
    arrange?: () => Promise<void>;
    command: Record<string, unknown>;
    /** What the first run must have done (so the test can fail when nothing happens). */
    check: (s: Record<string, any[]>) => void;
  }

  const cases: Case[] = [
    {
      name: 'partner.upsert',
      partnerId: 'p-idem-new',
      command: { type: 'partner.upsert', name: 'New Partner', emailDomains: ['new.test'], team: { channelConsultant: { name: 'Con Sultant', email: 'con@program.test' } } },
      check: (s) => expect(s.partner!.find((p) => p.id === 'p-idem-new')).toMatchObject({ name: 'New Partner', email_domains: ['new.test'] }),
    },
    {
      name: 'employee.tag',
      command: { type: 'employee.tag', email: 'Tag.Me@Agency.test', name: 'Tag Me' },
      check: (s) => expect(s.employee!.find((e) => e.email === 'tag.me@agency.test')).toMatchObject({ tagged: true, status: 'active', name: 'Tag Me' }),
    },
    {
      name: 'employee.untag',
      arrange: async () => { await apply('p-100', { type: 'employee.tag', email: 'untag.me@agency.test' }); },
      command: { type: 'employee.untag', email: 'untag.me@agency.test' },
      check: (s) => expect(s.employee!.find((e) => e.email === 'untag.me@agency.test')).toMatchObject({ tagged: false, status: 'active' }),
    },
    {
      name: 'employee.remove',
      arrange: async () => {
        await apply('p-100', { type: 'employee.tag', email: 'remove.me@agency.test' });
        for (const h of ['rm-c1', 'rm-c2']) await apply('p-100', { type: 'client.upsert', hubId: h, name: h, contactEmail: contactOf(h), portalUserEmails: h === 'rm-c2' ? ['remove.me@agency.test'] : [] });
        await apply('p-100', { type: 'access.assign', clientHubIds: ['rm-c1', 'rm-c2'], employeeEmails: ['remove.me@agency.test'] });
      },
      command: { type: 'employee.remove', email: 'remove.me@agency.test' },
      check: (s) => {
        expect(s.employee!.find((e) => e.email === 'remove.me@agency.test')).toMatchObject({ tagged: false, status: 'removed' });
        expect(s.access!.filter((a) => a.email === 'remove.me@agency.test').map((a) => a.state)).toEqual(['revoked', 'revoked']);
        expect(s.grant_token!.filter((g) => g.email === 'remove.me@agency.test').every((g) => new Date(g.expires_at).getTime() <= Date.now())).toBe(true);
      },
    },
    {
      name: 'client.upsert',
      command: {
        type: 'client.upsert', hubId: 'up-c1', name: 'Upsert Client', contactEmail: contactOf('up-c1'), locale: 'de', mrr: 250, products: ['crm'], renewalDate: '2027-03-01',
        portalUserEmails: ['Portal.User@up.test'], companyInfo: { domain: 'up.test', employees: 12 }, platformEngagementScore: 70,
      },
      check: (s) => {
        // the partner's list entry holds the relationship, the client's one shared record the platform's facts
        expect(s.client!.find((c) => c.hub_id === 'up-c1')).toMatchObject({ name: 'Upsert Client', status: 'active' });
        expect(s.client_account!.find((c) => c.hub_id === 'up-c1')).toMatchObject({ locale: 'de', products: ['crm'], info: { companyInfo: { domain: 'up.test', employees: 12 }, platformEngagementScore: 70 } });
        expect(s.portal_user!.filter((p) => p.hub_id === 'up-c1')).toEqual([{ hub_id: 'up-c1', email: 'portal.user@up.test' }]);
      },
    },
    {
      name: 'client.terminate',
      arrange: async () => {
        await apply('p-100', { type: 'employee.tag', email: 'term.emp@agency.test' });
        await apply('p-100', { type: 'client.upsert', hubId: 'term-c1', name: 'Term', contactEmail: contactOf('term-c1') });
        await apply('p-100', { type: 'access.assign', clientHubIds: ['term-c1'], employeeEmails: ['term.emp@agency.test'] });
      },
      command: { type: 'client.terminate', hubId: 'term-c1' },
      check: (s) => {
        expect(s.client!.find((c) => c.hub_id === 'term-c1')).toMatchObject({ status: 'terminated' });
        expect(s.access!.filter((a) => a.hub_id === 'term-c1').map((a) => a.state)).toEqual(['revoked']);
      },
    },
    {
      name: 'access.grant',
      arrange: async () => {
        await apply('p-100', { type: 'employee.tag', email: 'grant.emp@agency.test' });
        await apply('p-100', { type: 'client.upsert', hubId: 'grant-c1', name: 'Grant', contactEmail: contactOf('grant-c1') });
        await apply('p-100', { type: 'access.assign', clientHubIds: ['grant-c1'], employeeEmails: ['grant.emp@agency.test'] });
      },
      command: { type: 'access.grant', clientHubId: 'grant-c1', employeeEmail: 'grant.emp@agency.test' },
      check: (s) => {
        expect(s.access!.filter((a) => a.hub_id === 'grant-c1').map((a) => a.state)).toEqual(['active']);
        // the grant's membership is the pair (granted_at), not a platform portal user
        expect(s.access!.filter((a) => a.hub_id === 'grant-c1').map((a) => a.granted_at !== null)).toEqual([true]);
        expect(s.portal_user!.filter((p) => p.hub_id === 'grant-c1')).toEqual([]);
      },
    },
    {
      name: 'sale.record',
      command: { type: 'sale.record', saleId: 'sale-1', clientHubId: 'sale-c1', closedOn: '2026-02-10', mrr: 300 },
      check: (s) => expect(s.sale!.filter((x) => x.sale_id === 'sale-1')).toEqual([expect.objectContaining({ hub_id: 'sale-c1', mrr: '300.00' })]),
    },
    {
      name: 'client.churn',
      command: { type: 'client.churn', clientHubId: 'sale-c1', on: '2026-06-15' },
      check: (s) => expect(s.churn!.filter((x) => x.hub_id === 'sale-c1')).toHaveLength(1),
    },
    {
      name: 'credit.recalculate',
      command: { type: 'credit.recalculate' },
      check: (s) => expect(s.credit_snapshot!.filter((x) => x.partner_id === 'p-100')).toHaveLength(1),
    },
    {
      name: 'team.email',
      command: { type: 'team.email', to: 'channelAccountManager', subject: 'Twice?', body: 'Only once, please.' },
      check: (s) => expect(s.outbox!.filter((o) => o.kind === 'team.email' && o.payload.subject === 'Twice?')).toHaveLength(1),
    },
  ];

  it.each(cases.map((c) => [c.name, c] as const))('when the %s handler runs twice on the same command, then the second run changes nothing', async (name, c) => {
    await c.arrange?.();
    await settle();
    const partnerId = c.partnerId ?? 'p-100';
    const command = parsed(c.command);
    const commandId = `idem.${name}`;
    const before = await snapshot();

    const first = await runHandler(partnerId, command, commandId);
    const afterFirst = await snapshot();
    expect(afterFirst).not.toEqual(before);
    c.check(afterFirst);

    const second = await runHandler(partnerId, command, commandId);
    const afterSecond = await snapshot();
    expect(afterSecond).toEqual(afterFirst);
    expect(second.outboxIds).toEqual([]);
    if (name === 'team.email') expect(first.outboxIds).toHaveLength(1);
  });

  it('when every non-pair handler was covered, then none is missing', () => {
    const pairTypes = ['access.assign', 'access.revoke'];
    expect(Object.keys(handlers).sort()).toEqual(cases.map((c) => c.name).filter((n) => !pairTypes.includes(n)).sort());
  });

  // ---- the pair job ---------------------------------------------------------------------------------

  describe('the pair job', () => {

    /**
     * Tags the employee, upserts the clients and posts one assign of all of them while the pairs
     * queue is paused; `whilePaused` runs once the command's range job is queued. Returns the commandId.
     */
    async function assignWhilePaused(hubs: string[], email: string, whilePaused: (commandId: string) => Promise<void>): Promise<string> {
      await apply('p-100', { type: 'employee.tag', email });
      for (const hub of hubs) await apply('p-100', { type: 'client.upsert', hubId: hub, name: hub, contactEmail: contactOf(hub) });
      const pairs = svc.app.ctx.queues.pairs;
      await pairs.pause();
      try {
        const r = await svc.api.post('p-100', { type: 'access.assign', clientHubIds: hubs, employeeEmails: [email] }, TOKENS.admin);
        expect(r.status).toBe(202);
        const commandId = r.body.commandId as string;
        await waitFor(async () => (await pairs.getJob(jobIds.pairRange(commandId, 0, hubs.length))) !== undefined, { what: 'the range job' });
        await whilePaused(commandId);
        return commandId;
      } finally {
        await pairs.resume();
      }
    }

    it('when an applied assign pair is processed twice more, then the state is the same and only one email was sent', async () => {
      const [hub, email] = ['pj-c1', 'pj.emp@agency.test'];
      await apply('p-100', { type: 'employee.tag', email });
      await apply('p-100', { type: 'client.upsert', hubId: hub, name: hub, contactEmail: contactOf(hub) });
      const st = await apply('p-100', { type: 'access.assign', clientHubIds: [hub], employeeEmails: [email] });
      expect(st.items[0].outcome).toBe('pending');
      await settle();
      const before = await snapshot();

      expect(await processPairJob(svc.app.ctx, { commandId: st.commandId, idx: 0 }, { type: 'access.assign' })).toEqual({ outcome: 'pending' });
      expect(await processPairJob(svc.app.ctx, { commandId: st.commandId, idx: 0 }, { type: 'access.assign' })).toEqual({ outcome: 'pending' });
      expect(await snapshot()).toEqual(before);
      await settle();
      expect(svc.smtp.messages.filter((m) => m.to.includes(contactOf(hub)))).toHaveLength(1);
      expect(await svc.sql(`select count(*)::int as n from outbox where payload->>'hubId' = ?`, [hub])).toEqual([{ n: 1 }]);
    });

    it('when a pair not yet applied is processed twice at the same moment and then by its queued job, then it is applied once with one email and the command counters stay right', async () => {
      // Two pairs: a command of one pair is applied by its command job's run, with no pair job at all.
      const [hub, hub2, email] = ['pj-c2', 'pj-c2b', 'pj2.emp@agency.test'];
      await apply('p-100', { type: 'employee.tag', email });
      await apply('p-100', { type: 'client.upsert', hubId: hub, name: hub, contactEmail: contactOf(hub) });
      await apply('p-100', { type: 'client.upsert', hubId: hub2, name: hub2, contactEmail: contactOf(hub2) });
      const pairs = svc.app.ctx.queues.pairs;
      await pairs.pause();
      let commandId = '';
      try {
        const r = await svc.api.post('p-100', { type: 'access.assign', clientHubIds: [hub, hub2], employeeEmails: [email] }, TOKENS.admin);
        expect(r.status).toBe(202);
        commandId = r.body.commandId;
        await waitFor(async () => (await svc.sql('select 1 from command_item where command_id = ?', [commandId])).length === 2, { what: 'the fan-out' });

        const outs = await Promise.all([processPairJob(svc.app.ctx, { commandId, idx: 0 }, { type: 'access.assign' }), processPairJob(svc.app.ctx, { commandId, idx: 0 }, { type: 'access.assign' })]);
        expect(outs).toEqual([{ outcome: 'pending' }, { outcome: 'pending' }]);
      } finally {
        await pairs.resume();
      }
      await waitFor(async () => (await (await pairs.getJob(jobIds.pairRange(commandId, 0, 2)))?.getState()) === 'completed', { what: 'the queued range job' });
      await settle();

      const [cmd] = await svc.sql('select state, items_total, result from command where id = ?', [commandId]);
      expect(cmd).toEqual({ state: 'completed', items_total: 2, result: { pairs: 2, outcomes: { pending: 2 }, outcome: 'pending' } });
      expect(await svc.sql('select state, outcome, attempts from command_item where command_id = ? order by idx', [commandId])).toEqual([0, 1].map(() => ({ state: 'completed', outcome: 'pending', attempts: 1 })));
      expect(await svc.sql('select state from access where hub_id = ?', [hub])).toEqual([{ state: 'pending' }]);
      expect(await svc.sql('select count(*)::int as n from grant_token where hub_id = ?', [hub])).toEqual([{ n: 1 }]);
      expect(await svc.sql(`select count(*)::int as n from outbox where payload->>'hubId' = ?`, [hub])).toEqual([{ n: 1 }]);
      expect(svc.smtp.messages.filter((m) => m.to.includes(contactOf(hub)))).toHaveLength(1);
    });

    it('when a range job used up its attempts, then each open pair of the range gets a job of its own and is applied there once', async () => {
      const hubs = ['pj-s1', 'pj-s2', 'pj-s3'];
      const pairs = svc.app.ctx.queues.pairs;
      const commandId = await assignWhilePaused(hubs, 'pjs.emp@agency.test', async (id) => {
        await splitPairRange(svc.app.ctx, 'access.assign', { commandId: id, from: 0, to: 3 });
        const own = await Promise.all([0, 1, 2].map((idx) => pairs.getJob(jobIds.pair(id, idx))));
        expect(own.map((j) => j?.data)).toEqual([0, 1, 2].map((idx) => ({ commandId: id, idx })));
        // The exhausted range job is out of the way (as a failed job would be): only the pairs' own jobs apply them.
        await (await pairs.getJob(jobIds.pairRange(id, 0, 3)))!.remove();
      });
      await settle();
      for (const idx of [0, 1, 2]) {
        const job = (await pairs.getJob(jobIds.pair(commandId, idx)))!;
        expect({ idx, state: await job.getState(), value: job.returnvalue }).toEqual({ idx, state: 'completed', value: { outcome: 'pending' } });
      }
      expect((await svc.api.waitCommand(commandId)).state).toBe('completed');
      expect(await svc.sql('select idx, state, outcome, attempts from command_item where command_id = ? order by idx', [commandId]))
        .toEqual([0, 1, 2].map((idx) => ({ idx, state: 'completed', outcome: 'pending', attempts: 1 })));
      for (const hub of hubs) expect(svc.smtp.messages.filter((m) => m.to.includes(contactOf(hub)))).toHaveLength(1);
    });

    it('when a range job failed without settling its pairs (as an older worker that cannot read it would), then the reconciler gives each open pair its own job and the command completes', async () => {
      const hubs = ['pj-f1', 'pj-f2'];
      const pairs = svc.app.ctx.queues.pairs;
      const commandId = await assignWhilePaused(hubs, 'pjf.emp@agency.test', async (id) => {
        // The range job's id now holds a job that fails at once without touching the pairs.
        await (await pairs.getJob(jobIds.pairRange(id, 0, 2)))!.remove();
        await pairs.add('access.assign', { commandId: id, from: 'unreadable' } as never, { jobId: jobIds.pairRange(id, 0, 2) });
      });
      await waitFor(async () => (await (await pairs.getJob(jobIds.pairRange(commandId, 0, 2)))!.getState()) === 'failed', { what: 'the unreadable range job to fail' });
      await settle();
      expect((await svc.api.waitCommand(commandId)).state).toBe('completed');
      for (const idx of [0, 1]) expect(await (await pairs.getJob(jobIds.pair(commandId, idx)))!.getState()).toBe('completed');
      for (const hub of hubs) expect(svc.smtp.messages.filter((m) => m.to.includes(contactOf(hub)))).toHaveLength(1);
    });

    it('when a range job is taken over from a worker that died before sending its emails, then claims past their start deadline are released to mail jobs; a first run, or a claim just taken, is left alone', async () => {
      const [hub, email] = ['pj-r1', 'pjr.emp@agency.test'];
      await apply('p-100', { type: 'employee.tag', email });
      await apply('p-100', { type: 'client.upsert', hubId: hub, name: hub, contactEmail: contactOf(hub) });
      const st = await apply('p-100', { type: 'access.assign', clientHubIds: [hub], employeeEmails: [email] });
      await settle();
      const [row] = await svc.sql<{ id: string }>(`select id from outbox where payload->>'hubId' = ?`, [hub]);
      const id = String(row!.id);
      const range = { commandId: st.commandId, from: 0, to: 1 };
      const claimedAgo = (seconds: number) => svc.sql(
        `update outbox set state = 'pending', sent_at = null, message_id = null, claimed_until = now() + make_interval(secs => ?) where id = ?`,
        [(INLINE_CLAIM_MS / 1000) - seconds, id]);
      const stillClaimed = async () => expect(await svc.sql('select state, claimed_until is not null as claimed from outbox where id = ?', [id])).toEqual([{ state: 'pending', claimed: true }]);

      // Just committed: its worker may still be sending it, even if it lost its lock.
      await claimedAgo(0);
      await processPairJob(svc.app.ctx, range, { type: 'access.assign', retaken: true });
      expect(await svc.app.ctx.queues.mail.getJob(jobIds.mail(id))).toBeUndefined();
      await stillClaimed();

      // Committed 30 s ago and never sent (a crash between the commit and the send): a first run leaves it.
      await claimedAgo(30);
      expect(await processPairJob(svc.app.ctx, range, { type: 'access.assign', retaken: false })).toEqual({ pairs: 0 });
      expect(await svc.app.ctx.queues.mail.getJob(jobIds.mail(id))).toBeUndefined();
      await stillClaimed();

      const before = svc.smtp.messages.length;
      await processPairJob(svc.app.ctx, range, { type: 'access.assign', retaken: true });
      expect(await svc.app.ctx.queues.mail.getJob(jobIds.mail(id))).toBeDefined();
      await settle();
      expect(await svc.sql('select state, claimed_until from outbox where id = ?', [id])).toEqual([{ state: 'sent', claimed_until: null }]);
      expect(svc.smtp.messages.length).toBe(before + 1);
    });
  });

  // ---- the command job ------------------------------------------------------------------------------

  describe('the command job', () => {
    let replays = 0;
    /** Adds the command's job again under a new job id, as a redelivery would, and waits for it to finish. */
    async function replay(commandId: string): Promise<Job> {
      const job = await svc.app.ctx.queues.commands.add('replay', { commandId }, { jobId: `replay.${++replays}` });
      await waitFor(async () => ['completed', 'failed'].includes(await job.getState()), { what: 'the replayed command job' });
      return (await svc.app.ctx.queues.commands.getJob(job.id!))!;
    }

    const withoutCommandLog = (snap: Record<string, unknown[]>) => Object.fromEntries(Object.entries(snap).filter(([t]) => t !== 'command'));

    const jobCounts = async () => {
      const q = svc.app.ctx.queues;
      return { pairs: await q.pairs.getJobCounts('completed', 'failed', 'waiting', 'delayed', 'active'), mail: await q.mail.getJobCounts('completed', 'failed', 'waiting', 'delayed', 'active') };
    };

    it('when the job of a completed command is replayed, then nothing changes and nothing is sent again', async () => {
      const team = await apply('p-100', { type: 'team.email', to: 'channelAccountManager', subject: 'Replay me', body: 'once' });
      await apply('p-100', { type: 'employee.tag', email: 'rp.emp@agency.test' });
      await apply('p-100', { type: 'client.upsert', hubId: 'rp-c1', name: 'rp', contactEmail: contactOf('rp-c1') });
      const assign = await apply('p-100', { type: 'access.assign', clientHubIds: ['rp-c1'], employeeEmails: ['rp.emp@agency.test'] });
      expect(assign.items[0].outcome).toBe('pending');
      await settle();
      const before = await snapshot();
      const countsBefore = await jobCounts();
      const mailsBefore = svc.smtp.messages.length;

      for (const id of [team.commandId, assign.commandId]) expect(await (await replay(id)).getState()).toBe('completed');

      await settle();
      expect(await snapshot()).toEqual(before);
      expect(await jobCounts()).toEqual(countsBefore);
      expect(svc.smtp.messages.length).toBe(mailsBefore);
      const status = await svc.api.get(`/v1/commands/${assign.commandId}`);
      expect(status.body).toMatchObject({ state: 'completed', attempts: assign.attempts, items: assign.items });
    });

    it('when the job of a failed command is replayed, then it stays failed with its error and nothing else changes', async () => {
      const partnerId = 'p-idem-fail1';
      await apply(partnerId, { type: 'partner.upsert', name: 'Failing Partner One' });
      const untag = await svc.api.apply(partnerId, { type: 'employee.untag', email: 'nobody@agency.test' }, TOKENS.admin);
      expect(untag).toMatchObject({ state: 'failed', error: { code: 'UNKNOWN_EMPLOYEE' } });
      await settle();
      const before = await snapshot();
      const countsBefore = await jobCounts();

      await replay(untag.commandId);

      const now = (await svc.api.get(`/v1/commands/${untag.commandId}`)).body;
      expect({ state: now.state, error: now.error }).toEqual({ state: 'failed', error: untag.error });
      expect(await jobCounts()).toEqual(countsBefore);
      expect(withoutCommandLog(await snapshot())).toEqual(withoutCommandLog(before));
    });

    /** A partner whose access.assign failed (its only pair names an unknown client). */
    async function failedPairCommand(partnerId: string) {
      await apply(partnerId, { type: 'partner.upsert', name: `Partner ${partnerId}` });
      await apply(partnerId, { type: 'employee.tag', email: `emp.${partnerId}@agency.test` });
      const pair = await svc.api.apply(partnerId, { type: 'access.assign', clientHubIds: ['no-such-client'], employeeEmails: [`emp.${partnerId}@agency.test`] }, TOKENS.admin);
      expect(pair).toMatchObject({ state: 'failed', error: { code: 'UNKNOWN_CLIENT' }, items: [{ state: 'failed', error: { code: 'UNKNOWN_CLIENT' } }] });
      await settle();
      return pair;
    }

    it('when the job of a failed access.assign is replayed, then the command stays failed with its error and items', async () => {
      const pair = await failedPairCommand('p-idem-fail2');
      const before = await snapshot();
      const countsBefore = await jobCounts();

      await replay(pair.commandId);

      const now = (await svc.api.get(`/v1/commands/${pair.commandId}`)).body;
      expect({ state: now.state, error: now.error, items: now.items }).toEqual({ state: 'failed', error: pair.error, items: pair.items });
      expect(await jobCounts()).toEqual(countsBefore);
      expect(withoutCommandLog(await snapshot())).toEqual(withoutCommandLog(before));
    });

    it('when the job of a failed access.assign is replayed, then the partner\'s later commands still apply', async () => {
      const partnerId = 'p-idem-fail3';
      const pair = await failedPairCommand(partnerId);

      await replay(pair.commandId);

      const r = await svc.api.post(partnerId, { type: 'employee.tag', email: 'later@agency.test' }, TOKENS.admin);
      expect(r.status).toBe(202);
      let state = '';
      await waitFor(async () => ['completed', 'failed'].includes(state = (await svc.api.get(`/v1/commands/${r.body.commandId}`)).body.state), { timeoutMs: 5000, what: 'the later command to finish' })
        .catch(() => undefined);
      expect(state).toBe('completed');
    });
  });
});
