import { defaultTierThresholds } from '../../config/tiers.js';
import type { Job } from 'bullmq';
import { startService, TOKENS, waitFor, type TestService } from '../helpers/harness.js';
import { jobIds } from '../../src/jobs/contracts.js';
import { processCreditJob } from '../../src/workers/credit-jobs.js';
import { recalcGroupJobId } from '../../src/jobs/contracts.js';

/**
 * Credit and tier end to end (contract §1 "Credit and tier", §4 sale.record / client.churn /
 * credit.recalculate / team.email, §5 dashboard, credit report and "Credit rules").
 *
 * The service's clock is pinned to 2026-03-15T08:00Z: "this month" is 2026-03 and "today" is
 * 2026-03-15 for the workers and the reads. The scheduler is configured with a non-default cron
 * and time zone so that the test can tell the configuration is honoured.
 */
const NOW = new Date('2026-03-15T08:00:00Z');
const RECALC_CRON = '0 5 * * *';
const RECALC_TZ = 'Europe/Stockholm';

type Row = { month: string; new: number; increased: number; expired: number; decreased: number; total: number };
const row = (month: string, n: number, increased: number, expired: number, decreased: number, total: number): Row =>
  ({ month, new: n, increased, expired, decreased, total });

/** Fisher–Yates with Math.random: every run posts the facts in another order. */
function shuffle<T>(items: readonly T[]): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

const tierOf = (name: string) => defaultTierThresholds.find((t) => t.name === name)!;

describe('credit and tier', () => {
  let svc: TestService;

  beforeAll(async () => {
    svc = await startService({ RECALC_CRON, RECALC_TZ }, { now: () => new Date(NOW) });
  });
  afterAll(async () => {
    await svc.close();
  });

  /** Posts commands (one batch, or one by one) and waits until every one finished; returns their statuses. */
  async function applyAll(partnerId: string, commands: Record<string, unknown>[], mode: 'batch' | 'single'): Promise<any[]> {
    const { api } = svc;
    let ids: string[];
    if (mode === 'batch') {
      const r = await api.batch(partnerId, commands);
      expect(r.status).toBe(202);
      ids = r.body.commands.map((c: { commandId: string }) => c.commandId);
    } else {
      ids = [];
      for (const c of commands) {
        const r = await api.post(partnerId, c);
        expect(r.status).toBe(202);
        ids.push(r.body.commandId);
      }
    }
    expect(ids).toHaveLength(commands.length);
    return Promise.all(ids.map((id) => api.waitCommand(id)));
  }

  async function applyOk(partnerId: string, command: Record<string, unknown>): Promise<any> {
    const status = await svc.api.apply(partnerId, command);
    expect({ type: command.type, state: status.state, error: status.error }).toEqual({ type: command.type, state: 'completed', error: undefined });
    return status;
  }

  async function report(partnerId: string, from: string, to: string): Promise<Row[]> {
    const r = await svc.api.get(`/v1/partners/${partnerId}/credit?from=${from}&to=${to}`, TOKENS.admin);
    expect(r.status).toBe(200);
    return r.body.months;
  }

  async function dashboard(partnerId: string): Promise<any> {
    const r = await svc.api.get(`/v1/partners/${partnerId}/dashboard`, TOKENS.admin);
    expect(r.status).toBe(200);
    return r.body;
  }

  // ---------------------------------------------------------------------------
  // Sold tier credit report
  // ---------------------------------------------------------------------------

  /**
   * Hand-worked facts over 2025-01..2026-03:
   *   A: s-a1 2025-01-15 +1000 (new), s-a2 2025-03-10 +500 (increased), s-a3 2025-05-20 −700
   *      (eats s-a2 500 → 0 first, then s-a1 200 → 800); s-a1's 800 ages out in 2026-01;
   *      s-a2 has nothing left when it would age out in 2026-03.
   *   B: s-b1 2025-02-03 +200 (new); on 2025-04-08 s-b2-d −400 before s-b2-u +300 (saleId order):
   *      the downgrade removes only the 200 that is live (capped at zero), then +300 is increased;
   *      s-b3 2025-09-20 +50 (increased) and the churn on 2025-09-12 rejects all 350 in 2025-09
   *      (churn is applied after the month's sales); s-b4 2025-11-05 +250 after the churn is new.
   *   C: s-c1 2025-06-30 +400 (new).
   *   D: s-d1 2025-02-20 +100 (new); on 2025-07-07 s-d2-a +60 (increased) before s-d2-b −500:
   *      the downgrade removes 160 (everything live, capped at zero).
   */
  const facts: Record<string, unknown>[] = [
    { type: 'sale.record', saleId: 's-a1', clientHubId: 'A', closedOn: '2025-01-15', mrr: 1000 },
    { type: 'sale.record', saleId: 's-a2', clientHubId: 'A', closedOn: '2025-03-10', mrr: 500 },
    { type: 'sale.record', saleId: 's-a3', clientHubId: 'A', closedOn: '2025-05-20', mrr: -700 },
    { type: 'sale.record', saleId: 's-b1', clientHubId: 'B', closedOn: '2025-02-03', mrr: 200 },
    { type: 'sale.record', saleId: 's-b2-u', clientHubId: 'B', closedOn: '2025-04-08', mrr: 300 },
    { type: 'sale.record', saleId: 's-b2-d', clientHubId: 'B', closedOn: '2025-04-08', mrr: -400 },
    { type: 'client.churn', clientHubId: 'B', on: '2025-09-12' },
    { type: 'sale.record', saleId: 's-b3', clientHubId: 'B', closedOn: '2025-09-20', mrr: 50 },
    { type: 'sale.record', saleId: 's-b4', clientHubId: 'B', closedOn: '2025-11-05', mrr: 250 },
    { type: 'sale.record', saleId: 's-c1', clientHubId: 'C', closedOn: '2025-06-30', mrr: 400 },
    { type: 'sale.record', saleId: 's-d1', clientHubId: 'D', closedOn: '2025-02-20', mrr: 100 },
    { type: 'sale.record', saleId: 's-d2-b', clientHubId: 'D', closedOn: '2025-07-07', mrr: -500 },
    { type: 'sale.record', saleId: 's-d2-a', clientHubId: 'D', closedOn: '2025-07-07', mrr: 60 },
  ];
  //                      month      new  incr  exp   dec  total
  const expected: Row[] = [
    row('2025-01', 1000, 0, 0, 0, 1000),
    row('2025-02', 300, 0, 0, 0, 1300),
    row('2025-03', 0, 500, 0, 0, 1800),
    row('2025-04', 0, 300, 0, 200, 1900),
    row('2025-05', 0, 0, 0, 700, 1200),
    row('2025-06', 400, 0, 0, 0, 1600),
    row('2025-07', 0, 60, 0, 160, 1500),
    row('2025-08', 0, 0, 0, 0, 1500),
    row('2025-09', 0, 50, 350, 0, 1200),
    row('2025-10', 0, 0, 0, 0, 1200),
    row('2025-11', 250, 0, 0, 0, 1450),
    row('2025-12', 0, 0, 0, 0, 1450),
    row('2026-01', 0, 0, 800, 0, 650),
    row('2026-02', 0, 0, 0, 0, 650),
    row('2026-03', 0, 0, 0, 0, 650),
  ];

  /**
   * Creates the partner and records every fact of the hand-worked table, in one batch. Recording
   * them again changes nothing (a sale is keyed by its saleId, a churn by its client and day), so a
   * test that needs a partner with these facts calls this whatever ran before it.
   */
  async function recordFacts(partnerId: string, name: string): Promise<void> {
    await applyOk(partnerId, { type: 'partner.upsert', name });
    const statuses = await applyAll(partnerId, shuffle(facts), 'batch');
    expect(statuses.map((s) => s.state)).toEqual(facts.map(() => 'completed'));
  }

  /** The replacement of s-c1 that the saleId test makes (and the group test expects). */
  const replacedSale = { type: 'sale.record', saleId: 's-c1', clientHubId: 'C', closedOn: '2025-08-01', mrr: 600 };

  it('when sales and churns arrive in random order as one batch, then the 15-month credit report equals the hand-worked table', async () => {
    await applyOk('cr-batch', { type: 'partner.upsert', name: 'Batch Partner' });
    const order = shuffle(facts);
    const statuses = await applyAll('cr-batch', order, 'batch');
    expect(statuses.map((s) => s.state)).toEqual(order.map(() => 'completed'));

    const months = await report('cr-batch', '2025-01', '2026-03');
    // The order is part of the compared value so that a failure shows which order broke it.
    expect({ order: order.map((c) => c.saleId ?? `churn ${c.clientHubId}`), months }).toEqual({ order: order.map((c) => c.saleId ?? `churn ${c.clientHubId}`), months: expected });
    for (let i = 1; i < months.length; i++) {
      const m = months[i]!;
      expect(m.total).toBe(months[i - 1]!.total + m.new + m.increased - m.decreased - m.expired);
    }
  });

  it('when the same facts arrive one by one in another random order, then the report is the same, and a sub-range carries earlier credit in', async () => {
    await applyOk('cr-single', { type: 'partner.upsert', name: 'Single Partner' });
    const order = shuffle(facts);
    const statuses = await applyAll('cr-single', order, 'single');
    expect(statuses.map((s) => s.state)).toEqual(order.map(() => 'completed'));

    const months = await report('cr-single', '2025-01', '2026-03');
    expect({ order: order.map((c) => c.saleId ?? `churn ${c.clientHubId}`), months }).toEqual({ order: order.map((c) => c.saleId ?? `churn ${c.clientHubId}`), months: expected });
    // A window starting later still starts from the live credit at the end of the month before it.
    expect(await report('cr-single', '2025-12', '2026-02')).toEqual(expected.slice(11, 14));
  });

  it('when a sale is recorded again with the same saleId, then it replaces the first one and the report changes accordingly', async () => {
    await recordFacts('cr-batch', 'Batch Partner');
    await recordFacts('cr-single', 'Single Partner');
    const replaced = await applyOk('cr-batch', replacedSale);
    expect(replaced.result).toMatchObject({ outcome: 'recorded' });
    const rows = await svc.sql('select closed_on::text as closed_on, mrr::float8 as mrr from sale where partner_id = ? and hub_id = ?', ['cr-batch', 'C']);
    expect(rows).toEqual([{ closed_on: '2025-08-01', mrr: 600 }]);

    expect(await report('cr-batch', '2025-01', '2026-03')).toEqual([
      ...expected.slice(0, 5),
      row('2025-06', 0, 0, 0, 0, 1200),
      row('2025-07', 0, 60, 0, 160, 1100),
      row('2025-08', 600, 0, 0, 0, 1700),
      row('2025-09', 0, 50, 350, 0, 1400),
      row('2025-10', 0, 0, 0, 0, 1400),
      row('2025-11', 250, 0, 0, 0, 1650),
      row('2025-12', 0, 0, 0, 0, 1650),
      row('2026-01', 0, 0, 800, 0, 850),
      row('2026-02', 0, 0, 0, 0, 850),
      row('2026-03', 0, 0, 0, 0, 850),
    ]);
    // The other partner's identical facts are untouched.
    expect(await report('cr-single', '2025-01', '2026-03')).toEqual(expected);
  });

  it('when the credit report is asked for a bad month or an inverted range, then it answers 400 VALIDATION_FAILED', async () => {
    await applyOk('cr-batch', { type: 'partner.upsert', name: 'Batch Partner' });
    const bad = await svc.api.get('/v1/partners/cr-batch/credit?from=2025-13&to=2026-03');
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('VALIDATION_FAILED');
    expect(bad.body.error.issues).toEqual(expect.arrayContaining([expect.objectContaining({ path: 'from' })]));

    const badTo = await svc.api.get('/v1/partners/cr-batch/credit?from=2025-01&to=2026-3');
    expect(badTo.status).toBe(400);
    expect(badTo.body.error.code).toBe('VALIDATION_FAILED');
    expect(badTo.body.error.issues).toEqual(expect.arrayContaining([expect.objectContaining({ path: 'to' })]));

    const inverted = await svc.api.get('/v1/partners/cr-batch/credit?from=2026-03&to=2025-01');
    expect(inverted.status).toBe(400);
    expect(inverted.body.error.code).toBe('VALIDATION_FAILED');
    expect(inverted.body.error.issues.length).toBeGreaterThan(0);

    // The same range the right way round is fine (the 400s above are about the range, not the partner).
    expect((await svc.api.get('/v1/partners/cr-batch/credit?from=2025-01&to=2026-03')).status).toBe(200);
  });

  // ---------------------------------------------------------------------------
  // Dashboard
  // ---------------------------------------------------------------------------

  const dashTeam = { channelAccountManager: { name: 'Cam Manager', email: 'cam@vendor.test' } };

  /**
   * A partner with clients around the renewal window, one tagged employee with active access, sales
   * worth 5000 this month (Gold), recalculated. Returns what the commands answered. Each test that
   * needs such a partner builds its own (its own id and employee email: an email is linked to one
   * partner record per client).
   */
  async function setUpDashboardPartner(partnerId: string, employee: string) {
    // Clients of its own: a hubId is one client record shared by every partner listing it (and its MRR split among those that manage it).
    const h = (name: string) => `${partnerId}-${name}`;
    await applyOk(partnerId, { type: 'partner.upsert', name: 'Dash Partner', team: dashTeam });
    const clients: Record<string, unknown>[] = [
      // today is 2026-03-15; RENEWAL_ALERT_DAYS = 90 → the window is 2026-03-15..2026-06-13
      { hubId: h('r1'), mrr: 1234.5, renewalDate: '2026-03-15', portalUserEmails: [employee] }, // today: counts
      { hubId: h('r2'), mrr: 10, renewalDate: '2026-06-13' }, // the 90th day: counts
      { hubId: h('r3'), mrr: 10, renewalDate: '2026-06-14' }, // one day too late
      { hubId: h('r4'), mrr: 10, renewalDate: '2026-03-14' }, // yesterday
      { hubId: h('r5'), mrr: 10, renewalDate: '2026-04-01' }, // terminated below
      { hubId: h('r6'), mrr: 10 }, // no renewal date
    ];
    for (const c of clients) await applyOk(partnerId, { type: 'client.upsert', name: `Client ${c.hubId}`, contactEmail: `boss@${c.hubId}.test`, ...c });
    await applyOk(partnerId, { type: 'client.terminate', hubId: h('r5') });
    await applyOk(partnerId, { type: 'employee.tag', email: employee, name: 'Ann' });
    const assigned = await applyOk(partnerId, { type: 'access.assign', clientHubIds: [h('r1')], employeeEmails: [employee] });

    const statuses = await applyAll(partnerId, [
      { type: 'sale.record', saleId: 'd-s0', clientHubId: h('r1'), closedOn: '2025-03-01', mrr: 1000 }, // aged out in 2026-03
      { type: 'sale.record', saleId: 'd-s1', clientHubId: h('r1'), closedOn: '2025-04-01', mrr: 3000 }, // live until 2026-03 inclusive
      { type: 'sale.record', saleId: 'd-s2', clientHubId: h('r2'), closedOn: '2026-03-02', mrr: 2000 }, // this month
      { type: 'sale.record', saleId: 'd-s3', clientHubId: h('r2'), closedOn: '2026-04-10', mrr: 16000 }, // after "now": not counted
    ], 'batch');

    const recalc = await applyOk(partnerId, { type: 'credit.recalculate' });
    return { assigned, statuses, recalc };
  }

  it('when credit.recalculate ran, then the dashboard shows the current month\'s sold credit, its tier, managed MRR, upcoming renewals and the team', async () => {
    const team = dashTeam;
    const { assigned, statuses, recalc } = await setUpDashboardPartner('cr-dash', 'ann@dash.test');
    expect(assigned.items).toEqual([{ clientHubId: 'cr-dash-r1', employeeEmail: 'ann@dash.test', state: 'completed', outcome: 'active' }]);
    expect(statuses.map((s) => s.state)).toEqual(['completed', 'completed', 'completed', 'completed']);
    expect(recalc.result).toMatchObject({ managedMrr: 1234.5, soldTierCredit: 5000, tier: { current: 'Gold', next: 'Platinum' }, upcomingRenewals: 2, month: '2026-03' });

    const dash = await dashboard('cr-dash');
    expect(dash).toEqual({
      alerts: { upcomingRenewals: 2, pendingRequests: 0 },
      managedMrr: 1234.5,
      soldTierCredit: 5000,
      tier: { current: 'Gold', next: 'Platinum', creditToNext: tierOf('Platinum').minCredit - 5000 },
      team,
      partner: { name: 'Dash Partner', locale: 'en' },
      calculatedAt: expect.any(String),
    });
    expect(Number.isNaN(Date.parse(dash.calculatedAt))).toBe(false);
    expect(dash.soldTierCredit).toBeGreaterThanOrEqual(tierOf('Gold').minCredit);
    expect(dash.soldTierCredit).toBeLessThan(tierOf('Platinum').minCredit);

    // soldTierCredit is the credit report's total for the current month (the service's clock: 2026-03).
    const [march] = await report('cr-dash', '2026-03', '2026-03');
    expect(march).toEqual(row('2026-03', 2000, 0, 1000, 0, 5000));
    expect(dash.soldTierCredit).toBe(march!.total);
    const byDefault = await svc.api.get('/v1/partners/cr-dash/credit');
    expect(byDefault.status).toBe(200);
    expect(byDefault.body.months).toHaveLength(12);
    expect(byDefault.body.months.at(-1)).toEqual(march);
  });

  it('when more credit is sold and credit.recalculate runs again, then the dashboard moves up a tier at the threshold (inclusive)', async () => {
    const P = 'cr-dash-up';
    await setUpDashboardPartner(P, 'ann@dash-up.test');
    const before = await dashboard(P);
    await applyOk(P, { type: 'sale.record', saleId: 'd-s4', clientHubId: `${P}-r3`, closedOn: '2026-03-05', mrr: tierOf('Platinum').minCredit - 5000 });
    await applyOk(P, { type: 'credit.recalculate' });
    const after = await dashboard(P);
    expect(after).toMatchObject({ soldTierCredit: 20000, tier: { current: 'Platinum', next: 'Diamond' }, managedMrr: 1234.5, alerts: { upcomingRenewals: 2 } });
    expect(Date.parse(after.calculatedAt)).toBeGreaterThanOrEqual(Date.parse(before.calculatedAt));
    const [march] = await report(P, '2026-03', '2026-03');
    expect(after.soldTierCredit).toBe(march!.total);
  });

  it('when credit.recalculate is run for a past month, then its result is that month\'s, but the dashboard still shows the current month', async () => {
    const P = 'cr-month';
    await applyOk(P, { type: 'partner.upsert', name: 'Month Partner' });
    await applyOk(P, { type: 'sale.record', saleId: 'm-s1', clientHubId: 'k1', closedOn: '2026-02-10', mrr: 6000 });
    await applyOk(P, { type: 'credit.recalculate' });
    expect(await dashboard(P)).toMatchObject({ soldTierCredit: 6000, tier: { current: 'Gold', next: 'Platinum' } });

    // A back-dated recalculation (before the sale) reports that month...
    const past = await applyOk(P, { type: 'credit.recalculate', month: '2025-06' });
    expect(past.result).toMatchObject({ month: '2025-06', soldTierCredit: 0, tier: { current: 'Starter', next: 'Gold' } });
    // ...but the dashboard is the partner's current standing: 2026-03's total, as the credit report says.
    const [march] = await report(P, '2026-03', '2026-03');
    expect(await dashboard(P)).toMatchObject({ soldTierCredit: march!.total, tier: { current: 'Gold', next: 'Platinum' } });
  });

  // ---------------------------------------------------------------------------
  // Managed MRR
  // ---------------------------------------------------------------------------

  it('when tagged employees have active or pending access, then managed MRR counts only active clients with a tagged active access, once each; untag, revoke and terminate remove them after recalculation', async () => {
    const P = 'cr-mrr';
    await applyOk(P, { type: 'partner.upsert', name: 'MRR Partner' });
    const clients = [
      { hubId: 'm1', mrr: 100, portalUserEmails: ['ann@mrr.test', 'bob@mrr.test'] }, // ann and bob active: counted once
      { hubId: 'm2', mrr: 200, portalUserEmails: ['bob@mrr.test'] }, // bob active, revoked later
      { hubId: 'm3', mrr: 400 }, // ann pending (not a portal user): never counted
      { hubId: 'm4', mrr: 800, portalUserEmails: ['ann@mrr.test'] }, // ann active, client terminated later
      { hubId: 'm5', mrr: 1600, portalUserEmails: ['carl@mrr.test'] }, // carl active, untagged later
      { hubId: 'm6', mrr: 3200 }, // nobody assigned
    ];
    for (const c of clients) await applyOk(P, { type: 'client.upsert', name: `Client ${c.hubId}`, contactEmail: `boss@${c.hubId}.test`, ...c });
    for (const e of ['ann', 'bob', 'carl']) await applyOk(P, { type: 'employee.tag', email: `${e}@mrr.test` });

    const ann = await applyOk(P, { type: 'access.assign', clientHubIds: ['m1', 'm3', 'm4'], employeeEmails: ['ann@mrr.test'] });
    expect(ann.items.map((i: any) => [i.clientHubId, i.outcome])).toEqual([['m1', 'active'], ['m3', 'pending'], ['m4', 'active']]);
    const bob = await applyOk(P, { type: 'access.assign', clientHubIds: ['m1', 'm2'], employeeEmails: ['bob@mrr.test'] });
    expect(bob.items.map((i: any) => [i.clientHubId, i.outcome])).toEqual([['m1', 'active'], ['m2', 'active']]);
    const carl = await applyOk(P, { type: 'access.assign', clientHubIds: ['m5'], employeeEmails: ['carl@mrr.test'] });
    expect(carl.items.map((i: any) => [i.clientHubId, i.outcome])).toEqual([['m5', 'active']]);

    const first = await applyOk(P, { type: 'credit.recalculate' });
    expect(first.result.managedMrr).toBe(100 + 200 + 800 + 1600);
    expect((await dashboard(P)).managedMrr).toBe(2700);

    await applyOk(P, { type: 'employee.untag', email: 'carl@mrr.test' });
    await applyOk(P, { type: 'credit.recalculate' });
    expect((await dashboard(P)).managedMrr).toBe(100 + 200 + 800);

    const revoked = await applyOk(P, { type: 'access.revoke', clientHubIds: ['m2'], employeeEmails: ['bob@mrr.test'] });
    expect(revoked.items.map((i: any) => i.outcome)).toEqual(['revoked']);
    await applyOk(P, { type: 'credit.recalculate' });
    expect((await dashboard(P)).managedMrr).toBe(100 + 800);

    await applyOk(P, { type: 'client.terminate', hubId: 'm4' });
    await applyOk(P, { type: 'credit.recalculate' });
    expect((await dashboard(P)).managedMrr).toBe(100);

    // m1 still counts while one tagged employee keeps active access, after the other's access is revoked.
    await applyOk(P, { type: 'access.revoke', clientHubIds: ['m1'], employeeEmails: ['bob@mrr.test'] });
    await applyOk(P, { type: 'credit.recalculate' });
    expect((await dashboard(P)).managedMrr).toBe(100);
  });

  // ---------------------------------------------------------------------------
  // Scheduler
  // ---------------------------------------------------------------------------

  it('when the service has started, then the daily job scheduler exists with the configured cron pattern and time zone', async () => {
    const credit = svc.app.ctx.queues.credit;
    const scheduler = await credit.getJobScheduler('credit-recalculate-daily');
    expect(scheduler).toMatchObject({ pattern: RECALC_CRON, tz: RECALC_TZ, name: 'recalculate-all' });
    expect((await credit.getJobSchedulers()).map((s) => s.key)).toEqual(['credit-recalculate-daily']);

    // Its next run is at 05:00 in Stockholm (not 05:00 UTC, not the default 06:00), within a day.
    expect(typeof scheduler!.next).toBe('number');
    const next = new Date(scheduler!.next!);
    const local = new Intl.DateTimeFormat('en-GB', { timeZone: RECALC_TZ, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(next);
    expect(local).toBe('05:00');
    expect(next.getTime() - Date.now()).toBeLessThanOrEqual(24 * 3600 * 1000);
    expect(next.getTime()).toBeGreaterThan(Date.now() - 60_000);
  });

  /** Adds a `recalculate-all` job like the scheduler does and waits for it and its fan-out to finish. */
  async function runRecalculateAll(): Promise<number> {
    const credit = svc.app.ctx.queues.credit;
    const job = await credit.add('recalculate-all', {});
    let state = '';
    await waitFor(async () => {
      state = await job.getState();
      return state === 'completed' || state === 'failed';
    }, { timeoutMs: 20_000, what: 'the recalculate-all job' });
    expect(state).toBe('completed');
    // The fan-out jobs are added before the parent completes: once nothing waits or runs, all are done.
    await waitFor(async () => {
      const c = await credit.getJobCounts('waiting', 'active', 'prioritized');
      return Object.values(c).every((n) => n === 0);
    }, { timeoutMs: 20_000, what: 'the recalculate-partner jobs' });
    expect(await credit.getJobCounts('failed')).toEqual({ failed: 0 });
    const done = await credit.getJob(job.id!);
    return (done!.returnvalue as { partners: number }).partners;
  }

  /**
   * Three partners with facts of their own (cr-sch-1: Gold with managed MRR and a renewal; cr-sch-2:
   * nothing; cr-sch-3: Platinum, a churned client). Applying it again changes nothing.
   */
  async function setUpScheduledPartners(): Promise<void> {
    await applyOk('cr-sch-1', { type: 'partner.upsert', name: 'Sched One' });
    await applyOk('cr-sch-1', { type: 'client.upsert', hubId: 's1c', name: 'S1 Client', contactEmail: 'boss@s1c.test', mrr: 300, renewalDate: '2026-04-20', portalUserEmails: ['eve@s1.test'] });
    await applyOk('cr-sch-1', { type: 'employee.tag', email: 'eve@s1.test' });
    await applyOk('cr-sch-1', { type: 'access.assign', clientHubIds: ['s1c'], employeeEmails: ['eve@s1.test'] });
    await applyAll('cr-sch-1', [
      { type: 'sale.record', saleId: 'x1', clientHubId: 's1c', closedOn: '2025-06-01', mrr: 4000 },
      { type: 'sale.record', saleId: 'x2', clientHubId: 's1c', closedOn: '2026-01-10', mrr: 1500 },
      { type: 'sale.record', saleId: 'x3', clientHubId: 's1c', closedOn: '2026-02-10', mrr: -500 },
    ], 'batch');

    await applyOk('cr-sch-2', { type: 'partner.upsert', name: 'Sched Two' });

    await applyOk('cr-sch-3', { type: 'partner.upsert', name: 'Sched Three' });
    await applyOk('cr-sch-3', { type: 'client.upsert', hubId: 's3c', name: 'S3 Client', contactEmail: 'boss@s3c.test', mrr: 50, renewalDate: '2026-09-01' });
    await applyAll('cr-sch-3', [
      { type: 'sale.record', saleId: 'y1', clientHubId: 's3c', closedOn: '2025-04-01', mrr: 30000 },
      { type: 'sale.record', saleId: 'y2', clientHubId: 'other', closedOn: '2025-12-24', mrr: 800 },
      { type: 'client.churn', clientHubId: 'other', on: '2026-02-01' },
    ], 'batch');
  }

  it('when a scheduled run happens, then every partner gets a snapshot with correct numbers, and a second run changes nothing', async () => {
    // Three partners that were never recalculated.
    await setUpScheduledPartners();

    const ours = ['cr-sch-1', 'cr-sch-2', 'cr-sch-3'];
    const snapshots = () => svc.sql<Record<string, unknown>>(
      `select partner_id, managed_mrr::float8 as managed_mrr, sold_tier_credit::float8 as sold_tier_credit, tier, next_tier, upcoming_renewals, calculated_at
         from credit_snapshot order by partner_id`);
    expect((await snapshots()).filter((s) => ours.includes(s.partner_id as string))).toEqual([]);

    const counted = await runRecalculateAll();
    const [{ n: partnerCount }] = (await svc.sql<{ n: number }>('select count(*)::int as n from partner')) as [{ n: number }];
    expect(counted).toBe(partnerCount);

    const first = await snapshots();
    // Every partner has a snapshot, not only ours.
    expect(first.map((s) => s.partner_id)).toEqual((await svc.sql<{ id: string }>('select id from partner order by id')).map((p) => p.id));
    const strip = (rows: Record<string, unknown>[]) => rows.map(({ calculated_at: _c, ...rest }) => rest);
    expect(strip(first.filter((s) => ours.includes(s.partner_id as string)))).toEqual([
      // 4000 + 1500 − 500 (newest first: x2 → 1000) = 5000 in 2026-03; Eve is tagged with active access on 300; renewal in 36 days
      { partner_id: 'cr-sch-1', managed_mrr: 300, sold_tier_credit: 5000, tier: 'Gold', next_tier: 'Platinum', upcoming_renewals: 1 },
      { partner_id: 'cr-sch-2', managed_mrr: 0, sold_tier_credit: 0, tier: 'Starter', next_tier: 'Gold', upcoming_renewals: 0 },
      // y1 live until 2026-03; y2 rejected by the churn in 2026-02; no employee; renewal beyond 90 days
      { partner_id: 'cr-sch-3', managed_mrr: 0, sold_tier_credit: 30000, tier: 'Platinum', next_tier: 'Diamond', upcoming_renewals: 0 },
    ]);
    // The dashboard reads the snapshot the run wrote.
    expect(await dashboard('cr-sch-1')).toMatchObject({ managedMrr: 300, soldTierCredit: 5000, tier: { current: 'Gold', next: 'Platinum' }, alerts: { upcomingRenewals: 1 } });
    expect(await dashboard('cr-sch-3')).toMatchObject({ managedMrr: 0, soldTierCredit: 30000, tier: { current: 'Platinum', next: 'Diamond' }, alerts: { upcomingRenewals: 0 } });

    // A second run: same numbers for every partner (calculated_at may move, never backwards).
    expect(await runRecalculateAll()).toBe(partnerCount);
    const second = await snapshots();
    expect(strip(second)).toEqual(strip(first));
    second.forEach((s, i) => expect(new Date(s.calculated_at as string).getTime()).toBeGreaterThanOrEqual(new Date(first[i]!.calculated_at as string).getTime()));
  });

  /** Waits until the credit queue has nothing waiting, running or delayed for a retry (the scheduler's next run aside). */
  async function creditQueueIdle(what: string): Promise<void> {
    const credit = svc.app.ctx.queues.credit;
    await waitFor(async () => {
      const c = await credit.getJobCounts('waiting', 'active', 'prioritized');
      if (!Object.values(c).every((n) => n === 0)) return false;
      return (await credit.getJobs(['delayed'])).every((j) => j.repeatJobKey !== undefined);
    }, { timeoutMs: 20_000, what });
  }

  const allSnapshots = () => svc.sql<Record<string, unknown>>(
    `select partner_id, managed_mrr::float8 as managed_mrr, sold_tier_credit::float8 as sold_tier_credit, tier, next_tier, upcoming_renewals
       from credit_snapshot order by partner_id`);
  const partnerIds = async () => (await svc.sql<{ id: string }>('select id from partner order by id')).map((p) => p.id);

  it('when a run covers several groups of partners, then every partner gets exactly the numbers of the single-partner path, and a replayed fan-out adds no group twice', async () => {
    const credit = svc.app.ctx.queues.credit;
    // Its own state: the partners whose numbers it checks (built by the tests above when they ran;
    // applying them again changes nothing), and one partner without any fact.
    await setUpScheduledPartners();
    await recordFacts('cr-batch', 'Batch Partner');
    await applyOk('cr-batch', replacedSale);
    await recordFacts('cr-single', 'Single Partner');
    await applyOk('cr-grp-0', { type: 'partner.upsert', name: 'Group Zero' });
    // Two more partners with facts of their own, so that groups of two mix partners of every kind.
    await applyOk('cr-grp-1', { type: 'partner.upsert', name: 'Group One' });
    await applyOk('cr-grp-1', { type: 'client.upsert', hubId: 'g1c', name: 'G1 Client', contactEmail: 'boss@g1c.test', mrr: 75.5, renewalDate: '2026-05-01', portalUserEmails: ['gus@g1.test'] });
    await applyOk('cr-grp-1', { type: 'employee.tag', email: 'gus@g1.test' });
    await applyOk('cr-grp-1', { type: 'access.assign', clientHubIds: ['g1c'], employeeEmails: ['gus@g1.test'] });
    await applyAll('cr-grp-1', [
      { type: 'sale.record', saleId: 'g1', clientHubId: 'g1c', closedOn: '2025-04-15', mrr: 7000 },
      { type: 'sale.record', saleId: 'g2', clientHubId: 'g1c', closedOn: '2025-10-01', mrr: -2500 },
    ], 'batch');
    await applyOk('cr-grp-2', { type: 'partner.upsert', name: 'Group Two' });
    await applyAll('cr-grp-2', [
      { type: 'sale.record', saleId: 'h1', clientHubId: 'h1c', closedOn: '2026-03-01', mrr: 120 },
      { type: 'client.churn', clientHubId: 'h1c', on: '2026-01-20' },
    ], 'batch');
    const ids = await partnerIds();
    expect(ids.length).toBeGreaterThanOrEqual(8);

    // The fan-out, twice over (a replay: the job retried after a crash), while the queue is paused.
    const groupSize = 2;
    const fanOut = { name: 'recalculate-all', id: 'replay-check', data: { groupSize }, attemptsMade: 0, updateProgress: async () => undefined } as unknown as Job;
    await credit.pause();
    try {
      const first = await processCreditJob(svc.app.ctx, fanOut);
      const again = await processCreditJob(svc.app.ctx, fanOut);
      const groups = Math.ceil(ids.length / groupSize);
      expect(first).toEqual({ partners: ids.length, groups });
      expect(again).toEqual(first);
      const queued = (await credit.getJobs(['waiting'])).filter((j) => j.id?.startsWith('rg.replaycheck.'));
      expect(queued).toHaveLength(groups);
      // Deterministic ids, and every partner in exactly one group.
      const expectedGroups = Array.from({ length: groups }, (_, i) => ids.slice(i * groupSize, (i + 1) * groupSize));
      expect(queued.map((j) => j.id).sort()).toEqual(expectedGroups.map((g) => recalcGroupJobId('replaycheck', g)).sort());
      expect(queued.flatMap((j) => (j.data as unknown as { partnerIds: string[] }).partnerIds).sort()).toEqual([...ids].sort());
      expect(queued.every((j) => j.name === 'recalculate-partners')).toBe(true);
      await svc.sql('delete from credit_snapshot');
    } finally {
      await credit.resume();
    }
    await creditQueueIdle('the group jobs');
    expect(await credit.getJobCounts('failed')).toEqual({ failed: 0 });
    const byGroups = await allSnapshots();
    expect(byGroups.map((s) => s.partner_id)).toEqual(ids);

    // The single-partner path (the `recalculate-partner` job) from scratch gives the same rows.
    await svc.sql('delete from credit_snapshot');
    await credit.addBulk(ids.map((partnerId) => ({ name: 'recalculate-partner', data: { partnerId }, opts: { jobId: jobIds.credit(partnerId, 'singlecheck') } })));
    await creditQueueIdle('the single-partner jobs');
    expect(await credit.getJobCounts('failed')).toEqual({ failed: 0 });
    expect(await allSnapshots()).toEqual(byGroups);

    // And the hand-worked numbers hold on the group path.
    const of = (id: string) => byGroups.find((s) => s.partner_id === id);
    expect(of('cr-sch-1')).toEqual({ partner_id: 'cr-sch-1', managed_mrr: 300, sold_tier_credit: 5000, tier: 'Gold', next_tier: 'Platinum', upcoming_renewals: 1 });
    expect(of('cr-sch-3')).toEqual({ partner_id: 'cr-sch-3', managed_mrr: 0, sold_tier_credit: 30000, tier: 'Platinum', next_tier: 'Diamond', upcoming_renewals: 0 });
    // 7000 live until 2026-03 inclusive, less the 2500 downgrade; Gus is tagged with active access on 75.50; renewal in 47 days.
    expect(of('cr-grp-1')).toEqual({ partner_id: 'cr-grp-1', managed_mrr: 75.5, sold_tier_credit: 4500, tier: 'Starter', next_tier: 'Gold', upcoming_renewals: 1 });
    // A sale after the churn is new credit; no client rows.
    expect(of('cr-grp-2')).toEqual({ partner_id: 'cr-grp-2', managed_mrr: 0, sold_tier_credit: 120, tier: 'Starter', next_tier: 'Gold', upcoming_renewals: 0 });
    expect(of('cr-batch')).toMatchObject({ sold_tier_credit: 850 });
  });

  it('when one partner of a group cannot be computed and another cannot be stored, then the rest of the run is stored and each of them fails visibly in its own job until its facts are fixed', async () => {
    const credit = svc.app.ctx.queues.credit;
    // Facts that intake would refuse, written behind its back: a sale amount that is not a number
    // (the domain refuses to compute), and sold credit beyond what a snapshot column holds (the write fails).
    await applyOk('0-cr-nan', { type: 'partner.upsert', name: 'Not a Number' });
    await applyOk('zz-cr-overflow', { type: 'partner.upsert', name: 'Overflow' });
    // Good partners between them (the tests above add more), so that the two are in different groups.
    await applyOk('cr-fail-mate-1', { type: 'partner.upsert', name: 'Fail Mate One' });
    await applyOk('cr-fail-mate-2', { type: 'partner.upsert', name: 'Fail Mate Two' });
    await svc.sql(`insert into sale (partner_id, sale_id, hub_id, closed_on, mrr) values ('0-cr-nan', 'n1', 'nc', '2026-03-01', 'NaN'), ('0-cr-nan', 'n2', 'nc', '2026-03-02', 10)`);
    await svc.sql(`insert into sale (partner_id, sale_id, hub_id, closed_on, mrr) values ('zz-cr-overflow', 'o1', 'oc', '2026-03-01', 900000000000), ('zz-cr-overflow', 'o2', 'oc', '2026-03-02', 900000000000), ('zz-cr-overflow', 'o3', 'oc', '2026-03-03', 100)`);
    const ids = await partnerIds();
    const bad = ['0-cr-nan', 'zz-cr-overflow'];
    // The first and the last partner: with groups of two, never in the same group.
    expect([ids[0], ids.at(-1)]).toEqual(bad);
    await svc.sql('delete from credit_snapshot');

    const run = await credit.add('recalculate-all', { groupSize: 2 } as never);
    const runId = String(run.id).replace(/[^A-Za-z0-9]/g, '');
    const singles = bad.map((p) => jobIds.credit(p, runId));
    // Each bad partner is handed to its own job, which fails (and will retry).
    await waitFor(async () => {
      const jobs = await Promise.all(singles.map((id) => credit.getJob(id)));
      return jobs.every((j) => j !== undefined && j.attemptsMade >= 1);
    }, { timeoutMs: 20_000, what: 'the handed-over partners to fail once on their own' });
    const [nanJob, overflowJob] = (await Promise.all(singles.map((id) => credit.getJob(id))));
    expect(nanJob!.name).toBe('recalculate-partner');
    expect(nanJob!.failedReason).toMatch(/finite/);
    expect(overflowJob!.failedReason).toMatch(/overflow/);

    // Every other partner was stored, by its group (or, for the overflow's group mate, by its own job).
    await waitFor(async () => (await allSnapshots()).length === ids.length - bad.length, { timeoutMs: 20_000, what: 'the good partners\' snapshots' });
    expect((await allSnapshots()).map((s) => s.partner_id)).toEqual(ids.filter((p) => !bad.includes(p)));
    const groupJobs = (await credit.getJobs(['completed'])).filter((j) => j.id?.startsWith(`rg.${runId}.`));
    expect(groupJobs).toHaveLength(Math.ceil(ids.length / 2));
    const isolated = groupJobs.flatMap((j) => (j.returnvalue as { isolated: string[] }).isolated).sort();
    // The NaN partner alone; the overflow partner with its group (the group's one write failed).
    const lastGroup = ids.slice(Math.floor((ids.length - 1) / 2) * 2);
    expect(lastGroup).toContain('zz-cr-overflow');
    expect(isolated).toEqual(['0-cr-nan', ...lastGroup].sort());

    // Once the facts are fixed, the retries store them.
    await svc.sql(`delete from sale where partner_id = '0-cr-nan' and sale_id = 'n1'`);
    await svc.sql(`delete from sale where partner_id = 'zz-cr-overflow' and sale_id in ('o1', 'o2')`);
    await waitFor(async () => (await Promise.all(singles.map(async (id) => (await credit.getJob(id))!.getState()))).every((st) => st === 'completed'),
      { timeoutMs: 20_000, what: 'the retries of the handed-over partners' });
    expect(await credit.getJobCounts('failed')).toEqual({ failed: 0 });
    expect((await allSnapshots()).filter((s) => bad.includes(s.partner_id as string))).toEqual([
      { partner_id: '0-cr-nan', managed_mrr: 0, sold_tier_credit: 10, tier: 'Starter', next_tier: 'Gold', upcoming_renewals: 0 },
      { partner_id: 'zz-cr-overflow', managed_mrr: 0, sold_tier_credit: 100, tier: 'Starter', next_tier: 'Gold', upcoming_renewals: 0 },
    ]);
    expect((await allSnapshots()).map((s) => s.partner_id)).toEqual(ids);
  });

  // ---------------------------------------------------------------------------
  // Team email
  // ---------------------------------------------------------------------------

  it('when team.email goes to the channel account manager, then exactly one email with the posted subject and body reaches that person', async () => {
    const P = 'cr-team';
    await applyOk(P, { type: 'partner.upsert', name: 'Team Partner', team: { channelAccountManager: { name: 'Tina Team', email: 'Tina@Vendor.test' } } });
    const subject = 'Quarterly review — please call us';
    const body = 'Hello Tina,\nwe would like to review our tier.\nThanks';
    const sent = await applyOk(P, { type: 'team.email', to: 'channelAccountManager', subject, body });

    const mine = () => svc.smtp.messages.filter((m) => m.to.toLowerCase().includes('tina@vendor.test'));
    await waitFor(() => mine().length >= 1, { timeoutMs: 10_000, what: 'the team email' });
    // The outbox row is sent once: no second message for the same command.
    await waitFor(async () => (await svc.sql(`select 1 from outbox where notification_key = ? and state = 'sent'`, [`team.email:${sent.commandId}`])).length === 1, { timeoutMs: 10_000, what: 'the outbox row to be sent' });
    expect(mine()).toHaveLength(1);
    const mail = mine()[0]!;
    expect(mail.subject).toBe(subject);
    expect(mail.text.replace(/\r\n/g, '\n')).toContain(body);
  });

  it('when team.email goes to a role the partner has nobody for, then the command fails with NOT_FOUND and no email is sent', async () => {
    const P = 'cr-team';
    await applyOk(P, { type: 'partner.upsert', name: 'Team Partner', team: { channelAccountManager: { name: 'Tina Team', email: 'Tina@Vendor.test' } } });
    const before = svc.smtp.messages.length;
    const status = await svc.api.apply(P, { type: 'team.email', to: 'channelConsultant', subject: 'Hi', body: 'Anyone there?' });
    expect(status.state).toBe('failed');
    expect(status.error.code).toBe('NOT_FOUND');
    expect(await svc.sql('select 1 from outbox where notification_key = ?', [`team.email:${status.commandId}`])).toEqual([]);
    expect(svc.smtp.messages).toHaveLength(before);
  });
});
