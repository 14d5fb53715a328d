import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createTransport } from 'nodemailer';
import { startService, waitFor, type TestService } from '../helpers/harness.js';

/** What a newcomer runs besides the service: the local mail sink, and the ops CLI telling which Redis it reads. */

const ROOT = new URL('../..', import.meta.url).pathname;

describe('npm run mail-sink', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'pap-mail-sink-test-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('when a message is sent to the sink, then it is written as an .eml file and one line names its recipient, subject, file and links', async () => {
    const proc = spawn('npm', ['run', '--silent', 'mail-sink', '--', '--port', '0', '--dir', dir], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
    proc.stderr!.on('data', (b: Buffer) => { out += b.toString(); });
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    try {
      await waitFor(() => /SMTP on 127\.0\.0\.1:\d+/.test(out) || proc.exitCode !== null, { timeoutMs: 30_000, what: 'the mail sink to listen' });
      const port = Number(/SMTP on 127\.0\.0\.1:(\d+)/.exec(out)![1]);
      expect(out).toContain(`each message is written to ${dir}`);

      const transport = createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
      await transport.sendMail({
        from: 'Partner Program <no-reply@partner-access.local>',
        to: 'boss@client.test',
        subject: 'Access request from Acme',
        text: 'Grant: http://localhost:3000/v1/grants/abc123\nThanks.',
      });
      transport.close();

      await waitFor(() => out.includes('mail-sink: to boss@client.test'), { what: 'the line of the message' });
      const files = readdirSync(dir).filter((f) => f.endsWith('.eml'));
      expect(files).toHaveLength(1);
      const eml = readFileSync(join(dir, files[0]!), 'utf8');
      expect(eml).toMatch(/^Subject: Access request from Acme$/m);
      expect(out).toContain(`| Access request from Acme | ${join(dir, files[0]!)}`);
      expect(out).toContain('    http://localhost:3000/v1/grants/abc123');
    } finally {
      proc.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});

describe('the ops CLI', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startService();
  });
  afterAll(async () => {
    await svc.close();
  });

  const run = async (env: Record<string, string>, ...args: string[]) => {
    try {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/ops/cli.ts', ...args], {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
        timeout: 30_000,
      });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };

  it('when run with the service\'s settings and --json, then it says which Redis and prefix it reads and prints one JSON document', async () => {
    const r = await run(svc.env, 'failed', '--json');
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`ops: Redis ${svc.env.REDIS_URL} (REDIS_URL), queue prefix "${svc.env.QUEUE_PREFIX}" (QUEUE_PREFIX)`);
    expect(JSON.parse(r.stdout)).toEqual({ redis: svc.env.REDIS_URL, queuePrefix: svc.env.QUEUE_PREFIX, postgres: svc.env.DATABASE_URL, jobs: [], count: 0 });

    const reenqueue = await run(svc.env, 'reenqueue', '--json');
    expect(reenqueue.code).toBe(0);
    expect(JSON.parse(reenqueue.stdout)).toMatchObject({ queuePrefix: svc.env.QUEUE_PREFIX, reenqueued: { commands: 0, pairs: 0, mail: 0 } });
  });

  it('when QUEUE_PREFIX does not match any queue of the service, then it refuses (exit 2) and lists the prefixes it found rather than picking one', async () => {
    const wrong = { ...svc.env, QUEUE_PREFIX: `${svc.env.QUEUE_PREFIX}-typo` };
    const r = await run(wrong, 'failed', '--json');
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`no queue of the service under prefix "${wrong.QUEUE_PREFIX}"`);
    expect(r.stderr).toContain('the CLI does not guess');
    const found = /queue prefixes found there: (.*)\. Set/.exec(r.stderr)?.[1]?.split(', ') ?? [];
    if (!found.includes('(and more)')) expect(found).toContain(svc.env.QUEUE_PREFIX);

    // Asking wrote nothing under the wrong prefix (so a second run refuses too).
    expect(await svc.app.ctx.queues.connection.keys(`${wrong.QUEUE_PREFIX}:*`)).toEqual([]);
    expect((await run(wrong, 'failed')).code).toBe(2);
  });

  it('when REDIS_URL and QUEUE_PREFIX are not set, then it says it reads the defaults', async () => {
    const { REDIS_URL: _r, QUEUE_PREFIX: _q, ...rest } = svc.env;
    const r = await run(rest, 'failed');
    expect(r.stderr.split('\n')[0]).toBe(`ops: Redis redis://127.0.0.1:6379/0 (default, REDIS_URL not set), queue prefix "pap" (default, QUEUE_PREFIX not set), Postgres ${svc.env.DATABASE_URL} (DATABASE_URL)`);
    expect([0, 2]).toContain(r.code); // 0 where a service runs with the defaults on this machine, else the refusal
  });
});
