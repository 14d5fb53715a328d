/**
 * Webhook retention: the lifecycle sweep deletes finished webhook events (every delivery delivered,
 * given up or dropped) untouched for WEBHOOK_RETENTION_DAYS, with their deliveries, in bounded
 * batches, and never an event with a delivery still pending or being retried, however old.
 *
 * The rows are written with SQL, aged as each case needs (a month is not waited for). Pending
 * deliveries are due tomorrow, so neither the delivery worker nor the reconciler touches them during
 * the test. The sweep's scheduler runs daily here (after its first, immediate run, waited for at
 * start), and the test runs the sweep's job handler itself: the outcome does not depend on timing.
 */
import { pruneWebhookEvents } from '../../src/db/webhook-store.js';
import { processLifecycleSweep, PRUNE_BATCH } from '../../src/workers/lifecycle.js';
import { startService, waitFor, type TestService } from '../helpers/harness.js';

const RETENTION_DAYS = 30;

/** One delivery row to write; ages in days before now. */
interface DeliveryFixture {
  hook: string;
  state: 'pending' | 'delivered' | 'failed' | 'dropped';
  /** When it became pending (created, or redelivered). */
  since: number;
  /** Its last attempt (none: never attempted). */
  attempt?: number;
  /** `next_attempt_at` of a finished delivery (a drop sets it to the drop's time); default: the last attempt, else `since`. Pending ones are due tomorrow. */
  next?: number;
}
interface EventFixture { seq: number; id: string; age: number; deliveries: DeliveryFixture[] }

let svc: TestService;

beforeAll(async () => {
  svc = await startService({ LIFECYCLE_SWEEP_MS: '86400000', WEBHOOK_RETENTION_DAYS: String(RETENTION_DAYS) });
  // The scheduler's first sweep runs at once; let it finish so it never runs alongside a test.
  await waitFor(async () => (await svc.app.ctx.queues.lifecycle.getCompletedCount()) >= 1, { what: 'the first lifecycle sweep' });
  await svc.sql(`insert into webhook (id, partner_id, url, events, secret, ended_at, end_reason) values
      ('wh_live1', 'p-1', 'http://127.0.0.1:1/one', '["access.active"]', 'whsec_test', null, null),
      ('wh_ended', 'p-1', 'http://127.0.0.1:1/two', '["access.active"]', 'whsec_test', now() - interval '34 days', 'deleted'),
      ('wh_live3', 'p-1', 'http://127.0.0.1:1/three', '["access.active"]', 'whsec_test', null, null)`);
}, 60_000);

afterAll(async () => {
  await svc?.close();
});

/**
 * Writes events and their deliveries, deliveries first: the prune starts from events, so a
 * sweep running in between could never see an event without its deliveries.
 */
async function write(events: EventFixture[]): Promise<void> {
  const deliveries = events.flatMap((e) => e.deliveries.map((d) => ({ seq: e.seq, created: e.age, attempt: null, next: null, ...d })));
  await svc.sql(`insert into webhook_delivery (event_seq, webhook_id, state, attempts, last_attempt_at, next_attempt_at, pending_since, delivered_at, created_at)
    select d.seq, d.hook, d.state, case when d.attempt is null then 0 else 1 end,
           now() - make_interval(secs => d.attempt * 86400),
           case when d.state = 'pending' then now() + interval '1 day' else now() - make_interval(secs => coalesce(d.next, d.attempt, d.since) * 86400) end,
           now() - make_interval(secs => d.since * 86400),
           case when d.state = 'delivered' then now() - make_interval(secs => d.attempt * 86400) end,
           now() - make_interval(secs => d.created * 86400)
      from jsonb_to_recordset(?::jsonb) as d(seq bigint, hook text, state text, created float8, since float8, attempt float8, next float8)`, [JSON.stringify(deliveries)]);
  await svc.sql(`insert into webhook_event (seq, id, type, partner_id, data, created_at)
    select e.seq, e.id, 'access.active', 'p-1', '{}'::jsonb, now() - make_interval(secs => e.age * 86400)
      from jsonb_to_recordset(?::jsonb) as e(seq bigint, id text, age float8)`, [JSON.stringify(events.map(({ seq, id, age }) => ({ seq, id, age })))]);
}

const eventIds = async (from: number, to: number) =>
  (await svc.sql<{ id: string }>('select id from webhook_event where seq between ? and ? order by seq', [from, to])).map((r) => r.id);
const deliveriesOf = async (from: number, to: number) =>
  (await svc.sql<{ d: string }>(`select e.id || '/' || d.webhook_id || '/' || d.state as d from webhook_delivery d left join webhook_event e on e.seq = d.event_seq
      where d.event_seq between ? and ? order by d.event_seq, d.webhook_id`, [from, to])).map((r) => r.d);
const prunedCounter = async () => (await svc.app.ctx.metrics.webhookEventsPruned.get()).values[0]?.value ?? 0;

describe('webhook retention (WEBHOOK_RETENTION_DAYS)', () => {
  it('when the lifecycle sweep runs, then exactly the finished events untouched for the retention period go, with their deliveries, and pending, retried, recently redelivered and recent events stay', async () => {
    const events: EventFixture[] = [
      // finished and older than 30 days: pruned
      { seq: 1001, id: 'evt_old_delivered', age: 40, deliveries: [{ hook: 'wh_live1', state: 'delivered', since: 40, attempt: 40 }] },
      { seq: 1002, id: 'evt_old_failed', age: 45, deliveries: [{ hook: 'wh_live1', state: 'failed', since: 45, attempt: 44 }] },
      { seq: 1003, id: 'evt_old_dropped', age: 35, deliveries: [{ hook: 'wh_ended', state: 'dropped', since: 35, next: 34 }] },
      { seq: 1004, id: 'evt_old_all_finished', age: 40, deliveries: [{ hook: 'wh_live1', state: 'delivered', since: 40, attempt: 40 }, { hook: 'wh_ended', state: 'dropped', since: 40, attempt: 39, next: 34 }] },
      // kept
      { seq: 1005, id: 'evt_old_pending', age: 60, deliveries: [{ hook: 'wh_live1', state: 'pending', since: 60, attempt: 59 }] },
      { seq: 1006, id: 'evt_old_retrying', age: 50, deliveries: [{ hook: 'wh_live3', state: 'pending', since: 1, attempt: 0.5 }] },
      { seq: 1007, id: 'evt_old_partly_pending', age: 40, deliveries: [{ hook: 'wh_live1', state: 'delivered', since: 40, attempt: 40 }, { hook: 'wh_live3', state: 'pending', since: 40, attempt: 39 }] },
      { seq: 1008, id: 'evt_old_redelivered', age: 40, deliveries: [{ hook: 'wh_live1', state: 'delivered', since: 2, attempt: 2 }] },
      { seq: 1009, id: 'evt_old_failed_lately', age: 31, deliveries: [{ hook: 'wh_live1', state: 'failed', since: 31, attempt: 29.5 }] },
      { seq: 1010, id: 'evt_recent_delivered', age: 5, deliveries: [{ hook: 'wh_live1', state: 'delivered', since: 5, attempt: 5 }] },
      { seq: 1011, id: 'evt_recent_failed', age: 29, deliveries: [{ hook: 'wh_live3', state: 'failed', since: 29, attempt: 28 }] },
    ];
    await write(events);
    const counterBefore = await prunedCounter();

    const report = await processLifecycleSweep(svc.app.ctx, {});

    expect(report.pruned).toBe(4);
    expect(await eventIds(1001, 1011)).toEqual(['evt_old_pending', 'evt_old_retrying', 'evt_old_partly_pending', 'evt_old_redelivered', 'evt_old_failed_lately', 'evt_recent_delivered', 'evt_recent_failed']);
    expect(await deliveriesOf(1001, 1011)).toEqual([
      'evt_old_pending/wh_live1/pending',
      'evt_old_retrying/wh_live3/pending',
      'evt_old_partly_pending/wh_live1/delivered',
      'evt_old_partly_pending/wh_live3/pending',
      'evt_old_redelivered/wh_live1/delivered',
      'evt_old_failed_lately/wh_live1/failed',
      'evt_recent_delivered/wh_live1/delivered',
      'evt_recent_failed/wh_live3/failed',
    ]);
    expect((await prunedCounter()) - counterBefore).toBe(4);

    // A second sweep finds nothing more to delete.
    expect((await processLifecycleSweep(svc.app.ctx, {})).pruned).toBe(0);
    expect(await eventIds(1001, 1011)).toHaveLength(7);
  });

  it('when a prune is given a batch size, then each statement deletes at most that many events, oldest first, with their deliveries, until a batch comes back short', async () => {
    const events: EventFixture[] = Array.from({ length: 12 }, (_, i) => ({
      seq: 2001 + i, id: `evt_batch_${String(i).padStart(2, '0')}`, age: 60 - i,
      deliveries: [{ hook: 'wh_live1', state: 'delivered', since: 60 - i, attempt: 60 - i }, { hook: 'wh_live3', state: 'delivered', since: 60 - i, attempt: 60 - i }],
    }));
    events.push({ seq: 2013, id: 'evt_batch_pending', age: 70, deliveries: [{ hook: 'wh_live1', state: 'pending', since: 70 }] });
    await write(events);
    const em = () => svc.db.em.fork();

    expect(await pruneWebhookEvents(em(), RETENTION_DAYS, 5)).toEqual({ events: 5, deliveries: 10 });
    expect((await eventIds(2001, 2013)).slice(0, 2)).toEqual(['evt_batch_05', 'evt_batch_06']);
    expect(await pruneWebhookEvents(em(), RETENTION_DAYS, 5)).toEqual({ events: 5, deliveries: 10 });
    expect(await pruneWebhookEvents(em(), RETENTION_DAYS, 5)).toEqual({ events: 2, deliveries: 4 });
    expect(await pruneWebhookEvents(em(), RETENTION_DAYS, 5)).toEqual({ events: 0, deliveries: 0 });
    expect(await eventIds(2001, 2013)).toEqual(['evt_batch_pending']);
    expect(await deliveriesOf(2001, 2013)).toEqual(['evt_batch_pending/wh_live1/pending']);
  });

  it('when the backlog is larger than one batch, then one sweep works through it batch after batch', async () => {
    const n = PRUNE_BATCH * 2 + 7;
    // Deliveries first (see write()).
    await svc.sql(`insert into webhook_delivery (event_seq, webhook_id, state, attempts, last_attempt_at, next_attempt_at, pending_since, delivered_at, created_at)
      select 100000 + g, 'wh_live1', 'delivered', 1, now() - interval '40 days', now() - interval '40 days', now() - interval '40 days', now() - interval '40 days', now() - interval '40 days'
        from generate_series(1, ?::int) g`, [n]);
    await svc.sql(`insert into webhook_event (seq, id, type, partner_id, data, created_at)
      select 100000 + g, 'evt_backlog_' || g, 'access.active', 'p-1', '{}'::jsonb, now() - interval '40 days' from generate_series(1, ?::int) g`, [n]);

    const report = await processLifecycleSweep(svc.app.ctx, {});

    expect(report.pruned).toBe(n);
    expect(await svc.sql<{ n: number }>('select count(*)::int as n from webhook_event where seq > 100000')).toEqual([{ n: 0 }]);
    expect(await svc.sql<{ n: number }>('select count(*)::int as n from webhook_delivery where event_seq > 100000')).toEqual([{ n: 0 }]);
  });
});
