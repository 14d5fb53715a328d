import pg from 'pg';
import { startService, PG_BASE, uniqueName, type TestService } from '../helpers/harness.js';
import { dropDatabase, openOrm } from '../../src/db/orm.js';

/**
 * The dates credit is computed from (`sale.closed_on`, `churn.on_date`, `client_account.renewal_date`)
 * are real days of years 0001–9999 (migration Migration20261203000001_credit_date_checks): the
 * recalculation reads them by hand, and `infinity`, `-infinity`, a BC date or a year past 9999 (which
 * only a direct database write could store) failed a partner's recalculation or read as another day.
 * The database refuses them (SQLSTATE 23514), the API refuses them (400), a command row that carries one
 * fails VALIDATION_FAILED, and the range is exactly what the API accepts.
 *
 * The service's clock is pinned to 2026-03-15T08:00Z.
 */
const NOW = new Date('2026-03-15T08:00:00Z');

/** Values a `date` column can hold that are not a day of years 0001–9999. */
const OUT_OF_RANGE = ['infinity', '-infinity', '0001-12-31 BC', '4713-01-01 BC', '10000-01-01'];

describe('credit dates', () => {
  let svc: TestService;
  let client: pg.Client;

  beforeAll(async () => {
    svc = await startService({}, { now: () => new Date(NOW) });
    client = new pg.Client({ connectionString: svc.config.databaseUrl });
    await client.connect();
  });
  afterAll(async () => {
    await client?.end();
    await svc?.close();
  });

  async function applyOk(partnerId: string, command: Record<string, unknown>): Promise<any> {
    const status = await svc.api.apply(partnerId, command);
    expect({ type: command.type, state: status.state, error: status.error }).toEqual({ type: command.type, state: 'completed', error: undefined });
    return status;
  }

  /** The SQLSTATE and constraint of the error a statement raised, or 'ok' when it succeeded. */
  async function refusal(text: string, values: unknown[]): Promise<{ code: string; constraint: string } | 'ok'> {
    try {
      await client.query(text, values);
      return 'ok';
    } catch (err) {
      const e = err as { code?: string; constraint?: string };
      return { code: e.code ?? '', constraint: e.constraint ?? '' };
    }
  }

  it('when a direct SQL write stores an infinite, BC or post-9999 date in a credit date column, then Postgres refuses it with 23514 naming the column\'s check', async () => {
    // Rows to update: a write that moves an existing date out of range is refused as well.
    await client.query(`insert into sale (partner_id, sale_id, hub_id, closed_on, mrr) values ('cd-sql', 's-1', 'h-1', '2026-01-10', 10)`);
    await client.query(`insert into client_account (hub_id, renewal_date) values ('cd-sql-h', '2026-06-01')`);
    await client.query(`insert into churn (partner_id, hub_id, on_date) values ('cd-sql', 'h-1', '2026-02-01')`);

    const writes = [
      { constraint: 'sale_closed_on_check', sql: `insert into sale (partner_id, sale_id, hub_id, closed_on, mrr) values ('cd-sql', 's-2', 'h-1', $1::date, 10)` },
      { constraint: 'sale_closed_on_check', sql: `update sale set closed_on = $1::date where partner_id = 'cd-sql' and sale_id = 's-1'` },
      { constraint: 'churn_on_date_check', sql: `insert into churn (partner_id, hub_id, on_date) values ('cd-sql', 'h-2', $1::date)` },
      { constraint: 'churn_on_date_check', sql: `update churn set on_date = $1::date where partner_id = 'cd-sql' and hub_id = 'h-1'` },
      { constraint: 'client_account_renewal_date_check', sql: `insert into client_account (hub_id, renewal_date) values ('cd-sql-h2', $1::date)` },
      { constraint: 'client_account_renewal_date_check', sql: `update client_account set renewal_date = $1::date where hub_id = 'cd-sql-h'` },
    ];
    const outcomes = [];
    for (const w of writes) for (const value of OUT_OF_RANGE) outcomes.push({ sql: w.sql, value, outcome: await refusal(w.sql, [value]) });
    expect(outcomes).toEqual(writes.flatMap((w) => OUT_OF_RANGE.map((value) => ({ sql: w.sql, value, outcome: { code: '23514', constraint: w.constraint } }))));

    // Nothing was written; the first and last days of the range, and no renewal date, are fine.
    const { rows } = await client.query<{ sale: string; churn: string; renewal: string; others: number }>(`select
      (select string_agg(closed_on::text, ',') from sale where partner_id = 'cd-sql') as sale,
      (select string_agg(on_date::text, ',') from churn where partner_id = 'cd-sql') as churn,
      (select renewal_date::text from client_account where hub_id = 'cd-sql-h') as renewal,
      (select count(*)::int from client_account where hub_id = 'cd-sql-h2') as others`);
    expect(rows).toEqual([{ sale: '2026-01-10', churn: '2026-02-01', renewal: '2026-06-01', others: 0 }]);
    for (const day of ['0001-01-01', '9999-12-31']) {
      expect(await refusal(`update sale set closed_on = $1::date where partner_id = 'cd-sql' and sale_id = 's-1'`, [day])).toBe('ok');
      expect(await refusal(`update churn set on_date = $1::date where partner_id = 'cd-sql' and hub_id = 'h-1'`, [day])).toBe('ok');
      expect(await refusal(`update client_account set renewal_date = $1::date where hub_id = 'cd-sql-h'`, [day])).toBe('ok');
    }
    expect(await refusal(`update client_account set renewal_date = null where hub_id = 'cd-sql-h'`, [])).toBe('ok');
    await client.query(`delete from sale where partner_id = 'cd-sql'; delete from churn where partner_id = 'cd-sql'; delete from client_account where hub_id like 'cd-sql-%'`);
  });

  it('when a command carries an infinite, BC, year-0 or post-9999 date, then the API answers 400 VALIDATION_FAILED naming the field, and logs nothing', async () => {
    await applyOk('cd-api', { type: 'partner.upsert', name: 'Dates Partner' });
    const bad = ['infinity', '-infinity', 'Infinity', '0000-01-01', '0001-12-31 BC', '10000-01-01', '+010000-01-01'];
    const commands = bad.flatMap((day) => [
      { field: 'closedOn', command: { type: 'sale.record', saleId: 's-bad', clientHubId: 'h-1', closedOn: day, mrr: 10 } },
      { field: 'on', command: { type: 'client.churn', clientHubId: 'h-1', on: day } },
      { field: 'renewalDate', command: { type: 'client.upsert', hubId: 'h-1', name: 'Client', renewalDate: day } },
    ]);
    const before = await svc.sql<{ n: number }>('select count(*)::int as n from command where partner_id = ?', ['cd-api']);
    const answers = [];
    for (const { command } of commands) {
      const r = await svc.api.post('cd-api', command);
      answers.push({ command, status: r.status, code: r.body?.error?.code, paths: (r.body?.error?.issues ?? []).map((i: { path: string }) => i.path) });
    }
    expect(answers).toEqual(commands.map(({ field, command }) => ({ command, status: 400, code: 'VALIDATION_FAILED', paths: [field] })));
    // A batch holding one such command is refused whole.
    const batch = await svc.api.batch('cd-api', [
      { type: 'sale.record', saleId: 's-ok', clientHubId: 'h-1', closedOn: '2026-03-01', mrr: 10 },
      { type: 'sale.record', saleId: 's-bad', clientHubId: 'h-1', closedOn: 'infinity', mrr: 10 },
    ]);
    expect({ status: batch.status, code: batch.body.error.code, paths: batch.body.error.issues.map((i: { path: string }) => i.path) })
      .toEqual({ status: 400, code: 'VALIDATION_FAILED', paths: ['commands.1.closedOn'] });
    expect(await svc.sql('select count(*)::int as n from command where partner_id = ?', ['cd-api'])).toEqual(before);
  });

  it('when a command row in the log carries an infinite date (written around the API), then the worker fails it VALIDATION_FAILED at once and records no sale', async () => {
    await applyOk('cd-forged', { type: 'partner.upsert', name: 'Forged Partner' });
    const payload = { type: 'sale.record', saleId: 's-forged', clientHubId: 'h-1', closedOn: 'infinity', mrr: 10 };
    // Older than the reconciler's grace and never enqueued: the reconciler gives it its job.
    await svc.sql(`insert into command (id, partner_id, type, payload, body_hash, created_at) values (?, ?, ?, ?::jsonb, ?, now() - interval '1 minute')`,
      ['cd-forged-1', 'cd-forged', 'sale.record', JSON.stringify(payload), 'forged']);
    const status = await svc.api.waitCommand('cd-forged-1');
    expect({ state: status.state, code: status.error?.code, attempts: status.attempts }).toEqual({ state: 'failed', code: 'VALIDATION_FAILED', attempts: 0 });
    expect(status.error.message).toMatch(/closedOn/);
    expect(await svc.sql('select sale_id from sale where partner_id = ?', ['cd-forged'])).toEqual([]);
  });

  it('when a partner has ordinary sale, churn and renewal dates, then its recalculation works and gives the hand-worked numbers', async () => {
    const P = 'cd-ok';
    const ann = 'ann@cd-ok.test';
    await applyOk(P, { type: 'partner.upsert', name: 'Ordinary Partner' });
    await applyOk(P, { type: 'client.upsert', hubId: 'cd-ok-1', name: 'One', contactEmail: 'boss@one.test', mrr: 500, renewalDate: '2026-04-01', portalUserEmails: [ann] });
    await applyOk(P, { type: 'client.upsert', hubId: 'cd-ok-2', name: 'Two', contactEmail: 'boss@two.test', mrr: 70, renewalDate: '2026-12-01' });
    await applyOk(P, { type: 'employee.tag', email: ann, name: 'Ann' });
    const assigned = await applyOk(P, { type: 'access.assign', clientHubIds: ['cd-ok-1'], employeeEmails: [ann] });
    expect(assigned.items.map((i: { outcome: string }) => i.outcome)).toEqual(['active']);
    for (const c of [
      { type: 'sale.record', saleId: 'o-1', clientHubId: 'cd-ok-1', closedOn: '2025-04-10', mrr: 1000 }, // live 2025-04..2026-03
      { type: 'sale.record', saleId: 'o-2', clientHubId: 'cd-ok-1', closedOn: '2026-03-01', mrr: 2000 }, // this month
      { type: 'sale.record', saleId: 'o-3', clientHubId: 'cd-ok-2', closedOn: '2025-12-31', mrr: 300 }, // rejected by the churn
      { type: 'client.churn', clientHubId: 'cd-ok-2', on: '2026-02-28' },
      { type: 'sale.record', saleId: 'o-4', clientHubId: 'cd-ok-2', closedOn: '2025-03-01', mrr: 900 }, // aged out in 2026-03
    ]) await applyOk(P, c);

    const recalc = await applyOk(P, { type: 'credit.recalculate' });
    expect(recalc.result).toMatchObject({ outcome: 'recalculated', month: '2026-03', managedMrr: 500, soldTierCredit: 3000, upcomingRenewals: 1 });
    const dash = await svc.api.get(`/v1/partners/${P}/dashboard`);
    expect(dash.status).toBe(200);
    expect(dash.body).toMatchObject({ managedMrr: 500, soldTierCredit: 3000, alerts: { upcomingRenewals: 1 } });
  });

  it('when the API records the first and last days it accepts (0001-01-01, 9999-12-31), then the database takes them and the recalculation and the report still work', async () => {
    const P = 'cd-edge';
    await applyOk(P, { type: 'partner.upsert', name: 'Edge Partner' });
    await applyOk(P, { type: 'client.upsert', hubId: 'cd-edge-1', name: 'Early', renewalDate: '0001-01-01' });
    await applyOk(P, { type: 'client.upsert', hubId: 'cd-edge-2', name: 'Late', renewalDate: '9999-12-31' });
    for (const c of [
      { type: 'sale.record', saleId: 'e-1', clientHubId: 'cd-edge-1', closedOn: '0001-01-01', mrr: 100 },
      { type: 'sale.record', saleId: 'e-2', clientHubId: 'cd-edge-2', closedOn: '9999-12-31', mrr: 200 },
      { type: 'sale.record', saleId: 'e-3', clientHubId: 'cd-edge-2', closedOn: '2026-03-15', mrr: 40 },
      { type: 'client.churn', clientHubId: 'cd-edge-1', on: '0001-01-01' },
      { type: 'client.churn', clientHubId: 'cd-edge-1', on: '9999-12-31' },
    ]) await applyOk(P, c);
    expect(await svc.sql(`select string_agg(closed_on::text, ',' order by sale_id) as sales,
        (select string_agg(on_date::text, ',' order by on_date) from churn where partner_id = ?) as churns
      from sale where partner_id = ?`, [P, P])).toEqual([{ sales: '0001-01-01,9999-12-31,2026-03-15', churns: '0001-01-01,9999-12-31' }]);

    const recalc = await applyOk(P, { type: 'credit.recalculate' });
    expect(recalc.result).toMatchObject({ managedMrr: 0, soldTierCredit: 40, upcomingRenewals: 0 });
    // The report reads every fact, the year-0001 ones included.
    const report = await svc.api.get(`/v1/partners/${P}/credit?from=2026-02&to=2026-03`);
    expect(report.status).toBe(200);
    expect(report.body.months).toEqual([
      { month: '2026-02', new: 0, increased: 0, expired: 0, decreased: 0, total: 0 },
      { month: '2026-03', new: 40, increased: 0, expired: 0, decreased: 0, total: 40 },
    ]);
  });
});

describe('the credit date checks migration', () => {
  const databaseUrl = `${PG_BASE}/${uniqueName('pap_dates')}`;
  const before = 'Migration20261202000001_webhook_retention';
  const ours = 'Migration20261203000001_credit_date_checks';

  afterAll(async () => {
    await dropDatabase(databaseUrl);
  });

  it('when a database already holds an infinite date, then the migration fails naming the check, changes nothing, and applies once the row is fixed', async () => {
    const orm = await openOrm(databaseUrl, { migrate: false, poolMax: 2 });
    try {
      await orm.migrator.up({ to: before });
      const em = orm.em.fork();
      await em.execute(`insert into sale (partner_id, sale_id, hub_id, closed_on, mrr) values ('p', 's-inf', 'h', 'infinity', 10), ('p', 's-ok', 'h', '2026-01-01', 10)`);

      await expect(orm.migrator.up()).rejects.toThrow(/sale_closed_on_check/);
      expect((await orm.migrator.getExecuted()).map((m) => m.name)).not.toContain(ours);
      expect(await em.execute(`select sale_id, closed_on::text as closed_on from sale order by sale_id`))
        .toEqual([{ sale_id: 's-inf', closed_on: 'infinity' }, { sale_id: 's-ok', closed_on: '2026-01-01' }]);

      await em.execute(`update sale set closed_on = '2026-01-02' where sale_id = 's-inf'`);
      await orm.migrator.up();
      expect((await orm.migrator.getExecuted()).map((m) => m.name)).toContain(ours);
      expect(await orm.migrator.getPending()).toEqual([]);
    } finally {
      await orm.close();
    }
  });
});
