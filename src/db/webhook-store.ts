import { sql, type RawBuilder } from 'kysely';
import pg from 'pg';
import type { Em } from './orm.js';
import { firstRow, jsonb, rows, run } from './exec.js';
import type { NewEvent } from '../webhooks/events.js';

/**
 * Webhooks (contract §8): the partners' subscriptions (`webhook`), the outbox of events
 * (`webhook_event`, written in the transaction of the change it reports) and one delivery per event
 * and subscription (`webhook_delivery`: its attempts, last answer and next attempt). Every
 * statement takes its rows as one JSON parameter where it takes a set.
 */

/** The Postgres channel on which a committed event names the subscriptions that have something to send. */
export const WEBHOOK_CHANNEL = 'pap_webhook_delivery';

/** An instant as the API spells it (UTC, milliseconds), in SQL. */
const iso = (col: RawBuilder<unknown>) => sql<string>`to_char(${col} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/** A live subscription wants events of this type (`w`: the webhook row, `t`: the type). */
const wants = (w: RawBuilder<unknown>, t: RawBuilder<unknown>) => sql`${w}.ended_at is null and ${w}.events @> jsonb_build_array(${t})`;

// ---- subscriptions ----------------------------------------------------------------------------

/** A subscription as the API lists it (never its secret). */
export interface WebhookRow { id: string; url: string; events: string[]; description: string | null; createdAt: string }

/**
 * Creates a subscription unless the partner already has `maxLive` live ones (then: undefined).
 * The secret is stored because every send is signed with it, in its sealed form (`storedSecret`,
 * bound to the webhook's id: src/webhooks/secret-box.ts), never in clear. It is never read back by
 * a listing.
 */
export async function createWebhook(em: Em, w: { id: string; partnerId: string; url: string; events: readonly string[]; description: string | null; storedSecret: string; maxLive: number }): Promise<WebhookRow | undefined> {
  return firstRow(em, sql<WebhookRow>`insert into webhook (id, partner_id, url, events, description, secret)
    select ${w.id}, ${w.partnerId}, ${w.url}, ${jsonb(w.events)}, ${w.description}, ${w.storedSecret}
     where (select count(*) from webhook where partner_id = ${w.partnerId} and ended_at is null) < ${w.maxLive}::int
    returning id, url, events, description, ${iso(sql`created_at`)} as "createdAt"`);
}

/** A subscription's secret as stored: sealed (`v1:…`), or in clear from before sealing (`whsec_…`). */
export interface StoredSecret { id: string; secret: string }

/** Whether the webhook table exists (it does not before the migrations have run). */
export async function webhookTableExists(em: Em): Promise<boolean> {
  const r = await firstRow(em, sql<{ found: boolean }>`select to_regclass('webhook') is not null as found`);
  return r?.found === true;
}

/**
 * Up to `limit` stored secrets, by id after `after`, that do not start with `prefix` (the current
 * key's sealed form): clear ones, and ones sealed with another key. Ended subscriptions included.
 */
export async function secretsNotSealedWith(em: Em, prefix: string, after: string, limit: number): Promise<StoredSecret[]> {
  return rows(em, sql<StoredSecret>`select id, secret from webhook
     where not starts_with(secret, ${prefix}) and id > ${after}
     order by id limit ${limit}::int`);
}

/**
 * Replaces stored secrets, each only if it is still the one read (`was`), in one statement; returns
 * how many changed. Two processes that start at once both seal a row: one of them writes it.
 */
export async function replaceSecrets(em: Em, set: readonly { id: string; was: string; sealed: string }[]): Promise<number> {
  if (!set.length) return 0;
  return run(em, sql`update webhook w set secret = s.sealed
      from jsonb_to_recordset(${jsonb(set)}) as s(id text, was text, sealed text)
     where w.id = s.id and w.secret = s.was`);
}

/** Where a page of subscriptions starts: after this one. */
export interface WebhookCursor { createdAt: string; id: string }

/** The partner's live subscriptions, oldest first, `limit` of them after `after`. */
export async function listWebhooks(em: Em, partnerId: string, page: { limit: number; after: WebhookCursor | null }): Promise<WebhookRow[]> {
  const after = page.after ? sql`and (created_at, id) > (${page.after.createdAt}::timestamptz, ${page.after.id})` : sql``;
  return rows(em, sql<WebhookRow>`select id, url, events, description, ${iso(sql`created_at`)} as "createdAt"
      from webhook where partner_id = ${partnerId} and ended_at is null ${after}
     order by created_at, id limit ${page.limit}::int`);
}

/** One subscription of the partner, live or ended (undefined: none, or another partner's). */
export async function findWebhook(em: Em, partnerId: string, webhookId: string): Promise<{ id: string; ended: boolean } | undefined> {
  return firstRow(em, sql<{ id: string; ended: boolean }>`select id, ended_at is not null as ended from webhook where id = ${webhookId} and partner_id = ${partnerId}`);
}

/**
 * Ends a live subscription (`deleted` by its partner, or `gone`: its receiver answered 410) and
 * drops its pending deliveries, in one statement. `partnerId` null: whoever owns it. Returns
 * whether it was live.
 */
export async function endWebhook(em: Em, webhookId: string, reason: 'deleted' | 'gone', partnerId: string | null): Promise<boolean> {
  const owner = partnerId === null ? sql`` : sql`and partner_id = ${partnerId}`;
  const r = await firstRow(em, sql<{ ended: number }>`with ended as (
       update webhook set ended_at = now(), end_reason = ${reason} where id = ${webhookId} ${owner} and ended_at is null returning id),
     dropped as (update webhook_delivery d set state = 'dropped', next_attempt_at = now() from ended where d.webhook_id = ended.id and d.state = 'pending')
     select count(*)::int as ended from ended`);
  return (r?.ended ?? 0) > 0;
}

// ---- events -----------------------------------------------------------------------------------

/** Above this many events, the subscribed (partner, type) pairs are read first so nothing unwanted travels. */
const PRECHECK_ABOVE = 200;

/**
 * Writes events in the caller's transaction (the one that makes the change they report), in the
 * given order, with one delivery per live subscription that wants each; an event nobody subscribed
 * to is not written at all (checked in the same statement). On commit, Postgres notifies
 * {@link WEBHOOK_CHANNEL} with each subscription that got a delivery (`pg_notify` is
 * transactional: a rollback notifies nobody). Event ids (`evt_…`, the `webhook-id` of every
 * attempt) are random.
 */
export async function insertEvents(tx: Em, events: readonly NewEvent[]): Promise<void> {
  if (!events.length) return;
  let wanted: readonly NewEvent[] = events;
  if (events.length > PRECHECK_ABOVE) {
    const kinds = [...new Set(events.map((e) => `${e.partnerId}\n${e.type}`))].map((k) => k.split('\n'));
    const subscribed = await rows(tx, sql<{ k: string }>`select distinct t.p || chr(10) || t.t as k
        from jsonb_to_recordset(${jsonb(kinds.map(([p, t]) => ({ p, t })))}) as t(p text, t text)
        join webhook w on w.partner_id = t.p and ${wants(sql`w`, sql`t.t`)}`);
    const keep = new Set(subscribed.map((s) => s.k));
    wanted = events.filter((e) => keep.has(`${e.partnerId}\n${e.type}`));
    if (!wanted.length) return;
  }
  const set = wanted.map((e, ord) => ({ ord, type: e.type, partner_id: e.partnerId, data: e.data }));
  await run(tx, sql`with e as (select * from jsonb_to_recordset(${jsonb(set)}) as e(ord int, type text, partner_id text, data jsonb)),
       ev as (insert into webhook_event (id, type, partner_id, data)
              select 'evt_' || replace(gen_random_uuid()::text, '-', ''), e.type, e.partner_id, e.data from e
               where exists (select 1 from webhook w where w.partner_id = e.partner_id and ${wants(sql`w`, sql`e.type`)})
               order by e.ord
              returning seq, type, partner_id),
       dl as (insert into webhook_delivery (event_seq, webhook_id)
              select ev.seq, w.id from ev join webhook w on w.partner_id = ev.partner_id and ${wants(sql`w`, sql`ev.type`)}
              order by ev.seq, w.id
              returning webhook_id)
    select count(pg_notify(${WEBHOOK_CHANNEL}, d.webhook_id)) from (select distinct webhook_id from dl) d`);
}

// ---- deliveries -------------------------------------------------------------------------------

/** The next delivery of a subscription: its event, where it goes, and when it is due. */
export interface DueDelivery {
  deliveryId: string;
  attempts: number;
  /** Milliseconds until it may be tried (0: now). */
  dueInMs: number;
  eventId: string;
  type: string;
  partnerId: string;
  createdAt: string;
  data: unknown;
  url: string;
  /** As stored (see {@link StoredSecret}): opened with `openWebhookSecret` where the delivery is signed, nowhere else. */
  storedSecret: string;
}

/**
 * The oldest pending delivery of a live subscription (by event order), with its event and target;
 * undefined when the subscription has nothing pending or has ended. Deliveries of one subscription
 * go one at a time in this order: a later one waits while an earlier one is retried.
 */
export async function nextDelivery(em: Em, webhookId: string): Promise<DueDelivery | undefined> {
  return firstRow(em, sql<DueDelivery>`select d.id::text as "deliveryId", d.attempts,
         greatest(0, ceil(extract(epoch from d.next_attempt_at - now()) * 1000))::float8 as "dueInMs",
         e.id as "eventId", e.type, e.partner_id as "partnerId", ${iso(sql`e.created_at`)} as "createdAt", e.data,
         w.url, w.secret as "storedSecret"
    from webhook w
    join webhook_delivery d on d.webhook_id = w.id and d.state = 'pending'
    join webhook_event e on e.seq = d.event_seq
   where w.id = ${webhookId} and w.ended_at is null
   order by d.event_seq, d.id
   limit 1`);
}

/** What became of a delivery after an attempt. */
export type DeliveryState = 'pending' | 'delivered' | 'failed' | 'dropped';

/**
 * Records an attempt of a pending delivery: `ok` (a 2xx) delivers it; otherwise it is tried again
 * in `retryDelayMs`, unless it has been pending for `retryForMs` already (then it is `failed`:
 * given up; a redelivery starts it again). Returns its state now (undefined: it was not pending).
 */
export async function recordAttempt(em: Em, a: { deliveryId: string; status: number | null; error: string | null; ok: boolean; retryDelayMs: number; retryForMs: number }): Promise<DeliveryState | undefined> {
  const r = await firstRow(em, sql<{ state: DeliveryState }>`update webhook_delivery d set
         attempts = d.attempts + 1, last_status = ${a.status}::int, last_error = ${a.error}, last_attempt_at = now(),
         state = case when ${a.ok}::boolean then 'delivered'
                      when now() - d.pending_since >= make_interval(secs => ${a.retryForMs / 1000}::float8) then 'failed'
                      else 'pending' end,
         delivered_at = case when ${a.ok}::boolean then now() else d.delivered_at end,
         next_attempt_at = case when ${a.ok}::boolean then d.next_attempt_at else now() + make_interval(secs => ${a.retryDelayMs / 1000}::float8) end
       where d.id = ${a.deliveryId}::bigint and d.state = 'pending'
       returning d.state`);
  return r?.state;
}

/**
 * The receiver answered 410 Gone: the attempt is recorded (`dropped`), the subscription ends and its
 * other pending deliveries are dropped, in the caller's transaction.
 */
export async function recordGone(tx: Em, a: { deliveryId: string; webhookId: string }): Promise<void> {
  await run(tx, sql`update webhook_delivery set attempts = attempts + 1, last_status = 410, last_error = 'HTTP 410: the receiver ended the subscription',
      last_attempt_at = now(), state = 'dropped' where id = ${a.deliveryId}::bigint and state = 'pending'`);
  await endWebhook(tx, a.webhookId, 'gone', null);
}

/** Whether a subscription has any pending delivery (due or not). */
export async function hasPendingDelivery(em: Em, webhookId: string): Promise<boolean> {
  const r = await firstRow(em, sql<{ pending: boolean }>`select exists (select 1 from webhook_delivery d join webhook w on w.id = d.webhook_id and w.ended_at is null
      where d.webhook_id = ${webhookId} and d.state = 'pending') as pending`);
  return r?.pending === true;
}

/** One delivery as the delivery log shows it. */
export interface DeliveryLogRow {
  id: string;
  eventId: string;
  eventType: string;
  state: DeliveryState;
  attempts: number;
  lastStatus: number | null;
  lastError: string | null;
  lastAttemptAt: string | null;
  nextRetryAt: string | null;
  createdAt: string;
  deliveredAt: string | null;
}

/** A subscription's deliveries, newest first, `limit` of them older than delivery `before`. */
export async function listDeliveries(em: Em, webhookId: string, page: { limit: number; before: string | null }): Promise<DeliveryLogRow[]> {
  const before = page.before === null ? sql`` : sql`and d.id < ${page.before}::bigint`;
  return rows(em, sql<DeliveryLogRow>`select d.id::text as id, e.id as "eventId", e.type as "eventType", d.state, d.attempts,
         d.last_status as "lastStatus", d.last_error as "lastError", ${iso(sql`d.last_attempt_at`)} as "lastAttemptAt",
         case when d.state = 'pending' then ${iso(sql`d.next_attempt_at`)} end as "nextRetryAt",
         ${iso(sql`d.created_at`)} as "createdAt", ${iso(sql`d.delivered_at`)} as "deliveredAt"
      from webhook_delivery d join webhook_event e on e.seq = d.event_seq
     where d.webhook_id = ${webhookId} ${before}
     order by d.id desc limit ${page.limit}::int`);
}

/**
 * Sends a delivery of a live subscription of the partner again: it becomes pending, due now, with a
 * new retry window; its event (and so its `webhook-id`) is the same. Undefined: no such delivery,
 * or its subscription is another partner's or has ended.
 */
export async function redeliver(em: Em, q: { partnerId: string; webhookId: string; deliveryId: string }): Promise<{ id: string; state: DeliveryState } | undefined> {
  if (!/^\d{1,18}$/.test(q.deliveryId)) return undefined;
  return firstRow(em, sql<{ id: string; state: DeliveryState }>`update webhook_delivery d set state = 'pending', next_attempt_at = now(), pending_since = now()
      from webhook w
     where d.id = ${q.deliveryId}::bigint and d.webhook_id = ${q.webhookId} and w.id = d.webhook_id and w.partner_id = ${q.partnerId} and w.ended_at is null
     returning d.id::text as id, d.state`);
}

/** Live subscriptions with a pending delivery due for more than `graceSec` (their job may be lost), at most `limit`. */
export async function webhooksWithDueDeliveries(em: Em, graceSec: number, limit: number): Promise<string[]> {
  const r = await rows(em, sql<{ webhook_id: string }>`select distinct d.webhook_id from webhook_delivery d
      join webhook w on w.id = d.webhook_id and w.ended_at is null
     where d.state = 'pending' and d.next_attempt_at < now() - make_interval(secs => ${graceSec}::float8)
     limit ${limit}::int`);
  return r.map((x) => x.webhook_id);
}

// ---- retention --------------------------------------------------------------------------------

/** What one prune statement deleted. */
export interface PruneResult { events: number; deliveries: number }

/**
 * Deletes up to `limit` finished webhook events older than `retentionDays`, with their deliveries,
 * in one statement (its own short transaction: a backlog is worked through by repeating it).
 *
 * Finished: every delivery of the event is `delivered`, `failed` (given up) or `dropped` (its
 * subscription ended), and none has been touched for `retentionDays`: created, redelivered
 * (`pending_since`), attempted, or due (`next_attempt_at`, which a drop sets to its time). So an
 * event with a pending delivery is never deleted however old, and a redelivered one counts from its
 * redelivery. Candidates are read oldest first through `webhook_event_created_at`; their deliveries
 * through the (event_seq, webhook_id) unique index (`= any(array(…))` keeps that index whatever the
 * planner guesses of the batch; a join chose a scan of the whole table at 300k rows). About 30 ms
 * per 5,000-event batch on a 2.3M-row table (local Postgres).
 *
 * A redelivery that commits while this statement runs: the delivery delete re-checks its row's new
 * version (Postgres re-evaluates the WHERE of a concurrently updated row), so a delivery made
 * pending again is kept, and its event is deleted only when every delivery it had was deleted
 * (`n` = deliveries seen = deliveries deleted), so no pending delivery loses its event. A
 * redelivery that comes after finds the delivery gone (404).
 */
export async function pruneWebhookEvents(em: Em, retentionDays: number, limit: number): Promise<PruneResult> {
  const cutoff = sql`now() - make_interval(days => ${retentionDays}::int)`;
  const finishedBefore = (d: RawBuilder<unknown>) => sql`${d}.state <> 'pending' and greatest(${d}.created_at, ${d}.pending_since, ${d}.last_attempt_at, ${d}.next_attempt_at) < ${cutoff}`;
  const r = await firstRow(em, sql<PruneResult>`with doomed as (
       select e.seq, (select count(*) from webhook_delivery d where d.event_seq = e.seq) as n
         from webhook_event e
        where e.created_at < ${cutoff}
          and not exists (select 1 from webhook_delivery d where d.event_seq = e.seq and not (${finishedBefore(sql`d`)}))
        order by e.created_at
        limit ${limit}::int),
     dd as (delete from webhook_delivery d where d.event_seq = any(array(select seq from doomed)) and ${finishedBefore(sql`d`)} returning d.event_seq),
     gone as (select event_seq, count(*) as n from dd group by event_seq),
     de as (delete from webhook_event e using doomed left join gone on gone.event_seq = doomed.seq
             where e.seq = doomed.seq and doomed.n = coalesce(gone.n, 0) returning 1)
    select (select count(*) from de)::int as events, (select count(*) from dd)::int as deliveries`);
  return r ?? { events: 0, deliveries: 0 };
}

// ---- the commit signal ------------------------------------------------------------------------

/** A LISTEN connection on {@link WEBHOOK_CHANNEL}. */
export interface DeliveryListener { close(): Promise<void> }

/**
 * Listens on {@link WEBHOOK_CHANNEL} on a connection of its own and calls `onWebhook` with each
 * subscription that a committed transaction gave a delivery. Reconnects after a lost connection
 * (meanwhile the reconciler finds what was missed). Best effort by design: a notification is a
 * hint to send now; Postgres holds what must be sent.
 */
export function listenForDeliveries(databaseUrl: string, onWebhook: (webhookId: string) => void, onError: (err: unknown) => void, retryMs = 1000): DeliveryListener {
  let closed = false;
  let client: pg.Client | null = null;
  let timer: NodeJS.Timeout | undefined;
  const connect = async () => {
    if (closed) return;
    const c = new pg.Client({ connectionString: databaseUrl });
    client = c;
    const retry = (err: unknown) => {
      if (closed || client !== c) return;
      onError(err);
      client = null;
      c.end().catch(() => undefined);
      timer = setTimeout(() => void connect(), retryMs);
      timer.unref();
    };
    c.on('error', retry);
    c.on('end', () => retry(new Error('the LISTEN connection ended')));
    c.on('notification', (n) => { if (n.channel === WEBHOOK_CHANNEL && n.payload) onWebhook(n.payload); });
    try {
      await c.connect();
      // Closed while connecting: this connection is nobody's any more.
      if (closed || client !== c) return void (await c.end().catch(() => undefined));
      await c.query(`listen ${WEBHOOK_CHANNEL}`);
    } catch (err) {
      retry(err);
    }
  };
  void connect();
  return {
    async close() {
      closed = true;
      clearTimeout(timer);
      const c = client;
      client = null;
      await c?.end().catch(() => undefined);
    },
  };
}
