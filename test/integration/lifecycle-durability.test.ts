/**
 * The lifecycle sweep's scheduled work survives crashes and a Redis wipe (contract §6, issue 12):
 * a worker process is SIGKILLed while reminders are being sent, the queue keys are flushed, and a
 * new worker (whose reconciler puts the sweep's job scheduler back) finishes the work; then again
 * while the expiry notices go out. Every reminder and every notice is one logical email (one
 * Message-ID, one outbox row): none lost, none sent twice in effect. The only physical copy
 * allowed is a message the SMTP server took just before the kill, which the outbox could not yet
 * mark sent; it carries the same Message-ID.
 */
import net, { type AddressInfo } from 'node:net';
import pg from 'pg';
import { Redis } from 'ioredis';
import { dropDatabase } from '../../src/db/orm.js';
import { dropQueues, makeApi, spawnService, testEnv, TOKENS, waitFor, type ChildService } from '../helpers/harness.js';
import { startSmtp, type CapturedMail, type TestSmtp } from '../helpers/smtp.js';

const TTL_DAYS = 0.0002; // 17.3 s
const REMINDER_DAYS = 0.0001; // 8.6 s before expiry
const HUBS = Array.from({ length: 8 }, (_, i) => `dc-${i}`);
const EMPLOYEES = Array.from({ length: 5 }, (_, i) => `emp${i}@durable.test`);
const PAIRS = HUBS.length * EMPLOYEES.length;
const NOTIFY = 'alerts@durable-partner.test';
const contactOf = (hub: string) => `boss.${hub}@clients.test`;

/**
 * A TCP relay in front of the test SMTP server: a SIGKILLed sender resets its connection, which the
 * relay absorbs (the SMTP server never sees a reset it would report as an error).
 */
async function startRelay(port: number): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    for (const s of [client, upstream]) sockets.add(s);
    client.pipe(upstream);
    upstream.pipe(client);
    const done = () => {
      client.destroy();
      upstream.end();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', done).on('close', done);
    upstream.on('error', done).on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `smtp://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

describe('the lifecycle sweep across crashes and a Redis flush', () => {
  let smtp: TestSmtp;
  let relay: Awaited<ReturnType<typeof startRelay>>;
  let env: Record<string, string>;
  let pool: pg.Pool | null = null;
  const children: ChildService[] = [];

  const sql = async <T = Record<string, unknown>>(query: string, params: unknown[] = []): Promise<T[]> => {
    pool ??= new pg.Pool({ connectionString: env.DATABASE_URL, max: 2 });
    return (await pool.query(query, params)).rows as T[];
  };
  const spawn = async (roles: string) => {
    const child = spawnService({ ...env, ROLES: roles, PORT: '0' });
    children.push(child);
    return { child, url: await child.url };
  };
  const outboxOf = async (kind: string) =>
    sql<{ n: number; sent: number }>(`select count(*)::int as n, (count(*) filter (where state = 'sent'))::int as sent from outbox where kind = $1`, [kind]).then((r) => r[0]!);
  const reminders = () => smtp.messages.filter((m) => m.subject.startsWith('Reminder:'));
  const expiredNotices = () => smtp.messages.filter((m) => m.recipients.includes(NOTIFY) && m.subject.includes('expired'));

  /** Every message the SMTP server accepted (before the kill) is parsed and counted: copies are measured against it. */
  const parsed = () => waitFor(() => smtp.attempts.filter((c) => c === 250).length === smtp.messages.length, { what: 'the accepted messages to be parsed' });

  /** Each logical email once: one Message-ID per key; copies only of messages taken but not yet marked at a kill. */
  function expectOnceInEffect(mails: CapturedMail[], logical: number, copiesAllowed: number): void {
    const ids = new Set(mails.map((m) => m.messageId));
    expect(ids.size).toBe(logical);
    expect(mails.length - ids.size).toBeLessThanOrEqual(copiesAllowed);
  }

  beforeAll(async () => {
    smtp = await startSmtp();
    relay = await startRelay(smtp.port);
    env = testEnv(relay.url, {
      JOB_LOCK_MS: '2000', RECONCILE_INTERVAL_MS: '300', RECONCILE_GRACE_MS: '500',
      GRANT_TTL_DAYS: String(TTL_DAYS), GRANT_REMINDER_DAYS: String(REMINDER_DAYS), LIFECYCLE_SWEEP_MS: '200',
    });
  });

  afterAll(async () => {
    await Promise.all(children.map((c) => c.kill('SIGKILL')));
    await pool?.end();
    await relay?.close();
    await smtp?.close();
    await dropQueues(env.REDIS_URL!, env.QUEUE_PREFIX!);
    await dropDatabase(env.DATABASE_URL!);
  });

  it('when the worker is killed while reminders go out and again while expiries are told, with the queue keys flushed each time, then every reminder and every expiry notice is sent once in effect', async () => {
    // An api process without the scheduler role: only the workers' reconciler puts the sweep's scheduler in place.
    const { url } = await spawn('api');
    const api = makeApi(url);
    let { child: worker } = await spawn('worker');
    const ok = async (command: Record<string, unknown>, token: string = TOKENS.admin) => expect((await api.apply('p-durable', command, token)).state).toBe('completed');
    await ok({ type: 'partner.upsert', name: 'Durable Partners', notifyEmail: NOTIFY });
    for (const e of EMPLOYEES) await ok({ type: 'employee.tag', email: e });
    for (const h of HUBS) await ok({ type: 'client.upsert', hubId: h, name: `Client ${h}`, contactEmail: contactOf(h) }, TOKENS.platform);
    const assign = await api.apply('p-durable', { type: 'access.assign', clientHubIds: HUBS, employeeEmails: EMPLOYEES });
    expect(assign.state).toBe('completed');
    await waitFor(() => HUBS.every((h) => smtp.messages.some((m) => m.recipients.includes(contactOf(h)))), { what: 'the request emails' });

    // Crash 1: as the first reminder arrives; then the queue keys go.
    await waitFor(() => reminders().length >= 1, { timeoutMs: 20_000, intervalMs: 5, what: 'the first reminder' });
    await worker.kill('SIGKILL');
    await parsed();
    const r = await outboxOf('access.reminder');
    const copies1 = Math.max(0, reminders().length - r.sent);
    expect(reminders().length).toBeLessThan(PAIRS + copies1 + 1);
    await dropQueues(env.REDIS_URL!, env.QUEUE_PREFIX!);

    ({ child: worker } = await spawn('worker'));
    await waitFor(async () => {
      const o = await outboxOf('access.reminder');
      return o.n === PAIRS && o.sent === PAIRS;
    }, { timeoutMs: 20_000, what: 'every reminder to be sent' });

    // Crash 2: as the first expiry notice arrives; then the queue keys go again.
    await waitFor(() => expiredNotices().length >= 1, { timeoutMs: 30_000, intervalMs: 5, what: 'the first expiry notice' });
    await worker.kill('SIGKILL');
    await parsed();
    const e = await outboxOf('partner.expired');
    const copies2 = Math.max(0, expiredNotices().length - e.sent);
    await dropQueues(env.REDIS_URL!, env.QUEUE_PREFIX!);

    ({ child: worker } = await spawn('worker'));
    await waitFor(async () => {
      const o = await outboxOf('partner.expired');
      return o.n === PAIRS && o.sent === PAIRS;
    }, { timeoutMs: 30_000, what: 'every expiry notice to be sent' });
    await waitFor(async () => (await sql<{ n: number }>(`select count(*)::int as n from access where state = 'expired'`))[0]!.n === PAIRS, { what: 'every pair expired' });

    // None lost, none twice: one reminder per pair (its own Message-ID), one expiry notice per pair.
    expectOnceInEffect(reminders(), PAIRS, copies1);
    expectOnceInEffect(expiredNotices(), PAIRS, copies2);
    const perPair = await sql<{ hub_id: string; email: string; reminders: number[] }>(`select hub_id, email, reminders_sent as reminders from access order by 1, 2`);
    expect(perPair.map((p) => p.reminders)).toEqual(perPair.map(() => [REMINDER_DAYS]));
    for (const h of HUBS) {
      const toClient = reminders().filter((m) => m.recipients.includes(contactOf(h)));
      expect(new Set(toClient.map((m) => m.messageId)).size).toBe(EMPLOYEES.length);
    }
    // The sweep's job scheduler is back in Redis: the reconciler re-upserted it after each flush.
    const redis = new Redis(env.REDIS_URL!);
    try {
      expect(await redis.zscore(`${env.QUEUE_PREFIX}:lifecycle:repeat`, 'lifecycle-sweep')).not.toBeNull();
    } finally {
      redis.disconnect();
    }
  }, 90_000);
});
