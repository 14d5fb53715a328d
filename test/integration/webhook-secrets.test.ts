/**
 * Webhook signing secrets at rest, end to end: what the `webhook.secret` column holds, the start
 * step that seals clear rows from before and rows of a previous key, a start with a wrong key, and
 * a delivery whose secret the worker cannot open. Each test runs services one after another on its
 * own database (a restart is a new `startApp` on the same database); signatures are checked with
 * the receiver side of the Standard Webhooks library.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { Webhook } from 'standardwebhooks';
import { loadConfig } from '../../config/index.js';
import { startApp, StartupError, type RunningApp } from '../../src/app.js';
import { dropDatabase } from '../../src/db/orm.js';
import { keyId, sealWebhookSecret } from '../../src/webhooks/secret-box.js';
import { newWebhookSecret } from '../../src/webhooks/sender.js';
import { dropQueues, makeApi, testEnv, waitFor, type Api } from '../helpers/harness.js';
import { startSmtp, type TestSmtp } from '../helpers/smtp.js';

interface Received { path: string; headers: Record<string, string>; body: string }

const received: Received[] = [];
const receiver = createServer((req: IncomingMessage, res: ServerResponse) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(',') : v ?? '']));
    received.push({ path: req.url ?? '/', headers, body: Buffer.concat(chunks).toString('utf8') });
    res.writeHead(200).end();
  });
});
let receiverUrl: string;
let smtp: TestSmtp;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', () => resolve()));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  smtp = await startSmtp();
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await smtp?.close();
  receiver.closeAllConnections();
  await new Promise<void>((resolve) => receiver.close(() => resolve()));
});

const newKey = () => randomBytes(32).toString('base64');

/**
 * A database and queue prefix of the test's own, on which services start and stop one after
 * another with the keys each start is given; `sql` reads it directly.
 */
function stack() {
  const env = testEnv(smtp.url, { WEBHOOK_ALLOW_PRIVATE: 'true' });
  const pool = new pg.Pool({ connectionString: env.DATABASE_URL, max: 2 });
  let running: RunningApp | undefined;
  cleanups.push(async () => {
    await running?.close();
    await pool.end();
    await dropQueues(env.REDIS_URL!, env.QUEUE_PREFIX!);
    await dropDatabase(env.DATABASE_URL!);
  });
  return {
    async start(keys: Record<string, string>, onJobError?: (message: string) => void): Promise<Api> {
      await running?.close();
      running = undefined;
      running = await startApp(loadConfig({ ...env, ...keys }), onJobError ? { hooks: { onJob: (_q, _job, outcome, _final, err) => { if (outcome === 'failed' && err) onJobError(err.message); } } } : {});
      return makeApi(running.url!);
    },
    async stop() {
      await running?.close();
      running = undefined;
    },
    sql: async <T>(q: string, params: unknown[] = []) => (await pool.query(q, params)).rows as T[],
  };
}

const storedSecret = async (s: ReturnType<typeof stack>, id: string) => (await s.sql<{ secret: string }>('select secret from webhook where id = $1', [id]))[0]!.secret;

/** Applies a command whose completion is a `command.completed` event; waits for its delivery at `path`. */
async function deliveredAt(api: Api, partnerId: string, path: string, commandId: string): Promise<Received> {
  const r = await api.apply(partnerId, { type: 'employee.tag', commandId, email: `${commandId}@secrets.test` });
  expect(r.state).toBe('completed');
  let got: Received | undefined;
  await waitFor(() => (got = received.find((x) => x.path === path && x.body.includes(`"${commandId}"`))) !== undefined, { timeoutMs: 20_000, what: `the delivery of ${commandId}` });
  return got!;
}

const verified = (secret: string, r: Received) => new Webhook(secret).verify(r.body, r.headers) as { data: { commandId: string } };

describe('webhook secrets at rest', () => {
  it('when a partner subscribes, then the column holds the secret sealed with the current key (none of it in clear) and deliveries verify against the secret returned at creation', async () => {
    const s = stack();
    const key = newKey();
    const api = await s.start({ WEBHOOK_SECRET_KEY: key });
    expect((await api.apply('p-seal', { type: 'partner.upsert', name: 'Seal' })).state).toBe('completed');
    const created = await api.request('POST', '/v1/partners/p-seal/webhooks', { body: { url: `${receiverUrl}/sealed`, events: ['command.completed'] } });
    expect(created.status).toBe(201);
    const secret = created.body.secret as string;
    expect(secret).toMatch(/^whsec_/);

    const [row] = await s.sql<{ whole: string; secret: string }>(`select row_to_json(w)::text as whole, secret from webhook w where id = $1`, [created.body.id]);
    expect(row!.secret).toMatch(new RegExp(`^v1:${keyId(Buffer.from(key, 'base64'))}:[A-Za-z0-9_-]+$`));
    expect(row!.whole).not.toContain(secret.slice('whsec_'.length));
    expect(row!.whole).not.toContain(Buffer.from(secret.slice('whsec_'.length), 'base64').toString('base64url'));

    const got = await deliveredAt(api, 'p-seal', '/sealed', 'seal-1');
    expect(verified(secret, got).data.commandId).toBe('seal-1');
  });

  it('when a clear secret from before sealing is stored, then the next start seals it and it still signs; a start with a wrong key refuses and changes nothing; a rotation seals it with the new key', async () => {
    const s = stack();
    const keyA = newKey();
    const keyB = newKey();
    const api = await s.start({ WEBHOOK_SECRET_KEY: keyA });
    expect((await api.apply('p-old', { type: 'partner.upsert', name: 'Old' })).state).toBe('completed');
    // A subscription as a version before sealing wrote it.
    const secret = newWebhookSecret();
    await s.sql(`insert into webhook (id, partner_id, url, events, secret) values ('wh_legacy0001', 'p-old', $1, '["command.completed"]', $2)`, [`${receiverUrl}/legacy`, secret]);
    await s.stop();

    // Restart, same key: sealed at start.
    const again = await s.start({ WEBHOOK_SECRET_KEY: keyA });
    const sealedA = await storedSecret(s, 'wh_legacy0001');
    expect(sealedA.startsWith(`v1:${keyId(Buffer.from(keyA, 'base64'))}:`)).toBe(true);
    expect(sealedA).not.toContain(secret.slice('whsec_'.length));
    expect(verified(secret, await deliveredAt(again, 'p-old', '/legacy', 'legacy-1')).data.commandId).toBe('legacy-1');
    await s.stop();

    // Another key, without the one that sealed: the start refuses (exit code 2), naming the key, and writes nothing.
    const refused = await s.start({ WEBHOOK_SECRET_KEY: keyB }).then(() => null, (err: unknown) => err);
    expect(refused).toBeInstanceOf(StartupError);
    expect((refused as StartupError).exitCode).toBe(2);
    expect((refused as Error).message).toContain(`webhook wh_legacy0001 is sealed with key ${keyId(Buffer.from(keyA, 'base64'))}`);
    expect(await storedSecret(s, 'wh_legacy0001')).toBe(sealedA);

    // The rotation: the new key, the old one as previous.
    const rotated = await s.start({ WEBHOOK_SECRET_KEY: keyB, WEBHOOK_SECRET_KEY_PREVIOUS: keyA });
    expect((await storedSecret(s, 'wh_legacy0001')).startsWith(`v1:${keyId(Buffer.from(keyB, 'base64'))}:`)).toBe(true);
    expect(verified(secret, await deliveredAt(rotated, 'p-old', '/legacy', 'legacy-2')).data.commandId).toBe('legacy-2');
    await s.stop();

    // Every secret now opens with the new key alone.
    const after = await s.start({ WEBHOOK_SECRET_KEY: keyB });
    expect(verified(secret, await deliveredAt(after, 'p-old', '/legacy', 'legacy-3')).data.commandId).toBe('legacy-3');
  });

  it('when the worker cannot open a delivery\'s secret (sealed with a key it does not have), then its job fails with WEBHOOK_SECRET_UNREADABLE, nothing is sent and the delivery stays pending', async () => {
    const s = stack();
    const failures: string[] = [];
    const api = await s.start({ WEBHOOK_SECRET_KEY: newKey() }, (m) => failures.push(m));
    expect((await api.apply('p-alien', { type: 'partner.upsert', name: 'Alien' })).state).toBe('completed');
    // Written after this process started, by one with another key.
    const alien = sealWebhookSecret({ current: randomBytes(32), previous: null }, 'wh_alien00001', newWebhookSecret());
    await s.sql(`insert into webhook (id, partner_id, url, events, secret) values ('wh_alien00001', 'p-alien', $1, '["command.completed"]', $2)`, [`${receiverUrl}/alien`, alien]);

    expect((await api.apply('p-alien', { type: 'employee.tag', commandId: 'alien-1', email: 'a@alien.test' })).state).toBe('completed');
    await waitFor(() => failures.some((m) => m.startsWith('WEBHOOK_SECRET_UNREADABLE: the secret of webhook wh_alien00001 is sealed with key')), { timeoutMs: 20_000, what: 'the delivery job to fail' });
    expect(received.filter((r) => r.path === '/alien')).toEqual([]);
    expect(await s.sql(`select state, attempts from webhook_delivery where webhook_id = 'wh_alien00001'`)).toEqual([{ state: 'pending', attempts: 0 }]);
  });
});
