import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { dropDatabase, openOrm, type Orm } from '../../src/db/orm.js';
import { QUEUES } from '../../src/jobs/queues.js';
import { makeApi, spawnService, testEnv, uniqueName, waitFor, type Api, type ChildService } from '../helpers/harness.js';
import { startSmtp, type TestSmtp } from '../helpers/smtp.js';

/**
 * Scale-out shown (issue 16): a three-master Redis Cluster on loopback ports, the API and two worker
 * processes against it (REDIS_CLUSTER=true: a hash tag per queue), a burst of assigns with their
 * emails; each pair applied once, each email sent once, and the queues spread over the nodes.
 */

const CLIENTS = Array.from({ length: 16 }, (_, i) => `cl-${i}`);
const EMPLOYEES = ['ann', 'bob', 'cat', 'dan'].map((n) => `${n}@scale.test`);
const P = 'p-cluster';

/** Whether a TCP port of 127.0.0.1 is free now. */
const free = (port: number) => new Promise<boolean>((resolve) => {
  const s = createServer();
  s.once('error', () => resolve(false));
  s.listen({ port, host: '127.0.0.1', exclusive: true }, () => s.close(() => resolve(true)));
});

/** Three ports whose cluster bus ports (port + 10000) are free too. */
async function clusterPorts(): Promise<number[]> {
  const ports: number[] = [];
  for (let tries = 0; ports.length < 3 && tries < 200; tries++) {
    const p = 20_000 + Math.floor(Math.random() * 20_000);
    if (!ports.includes(p) && (await free(p)) && (await free(p + 10_000))) ports.push(p);
  }
  if (ports.length < 3) throw new Error('no free loopback ports for the cluster');
  return ports;
}

/** One node's view of the cluster: slot ranges and the port that serves them. */
async function slotOwners(port: number): Promise<{ from: number; to: number; port: number }[]> {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true });
  try {
    await r.connect();
    const slots = await r.cluster('SLOTS');
    return slots.map(([from, to, ...nodes]) => ({ from, to, port: nodes[0]![1] }));
  } finally {
    r.disconnect();
  }
}

describe('the service on a Redis Cluster', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pap-cluster-'));
  const servers: ChildProcess[] = [];
  const children: ChildService[] = [];
  let ports: number[] = [];
  let smtp: TestSmtp;
  let env: Record<string, string>;
  let api: Api;
  let db: Orm | undefined;

  beforeAll(async () => {
    for (const bin of ['redis-server', 'redis-cli']) {
      if (spawnSync(bin, ['--version']).error) throw new Error(`${bin} is not installed (apt-get install redis-server); .ci/run installs it`);
    }
    ports = await clusterPorts();
    for (const port of ports) {
      const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`,
        '--cluster-node-timeout', '5000', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir, '--logfile', ''], { stdio: 'ignore' });
      servers.push(server);
    }
    for (const port of ports) {
      await waitFor(async () => {
        const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
        r.on('error', () => undefined);
        try {
          await r.connect();
          return (await r.ping()) === 'PONG';
        } catch {
          return false;
        } finally {
          r.disconnect();
        }
      }, { timeoutMs: 10_000, what: `redis-server on ${port}` });
    }
    const created = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8', timeout: 30_000 });
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed:\n${created.stdout}${created.stderr}`);
    for (const port of ports) {
      await waitFor(async () => {
        const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true });
        try {
          await r.connect();
          return /cluster_state:ok/.test(String(await r.cluster('INFO')));
        } finally {
          r.disconnect();
        }
      }, { timeoutMs: 20_000, intervalMs: 200, what: `node ${port} to see the cluster ok` });
    }

    // A queue prefix whose per-queue hash tags fall on more than one node (with five queues on three
    // masters, one node would hold them all for 1 prefix in 81): this run shows the spread.
    const owners = await slotOwners(ports[0]!);
    const probe = new Redis({ port: ports[0]!, host: '127.0.0.1' });
    let prefix = '';
    try {
      for (let i = 0; i < 50 && !prefix; i++) {
        const candidate = uniqueName('papcluster');
        const nodes = new Set<number>();
        for (const q of Object.values(QUEUES)) {
          const slot = (await probe.cluster('KEYSLOT', `{${candidate}-${q}}`)) as number;
          nodes.add(owners.find((o) => slot >= o.from && slot <= o.to)!.port);
        }
        if (nodes.size >= 2) prefix = candidate;
      }
    } finally {
      probe.disconnect();
    }

    smtp = await startSmtp();
    env = testEnv(smtp.url, { REDIS_URL: `redis://127.0.0.1:${ports[0]}`, REDIS_CLUSTER: 'true', QUEUE_PREFIX: prefix, SHUTDOWN_TIMEOUT_MS: '5000' });
    // The API (and the scheduler) first: it migrates the new database. Then two worker processes.
    const apiProc = spawnService({ ...env, ROLES: 'api,scheduler' });
    children.push(apiProc);
    api = makeApi(await apiProc.url);
    for (let i = 0; i < 2; i++) children.push(spawnService({ ...env, ROLES: 'worker', MIGRATE_ON_START: 'false' }));
    await Promise.all(children.map((c) => c.url));
    db = await openOrm(env.DATABASE_URL!, { migrate: false, poolMax: 2 });
  }, 120_000);

  afterAll(async () => {
    for (const c of children) await c.kill('SIGTERM');
    await db?.close();
    for (const s of servers) {
      if (s.exitCode === null && s.signalCode === null) {
        const exited = new Promise((resolve) => s.once('exit', resolve));
        s.kill('SIGKILL');
        await exited;
      }
    }
    rmSync(dir, { recursive: true, force: true });
    await smtp?.close();
    if (env) await dropDatabase(env.DATABASE_URL!);
  }, 60_000);

  const sql = <T extends object>(query: string, params: unknown[] = []) => db!.em.fork().execute<T[]>(query, params);

  it('when a burst of assigns runs through an API and two workers on a three-master cluster, then each pair is applied once, each email is sent once, and the queues live on more than one node', async () => {
    expect((await api.apply(P, { type: 'partner.upsert', name: 'Cluster Partner' })).state).toBe('completed');
    const setup = await api.batch(P, [
      ...CLIENTS.map((hubId) => ({ type: 'client.upsert', hubId, name: `Client ${hubId}`, contactEmail: `boss@${hubId}.test` })),
      ...EMPLOYEES.map((email) => ({ type: 'employee.tag', email })),
    ]);
    expect(setup.status).toBe(202);
    for (const c of setup.body.commands as { commandId: string }[]) expect((await api.waitCommand(c.commandId)).state).toBe('completed');

    // The burst: one assign per client (its four employees), all posted at once.
    const posted = await Promise.all(CLIENTS.map((hubId) => api.post(P, { type: 'access.assign', commandId: `burst-${hubId}`, clientHubIds: [hubId], employeeEmails: EMPLOYEES })));
    expect(posted.map((r) => r.status)).toEqual(CLIENTS.map(() => 202));
    for (const hubId of CLIENTS) {
      const status = await api.waitCommand(`burst-${hubId}`, 60_000);
      expect({ hubId, state: status.state }).toEqual({ hubId, state: 'completed' });
      expect(status.items.map((i: { outcome: string }) => i.outcome)).toEqual(EMPLOYEES.map(() => 'pending'));
    }

    // Each pair once: one access row per pair, pending, applied by its burst command.
    const pairs = await sql<{ hub_id: string; email: string; state: string; command_id: string }>(
      'select hub_id, email, state, command_id from access where partner_id = ? order by hub_id, email', [P]);
    expect(pairs).toHaveLength(CLIENTS.length * EMPLOYEES.length);
    expect(new Set(pairs.map((p) => `${p.hub_id}|${p.email}`)).size).toBe(pairs.length);
    for (const p of pairs) expect(p).toEqual({ hub_id: p.hub_id, email: p.email, state: 'pending', command_id: `burst-${p.hub_id}` });

    // Each email once: one grant email per client (its command lists the four employees).
    await waitFor(() => smtp.messages.length >= CLIENTS.length, { timeoutMs: 30_000, what: 'the grant emails' });
    await waitFor(async () => {
      const [{ n }] = (await sql<{ n: number }>("select count(*)::int as n from outbox where state <> 'sent'")) as [{ n: number }];
      return n === 0;
    }, { timeoutMs: 30_000, what: 'every outbox row to be sent' });
    const recipients = smtp.messages.map((m) => m.recipients.join(',')).sort();
    expect(recipients).toEqual(CLIENTS.map((h) => `boss@${h}.test`).sort());
    expect(new Set(smtp.messages.map((m) => m.messageId)).size).toBe(CLIENTS.length);

    // A hash tag per queue: the queues' keys are on more than one node, each where its slot says.
    const owners = await slotOwners(ports[0]!);
    const queuesOn = new Map<number, Set<string>>();
    for (const port of ports) {
      const node = new Redis({ port, host: '127.0.0.1' });
      try {
        const found = new Set<string>();
        let cursor = '0';
        do {
          const [next, keys] = await node.scan(cursor, 'MATCH', `{${env.QUEUE_PREFIX}-*`, 'COUNT', 1000);
          for (const k of keys) found.add(/^\{[^}]*-([a-z]+)\}:/.exec(k)![1]!);
          cursor = next;
        } while (cursor !== '0');
        queuesOn.set(port, found);
        for (const q of found) {
          const slot = (await node.cluster('KEYSLOT', `{${env.QUEUE_PREFIX}-${q}}`)) as number;
          expect({ q, port, owner: owners.find((o) => slot >= o.from && slot <= o.to)!.port }).toEqual({ q, port, owner: port });
        }
      } finally {
        node.disconnect();
      }
    }
    const nodesWithQueues = [...queuesOn.values()].filter((s) => s.size > 0);
    expect(nodesWithQueues.length).toBeGreaterThanOrEqual(2);
    const all = new Set(nodesWithQueues.flatMap((s) => [...s]));
    for (const q of [QUEUES.commands, QUEUES.pairs]) expect(all.has(q)).toBe(true);
    // No queue is split over nodes.
    expect(nodesWithQueues.reduce((n, s) => n + s.size, 0)).toBe(all.size);

    // Nothing failed anywhere, and the API is ready (its Redis check pings the cluster).
    expect((await api.request('GET', '/readyz', { token: null })).status).toBe(200);
    const failed = await sql<{ n: number }>("select count(*)::int as n from command where state <> 'completed'");
    expect(failed).toEqual([{ n: 0 }]);

    // The ops CLI reads the cluster too: no failed job; and, pointed at a prefix with no queues, it
    // refuses and names the one it finds on the nodes.
    const ops = (args: string[], prefix = env.QUEUE_PREFIX!) => spawnSync(process.execPath, ['--import', 'tsx', 'src/ops/cli.ts', ...args], {
      cwd: new URL('../..', import.meta.url).pathname, encoding: 'utf8', timeout: 60_000,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', REDIS_URL: env.REDIS_URL!, REDIS_CLUSTER: 'true', QUEUE_PREFIX: prefix, DATABASE_URL: env.DATABASE_URL! },
    });
    const listed = ops(['failed', '--json']);
    expect({ status: listed.status, stderr: listed.stderr }).toMatchObject({ status: 0, stderr: expect.stringContaining('a node of a Redis Cluster') });
    expect(JSON.parse(listed.stdout)).toMatchObject({ count: 0, jobs: [] });
    const wrong = ops(['failed'], 'no-such-prefix');
    expect(wrong.status).toBe(2);
    expect(wrong.stderr).toContain(env.QUEUE_PREFIX!);
  }, 120_000);
});
