/**
 * Durability (contract §4): "An accepted command (2xx) is never lost: not by a worker crash, not by
 * a Redis restart or a Redis flush. It is applied exactly once in effect."
 *
 * Every test runs the service as child processes (`src/main.ts`) with split roles: one `api`
 * process that accepts commands and one `worker` process that is flushed under, or SIGKILLed and
 * restarted. Assertions read the command log and the effect tables straight from Postgres.
 */
import net, { type AddressInfo } from 'node:net';
import pg from 'pg';
import { Redis } from 'ioredis';
import { dropDatabase } from '../../src/db/orm.js';
import { dropQueues, makeApi, REDIS_URL, spawnService, testEnv, TOKENS, waitFor, type Api, type ChildService, type Reply } from '../helpers/harness.js';
import { startSmtp, type TestSmtp } from '../helpers/smtp.js';

const children: ChildService[] = [];
const smtps: TestSmtp[] = [];
const envs: Record<string, string>[] = [];
const pools: pg.Pool[] = [];
const relays: SmtpRelay[] = [];

/** Fast takeover of a killed worker's jobs and a quick reconciler (the brief's settings). */
const DURABILITY_ENV = { JOB_LOCK_MS: '2000', RECONCILE_INTERVAL_MS: '300', RECONCILE_GRACE_MS: '500' };

interface Stack {
  env: Record<string, string>;
  smtp: TestSmtp;
  sql<T = any>(query: string, params?: unknown[]): Promise<T[]>;
}

/**
 * A TCP relay in front of the test SMTP server, so a test can make the server "slow to answer":
 * once `holdDataReplies()` is on, each connection that finishes sending a message (the `<CRLF>.<CRLF>`
 * end of DATA) no longer gets the server's replies. The server has the message; the sender does not know.
 */
interface SmtpRelay {
  url: string;
  holdDataReplies(): void;
  /** New connections are answered again (connections already held stay held). */
  release(): void;
  /** Messages whose end of DATA went through to the server (in total / while holding, unanswered). */
  counts(): { delivered: number; unanswered: number };
  close(): Promise<void>;
}

async function startRelay(target: TestSmtp): Promise<SmtpRelay> {
  let holding = false;
  let delivered = 0;
  let unanswered = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    let tail = '';
    let frozen = false;
    client.on('data', (b: Buffer) => {
      const text = tail + b.toString('latin1');
      const ends = text.split('\r\n.\r\n').length - 1;
      tail = text.slice(-4);
      delivered += ends;
      if (holding && ends > 0 && !frozen) {
        frozen = true;
        unanswered += 1;
      }
      upstream.write(b);
    });
    upstream.on('data', (b: Buffer) => {
      if (!frozen) client.write(b);
    });
    const done = () => {
      client.destroy();
      upstream.end();
      sockets.delete(client);
    };
    client.on('close', done);
    client.on('error', done);
    upstream.on('close', () => {
      client.destroy();
      sockets.delete(upstream);
    });
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const relay: SmtpRelay = {
    url: `smtp://127.0.0.1:${(server.address() as AddressInfo).port}`,
    holdDataReplies: () => {
      holding = true;
    },
    release: () => {
      holding = false;
    },
    counts: () => ({ delivered, unanswered }),
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  relays.push(relay);
  return relay;
}

/** One test's SMTP server and environment (one database, one queue prefix shared by its processes). */
async function newStack(opts: { relay?: boolean } = {}): Promise<Stack & { relay?: SmtpRelay }> {
  const smtp = await startSmtp();
  smtps.push(smtp);
  const relay = opts.relay ? await startRelay(smtp) : undefined;
  const env = testEnv(relay?.url ?? smtp.url, DURABILITY_ENV);
  envs.push(env);
  let pool: pg.Pool | null = null;
  return {
    env,
    smtp,
    ...(relay ? { relay } : {}),
    async sql(query, params = []) {
      if (!pool) {
        // The database exists once the first child process has started (it migrates on start).
        pool = new pg.Pool({ connectionString: env.DATABASE_URL, max: 2 });
        pools.push(pool);
      }
      return (await pool.query(query, params as unknown[])).rows;
    },
  };
}

/** Starts a child process of this stack with these roles; resolves once it logged that it started. */
async function spawnRole(stack: Stack, roles: 'api' | 'worker' | 'api,worker'): Promise<{ child: ChildService; url: string }> {
  const child = spawnService({ ...stack.env, ROLES: roles, PORT: '0' });
  children.push(child);
  const url = await child.url;
  if (roles.includes('api')) expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  return { child, url };
}

/** Posts commands one at a time per slot, `parallel` slots at once; returns the replies in input order. */
async function postAll(api: Api, partnerId: string, commands: unknown[], parallel = 16): Promise<Reply[]> {
  const replies: Reply[] = new Array(commands.length);
  let next = 0;
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < commands.length) {
      const i = next++;
      replies[i] = await api.post(partnerId, commands[i], TOKENS.admin);
    }
  }));
  return replies;
}

async function countByState(stack: Stack, ids: string[]): Promise<Record<string, number>> {
  const rows = await stack.sql<{ state: string; n: string }>('select state, count(*) as n from command where id = any($1) group by state', [ids]);
  return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
}

/** Number of jobs of one queue that are still to run (waiting, active, delayed, prioritized, paused). */
async function pendingJobs(redis: Redis, prefix: string, queue: string): Promise<number> {
  const k = (s: string) => `${prefix}:${queue}:${s}`;
  const [wait, active, paused, delayed, prioritized] = await Promise.all([
    redis.llen(k('wait')), redis.llen(k('active')), redis.llen(k('paused')), redis.zcard(k('delayed')), redis.zcard(k('prioritized')),
  ]);
  return wait + active + paused + delayed + prioritized;
}

async function keysOfPrefix(redis: Redis, prefix: string): Promise<number> {
  let cursor = '0';
  let n = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    n += keys.length;
  } while (cursor !== '0');
  return n;
}

let redis: Redis;

beforeAll(() => {
  redis = new Redis(REDIS_URL);
});

afterAll(async () => {
  await Promise.all(children.map((c) => c.kill('SIGKILL')));
  await Promise.all(pools.map((p) => p.end()));
  await Promise.all(relays.map((r) => r.close()));
  await Promise.all(smtps.map((s) => s.close()));
  for (const env of envs) {
    await dropQueues(env.REDIS_URL!, env.QUEUE_PREFIX!);
    await dropDatabase(env.DATABASE_URL!);
  }
  redis.disconnect();
});

describe('durability of accepted commands (contract §4)', () => {
  it('when commands were accepted by an api-only process and the queue keys were then flushed from Redis, then a worker process started afterwards applies every command exactly once within 30 s', async () => {
    const stack = await newStack();
    const { url } = await spawnRole(stack, 'api');
    const api = makeApi(url);

    // Five partners, each: its upsert, then 5 tags and 5 clients: 55 commands accepted, none applied (no worker runs).
    const partners = Array.from({ length: 5 }, (_, p) => `p-flush${p}`);
    const accepted: { id: string; partnerId: string; type: string }[] = [];
    await Promise.all(partners.map(async (partnerId, p) => {
      const upsert = await api.post(partnerId, { type: 'partner.upsert', name: `Flush Partners ${p}` });
      expect(upsert.status).toBe(202);
      accepted.push({ id: upsert.body.commandId, partnerId, type: 'partner.upsert' });
      const burst = Array.from({ length: 5 }, (_, j) => [
        { type: 'employee.tag', email: `Emp${p}-${j}@Flush.test`, name: `Employee ${p}-${j}` },
        { type: 'client.upsert', hubId: `fc-${p}-${j}`, name: `Client ${p}-${j}`, contactEmail: `boss${p}-${j}@fc.test`, mrr: 100 + j },
      ]).flat();
      const replies = await postAll(api, partnerId, burst, 4);
      expect(replies.map((r) => r.status)).toEqual(burst.map(() => 202));
      replies.forEach((r, i) => accepted.push({ id: r.body.commandId, partnerId, type: burst[i]!.type }));
    }));
    const ids = accepted.map((a) => a.id);
    expect(new Set(ids).size).toBe(55);
    expect(await countByState(stack, ids)).toEqual({ waiting: 55 });
    expect(await pendingJobs(redis, stack.env.QUEUE_PREFIX!, 'commands')).toBe(55);

    // "Flush" Redis: every key of this test's prefix goes (never FLUSHALL: Redis is shared).
    await dropQueues(stack.env.REDIS_URL!, stack.env.QUEUE_PREFIX!);
    expect(await keysOfPrefix(redis, stack.env.QUEUE_PREFIX!)).toBe(0);

    const started = Date.now();
    await spawnRole(stack, 'worker');
    await waitFor(async () => (await countByState(stack, ids)).completed === 55, { timeoutMs: 30_000, what: 'every flushed command to complete' });
    expect(Date.now() - started).toBeLessThan(30_000);

    const rows = await stack.sql<{ id: string; type: string; state: string; attempts: number; result: { outcome: string } }>(
      'select id, type, state, attempts, result from command where id = any($1)', [ids]);
    expect(rows).toHaveLength(55);
    const expectedOutcome: Record<string, string> = { 'partner.upsert': 'created', 'employee.tag': 'tagged', 'client.upsert': 'created' };
    for (const r of rows) {
      // Applied once: a second application of the same command would report "unchanged"/"updated" (and count an attempt).
      expect({ id: r.id, state: r.state, attempts: r.attempts, outcome: r.result.outcome }).toEqual({ id: r.id, state: 'completed', attempts: 1, outcome: expectedOutcome[r.type] });
    }
    const employees = await stack.sql<{ partner_id: string; email: string }>('select partner_id, email from employee where partner_id = any($1)', [partners]);
    expect(employees.map((e) => `${e.partner_id} ${e.email}`).sort()).toEqual(partners.flatMap((p, i) => Array.from({ length: 5 }, (_, j) => `${p} emp${i}-${j}@flush.test`)).sort());
    const clients = await stack.sql<{ partner_id: string; hub_id: string }>('select partner_id, hub_id from client where partner_id = any($1)', [partners]);
    expect(clients.map((c) => `${c.partner_id} ${c.hub_id}`).sort()).toEqual(partners.flatMap((p, i) => Array.from({ length: 5 }, (_, j) => `${p} fc-${i}-${j}`)).sort());
    // And the API reads the same from the command log.
    const tag = accepted.find((a) => a.type === 'employee.tag')!;
    const status = await api.get(`/v1/commands/${encodeURIComponent(tag.id)}`);
    expect(status.body).toMatchObject({ commandId: tag.id, partnerId: tag.partnerId, state: 'completed', attempts: 1, result: { outcome: 'tagged' } });
  }, 45_000);

  it('when a worker process is SIGKILLed in the middle of a burst of 200 commands, then after a worker restarts every accepted command completes, once', async () => {
    const stack = await newStack();
    const { url } = await spawnRole(stack, 'api');
    const api = makeApi(url);
    let { child: worker } = await spawnRole(stack, 'worker');

    // Eight partners (each partner's commands apply in order; partners proceed in parallel).
    const partners = Array.from({ length: 8 }, (_, p) => `p-kill${p}`);
    for (const p of partners) expect((await api.apply(p, { type: 'partner.upsert', name: `Kill ${p}` })).state).toBe('completed');

    const burst: { partnerId: string; command: Record<string, unknown> }[] = [];
    for (let i = 0; i < 100; i++) {
      const partnerId = partners[i % partners.length]!;
      burst.push({ partnerId, command: { type: 'employee.tag', email: `e${i}@kill.test` } });
      burst.push({ partnerId, command: { type: 'client.upsert', hubId: `kc-${i}`, name: `Client ${i}`, contactEmail: `c${i}@kc.test` } });
    }
    const replies = await Promise.all(partners.map((p) => postAll(api, p, burst.filter((b) => b.partnerId === p).map((b) => b.command), 4)));
    const all = replies.flat();
    expect(all.filter((r) => r.status === 202)).toHaveLength(200);
    const ids = all.map((r) => r.body.commandId as string);
    expect(new Set(ids).size).toBe(200);

    // Kill the worker once some, but not all, commands completed.
    await waitFor(async () => ((await countByState(stack, ids)).completed ?? 0) >= 20, { timeoutMs: 20_000, intervalMs: 20, what: 'some commands to complete' });
    await worker.kill('SIGKILL');
    const atKill = await countByState(stack, ids);
    expect(atKill.completed ?? 0).toBeGreaterThanOrEqual(20);
    expect(atKill.completed ?? 0).toBeLessThan(200);

    ({ child: worker } = await spawnRole(stack, 'worker'));
    await waitFor(async () => (await countByState(stack, ids)).completed === 200, { timeoutMs: 40_000, what: 'every command to complete after the restart' });

    const rows = await stack.sql<{ id: string; partner_id: string; type: string; state: string; attempts: number; result: { outcome: string } }>(
      'select id, partner_id, type, state, attempts, result from command where id = any($1)', [ids]);
    expect(rows).toHaveLength(200);
    for (const r of rows) {
      expect(r.state).toBe('completed');
      expect(r.attempts).toBeGreaterThanOrEqual(1);
      expect(r.attempts).toBeLessThanOrEqual(4); // at most one retake per stall (maxStalledCount 3)
      expect({ id: r.id, outcome: r.result.outcome }).toEqual({ id: r.id, outcome: r.type === 'employee.tag' ? 'tagged' : 'created' });
    }
    // One row per distinct command, in the right partner.
    const employees = await stack.sql<{ partner_id: string; email: string; tagged: boolean }>('select partner_id, email, tagged from employee where partner_id = any($1)', [partners]);
    expect(employees).toHaveLength(100);
    expect(new Set(employees.map((e) => e.email)).size).toBe(100);
    for (const e of employees) {
      const i = Number(/^e(\d+)@/.exec(e.email)![1]);
      expect(e).toEqual({ partner_id: partners[i % partners.length], email: `e${i}@kill.test`, tagged: true });
    }
    const clients = await stack.sql<{ partner_id: string; hub_id: string }>('select partner_id, hub_id from client where partner_id = any($1)', [partners]);
    expect(clients).toHaveLength(100);
    expect(new Set(clients.map((c) => c.hub_id)).size).toBe(100);
    const failedOrOpen = await stack.sql('select id from command where state <> $1', ['completed']);
    expect(failedOrOpen).toEqual([]);
  }, 60_000);

  it('when a worker process is SIGKILLed in the middle of 600 access.assign pairs, with emails the SMTP server took but had not answered yet, then after a restart every pair is applied once and every client contact gets exactly one email', async () => {
    const stack = await newStack({ relay: true });
    const relay = stack.relay!;
    const { url } = await spawnRole(stack, 'api');
    const api = makeApi(url);
    let { child: worker } = await spawnRole(stack, 'worker');

    // Set-up, applied: 10 partners, each with one tagged employee and 60 clients (a distinct contact each).
    const partners = Array.from({ length: 10 }, (_, k) => ({
      id: `p-pairs${k}`,
      employee: `emp${k}@pairs.test`,
      hubs: Array.from({ length: 60 }, (_, i) => `pc-${k}-${i}`),
    }));
    const contactOf = (hub: string) => `contact-${hub}@clients.test`;
    const setupIds: string[] = [];
    await Promise.all(partners.map(async (p) => {
      const upsert = await api.post(p.id, { type: 'partner.upsert', name: `Pair Partners ${p.id}` });
      expect(upsert.status).toBe(202);
      const batch = await api.batch(p.id, [
        { type: 'employee.tag', email: p.employee, name: `Employee of ${p.id}` },
        ...p.hubs.map((hubId) => ({ type: 'client.upsert', hubId, name: `Client ${hubId}`, contactEmail: contactOf(hubId) })),
      ]);
      expect(batch.status).toBe(202);
      setupIds.push(upsert.body.commandId, ...(batch.body.commands as { commandId: string }[]).map((c) => c.commandId));
    }));
    expect(setupIds).toHaveLength(620);
    await waitFor(async () => (await countByState(stack, setupIds)).completed === 620, { timeoutMs: 30_000, what: 'the set-up commands' });

    // The burst: 10 access.assign commands (one per partner), each 60 clients × its one employee: 600 pending pairs.
    const replies = await Promise.all(partners.map((p) => api.post(p.id, { type: 'access.assign', clientHubIds: p.hubs, employeeEmails: [p.employee] })));
    expect(replies.map((r) => r.status)).toEqual(partners.map(() => 202));
    const ids = replies.map((r) => r.body.commandId as string);

    const itemsDone = async () => Number((await stack.sql<{ n: string }>(`select count(*) as n from command_item where command_id = any($1) and state = 'completed'`, [ids]))[0]!.n);
    // First crash: in the middle of the pairs.
    await waitFor(async () => (await itemsDone()) >= 30, { timeoutMs: 30_000, intervalMs: 2, what: 'some pairs applied' });
    await worker.kill('SIGKILL');
    const doneAtKill = await itemsDone();
    expect(doneAtKill).toBeGreaterThanOrEqual(30);
    expect(doneAtKill).toBeLessThan(600);

    // Second crash: while the SMTP server holds messages it has not answered (a slow server, or a
    // crash between the server's 250 and the outbox update): the server has them, the outbox says pending.
    relay.holdDataReplies();
    ({ child: worker } = await spawnRole(stack, 'worker'));
    await waitFor(() => {
      const c = relay.counts();
      return c.unanswered >= 1 && stack.smtp.messages.length === c.delivered;
    }, { timeoutMs: 20_000, intervalMs: 5, what: 'an email the SMTP server took but did not answer' });
    const unansweredAtKill = relay.counts().unanswered;
    await worker.kill('SIGKILL');
    relay.release();
    const sentAtKill = stack.smtp.messages.length;
    expect(sentAtKill).toBeLessThan(600);

    ({ child: worker } = await spawnRole(stack, 'worker'));
    await waitFor(async () => (await countByState(stack, ids)).completed === 10, { timeoutMs: 30_000, what: 'every assign command to complete after the restart' });
    await waitFor(async () => {
      const [o] = await stack.sql<{ sent: string; total: string }>(`select count(*) filter (where state = 'sent') as sent, count(*) as total from outbox`);
      return Number(o!.sent) === 600 && Number(o!.total) === 600;
    }, { timeoutMs: 30_000, what: 'every grant email to be sent' });
    // Nothing is left that could still send: the mail queue is idle.
    await waitFor(async () => (await pendingJobs(redis, stack.env.QUEUE_PREFIX!, 'mail')) === 0, { timeoutMs: 15_000, what: 'the mail queue to drain' });

    // Every pair applied once: items completed with outcome pending, one access row and one grant token per pair.
    for (const [k, p] of partners.entries()) {
      const status = await api.get(`/v1/commands/${encodeURIComponent(ids[k]!)}`);
      expect(status.body.state).toBe('completed');
      expect(status.body.items).toEqual(p.hubs.map((clientHubId) => ({ clientHubId, employeeEmail: p.employee, state: 'completed', outcome: 'pending' })));
    }
    const access = await stack.sql<{ partner_id: string; hub_id: string; email: string; state: string }>('select partner_id, hub_id, email, state from access');
    expect(access.map((a) => `${a.partner_id} ${a.hub_id} ${a.email} ${a.state}`).sort())
      .toEqual(partners.flatMap((p) => p.hubs.map((h) => `${p.id} ${h} ${p.employee} pending`)).sort());
    const tokens = await stack.sql<{ hub_id: string; email: string; n: string }>('select hub_id, email, count(*) as n from grant_token group by hub_id, email');
    expect(tokens).toHaveLength(600);
    expect(tokens.filter((t) => Number(t.n) !== 1)).toEqual([]);

    // Every client contact got its email (at least once), each message with the outbox row's stable Message-ID ...
    const messages = stack.smtp.messages;
    const count = (keys: string[]) => {
      const m = new Map<string, number>();
      for (const k of keys) m.set(k, (m.get(k) ?? 0) + 1);
      return m;
    };
    const byContact = count(messages.map((m) => m.to.toLowerCase()));
    const byMessageId = count(messages.map((m) => m.messageId));
    expect([...byContact.keys()].sort()).toEqual(partners.flatMap((p) => p.hubs.map(contactOf)).sort());
    expect(messages.every((m) => /^<[0-9a-f]{32}@[^>]+>$/.test(m.messageId))).toBe(true);
    const outbox = await stack.sql<{ message_id: string }>('select message_id from outbox');
    expect(new Set(outbox.map((o) => o.message_id))).toEqual(new Set(byMessageId.keys()));
    // ... and once in effect: one logical email (one Message-ID) per contact. A message the SMTP server
    // took but never answered before the crash is the one case that can arrive twice (no SMTP client
    // can know it was kept); it then carries the same Message-ID, so the receiver drops the copy.
    const idsPerContact = new Map<string, Set<string>>();
    for (const m of messages) idsPerContact.set(m.to.toLowerCase(), (idsPerContact.get(m.to.toLowerCase()) ?? new Set()).add(m.messageId));
    expect([...idsPerContact].filter(([, ids]) => ids.size !== 1)).toEqual([]);
    expect(byMessageId.size).toBe(600);
    const extraCopies = messages.length - byMessageId.size;
    expect(extraCopies).toBeLessThanOrEqual(unansweredAtKill);
  }, 60_000);
});
