import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { Redis } from 'ioredis';
import pg from 'pg';
import { SMTPServer } from 'smtp-server';
import { dropDatabase } from '../../src/db/orm.js';
import { dropQueues, makeApi, PG_BASE, REDIS_URL, testEnv, TOKENS, waitFor } from '../helpers/harness.js';

/** `npm start` as a container runs it: SIGTERM to the npm process, a busy port (issue 16, issue 11 finding 10). */

const ROOT = new URL('../..', import.meta.url).pathname;

/** `npm start` with the test's environment; collects stdout and stderr apart. */
function npmStart(env: Record<string, string>) {
  const proc = spawn('npm', ['start'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (b: Buffer) => { stdout += b.toString(); });
  proc.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  return { proc, exited, stdout: () => stdout, stderr: () => stderr };
}

/** The JSON log lines of a stdout (npm's own banner lines are not JSON). */
const logLines = (out: string) => out.split('\n').flatMap((l) => {
  try {
    return l.startsWith('{') ? [JSON.parse(l) as Record<string, unknown>] : [];
  } catch {
    return []; // a line still being written
  }
});

/** The parent pid of a process, from /proc/<pid>/stat ("pid (comm) state ppid …"; comm may hold spaces and parentheses). */
function ppidOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined; // gone meanwhile
  }
}

/** Every live process below `root`, from /proc. */
function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const pid of readdirProc()) {
    const ppid = ppidOf(pid);
    if (ppid !== undefined) parent.set(pid, ppid);
  }
  const found: number[] = [];
  const walk = (p: number) => {
    for (const [pid, pp] of parent) if (pp === p) { found.push(pid); walk(pid); }
  };
  walk(root);
  return found;
}
function readdirProc(): number[] {
  return readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number);
}

/** Alive and not a zombie. */
function alive(pid: number): boolean {
  if (!existsSync(`/proc/${pid}/stat`)) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** An SMTP server that holds each message for `holdMs` before accepting it: a send in flight at SIGTERM. */
async function slowSmtp(holdMs: number) {
  const accepted: string[] = [];
  let dataStarted = 0;
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, session, callback) {
      dataStarted++;
      stream.resume();
      stream.on('end', () => {
        setTimeout(() => {
          accepted.push(session.envelope.rcptTo.map((r) => r.address).join(','));
          callback();
        }, holdMs);
      });
    },
  });
  server.on('error', () => undefined); // a client that goes away mid-session is not a test failure
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.server.address() as AddressInfo).port;
  return {
    url: `smtp://127.0.0.1:${port}`,
    accepted,
    dataStarted: () => dataStarted,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('npm start under a process manager', () => {
  let smtp: Awaited<ReturnType<typeof slowSmtp>>;
  let child: ReturnType<typeof npmStart> | undefined;
  let env: Record<string, string>;

  beforeAll(async () => {
    smtp = await slowSmtp(1500);
    env = testEnv(smtp.url, { LOG_LEVEL: 'info', SHUTDOWN_TIMEOUT_MS: '10000' });
  });
  afterAll(async () => {
    if (child && child.proc.exitCode === null && child.proc.signalCode === null) {
      child.proc.kill('SIGKILL');
      await child.exited;
    }
    await smtp.close();
    await dropQueues(env.REDIS_URL!, env.QUEUE_PREFIX!);
    await dropDatabase(env.DATABASE_URL!);
  });

  it('when the npm process alone gets SIGTERM while an email is being sent, then the app (npm\'s direct child) drains, the send completes, npm exits 0 and no process of the tree is left', async () => {
    child = npmStart(env);
    const npmPid = child.proc.pid!;
    await waitFor(() => logLines(child!.stdout()).some((l) => l.msg === 'partner access pipeline started') || child!.proc.exitCode !== null, { timeoutMs: 60_000, what: 'npm start to be ready' });
    const started = logLines(child.stdout()).find((l) => l.msg === 'partner access pipeline started');
    expect(started).toBeDefined();
    expect(started!.node).toMatch(/^v24\./); // npm start runs the Node 24 dev dependency
    const appPid = Number(started!.pid);
    const api = makeApi(String(started!.url));
    await waitFor(async () => (await api.request('GET', '/readyz', { token: null })).status === 200, { what: '/readyz to answer 200' });

    // `exec` in the start script: npm's only child is the app itself (no shell in between to die and orphan it).
    const tree = descendants(npmPid);
    expect(tree).toContain(appPid);
    expect(ppidOf(appPid)).toBe(npmPid);

    // Jobs run: a few commands, the last asking a client for access, so a grant email is sent.
    for (const cmd of [
      { type: 'partner.upsert', name: 'Shutdown Partners' },
      { type: 'employee.tag', email: 'sig@acme.test', name: 'Sig' },
      { type: 'client.upsert', hubId: 'c-sig', name: 'Signal Client', contactEmail: 'boss@c-sig.test' },
      { type: 'access.assign', commandId: 'assign-sigterm', clientHubIds: ['c-sig'], employeeEmails: ['sig@acme.test'] },
    ]) {
      const r = await api.post('p-100', cmd, TOKENS.admin);
      expect([200, 202]).toContain(r.status);
    }
    // The SMTP server holds the message for 1.5 s: SIGTERM arrives while it is being sent.
    await waitFor(() => smtp.dataStarted() > 0, { timeoutMs: 30_000, what: 'the grant email to reach the SMTP server' });
    expect(smtp.accepted).toEqual([]);

    const signalledAt = Date.now();
    process.kill(npmPid, 'SIGTERM'); // the npm process only, not its process group
    const { code, signal } = await child.exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(Date.now() - signalledAt).toBeLessThan(15_000);

    const lines = logLines(child.stdout());
    expect(lines.find((l) => String(l.msg).startsWith('shutting down'))).toMatchObject({ signal: 'SIGTERM', pid: appPid });
    expect(lines.find((l) => l.msg === 'shut down cleanly')).toMatchObject({ pid: appPid });
    expect(lines.filter((l) => l.msg === 'workers did not drain in time; forcing close')).toEqual([]);
    // The send in flight was finished before the exit, not cut off.
    expect(smtp.accepted).toEqual(['boss@c-sig.test']);

    // Nothing of the tree is left: not the app, not anything it started.
    await waitFor(() => [npmPid, ...tree].every((p) => !alive(p)), { timeoutMs: 5000, what: 'every process of the npm start tree to be gone' });
    await expect(fetch(`${api.base}/healthz`)).rejects.toThrow();

    // The command whose email was in flight finished (nothing for a later start to redo).
    const db = new pg.Client({ connectionString: env.DATABASE_URL });
    await db.connect();
    try {
      const { rows } = await db.query<{ state: string }>('select state from command where id = $1', ['assign-sigterm']);
      expect(rows).toEqual([{ state: 'completed' }]);
    } finally {
      await db.end();
    }
  });
});

describe('npm start on a busy port', () => {
  let holder: Server;
  let env: Record<string, string>;
  beforeAll(async () => {
    holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', () => resolve()));
    const port = (holder.address() as AddressInfo).port;
    env = testEnv('smtp://127.0.0.1:1', { PORT: String(port), LOG_LEVEL: 'info' });
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => holder.close(() => resolve()));
    await dropQueues(env.REDIS_URL!, env.QUEUE_PREFIX!);
    await dropDatabase(env.DATABASE_URL!);
  });

  it('when PORT is taken, then start stops with one line and exit code 4, before touching Redis or Postgres', async () => {
    const child = npmStart(env);
    const { code } = await child.exited;
    expect(code).toBe(4);
    const stderr = child.stderr().trim();
    expect(stderr.split('\n')).toHaveLength(1);
    expect(stderr).toMatch(new RegExp(`^The HTTP port 127\\.0\\.0\\.1:${env.PORT} is already in use .* set PORT to a free port\\.$`));
    expect(child.stdout()).not.toMatch(/EADDRINUSE|\n\s+at /);

    // Nothing was written under this run's queue prefix: not the job scheduler, not a queue's meta.
    const redis = new Redis(REDIS_URL);
    try {
      const [, keys] = await redis.scan('0', 'MATCH', `${env.QUEUE_PREFIX}:*`, 'COUNT', 100_000);
      expect(keys).toEqual([]);
    } finally {
      redis.disconnect();
    }
    // …and the database was not even created (no migration ran).
    const db = new pg.Client({ connectionString: `${PG_BASE}/postgres` });
    await db.connect();
    try {
      const name = new URL(env.DATABASE_URL!).pathname.slice(1);
      expect((await db.query('select 1 from pg_database where datname = $1', [name])).rows).toEqual([]);
    } finally {
      await db.end();
    }
  });
});

