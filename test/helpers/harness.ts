import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { loadConfig, type Config } from '../../config/index.js';
import { startApp, type RunningApp } from '../../src/app.js';
import { dropDatabase, openOrm, type Orm } from '../../src/db/orm.js';
import { startSmtp, type TestSmtp } from './smtp.js';
import { jobIds } from '../../src/jobs/contracts.js';

export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';
export const PG_BASE = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';

/** Tokens every integration test can use (contract §3). */
export const TOKENS = {
  admin: 'tok-admin-0000000000',
  crm: 'tok-crm-p100-000000', // p-100: commands:write, read, employees:read
  reader: 'tok-reader-p100-0000', // p-100: read
  writer: 'tok-writer-p100-0000', // p-100: commands:write
  staff: 'tok-staff-p100-00000', // p-100: employees:read
  other: 'tok-other-p200-00000', // p-200: everything but admin
  multi: 'tok-multi-p100-p200-0', // p-100 and p-200: commands:write, read, employees:read
  platform: 'tok-platform-sync-000', // every partner: clients:sync, read (the platform's facts about clients)
} as const;

export const apiTokens = [
  { token: TOKENS.admin, name: 'ops', partners: '*', scopes: ['admin'] },
  { token: TOKENS.crm, name: 'crm-sync', partners: ['p-100'], scopes: ['commands:write', 'read', 'employees:read'] },
  { token: TOKENS.reader, name: 'reader', partners: ['p-100'], scopes: ['read'] },
  { token: TOKENS.writer, name: 'writer', partners: ['p-100'], scopes: ['commands:write'] },
  { token: TOKENS.staff, name: 'staff', partners: ['p-100'], scopes: ['employees:read'] },
  { token: TOKENS.other, name: 'other-crm', partners: ['p-200'], scopes: ['commands:write', 'read', 'employees:read'] },
  { token: TOKENS.multi, name: 'multi', partners: ['p-100', 'p-200'], scopes: ['commands:write', 'read', 'employees:read'] },
  { token: TOKENS.platform, name: 'platform-sync', partners: '*', scopes: ['clients:sync', 'read'] },
];

export const uniqueName = (prefix: string) => `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;

/** The environment of one isolated test service: its own database, queue prefix and SMTP server. */
export function testEnv(smtpUrl: string, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: 'test',
    DATABASE_URL: `${PG_BASE}/${uniqueName('pap_test')}`,
    REDIS_URL: REDIS_URL,
    QUEUE_PREFIX: uniqueName('paptest'),
    SMTP_URL: smtpUrl,
    PORT: '0',
    HOST: '127.0.0.1',
    PUBLIC_URL: 'http://grants.test',
    API_TOKENS: JSON.stringify(apiTokens),
    GRANT_LINK_SECRET: 'test-grant-link-secret-0123456789',
    LOG_LEVEL: 'silent',
    RECONCILE_INTERVAL_MS: '300',
    RECONCILE_GRACE_MS: '1000',
    JOB_LOCK_MS: '4000',
    WORKER_CONCURRENCY: '8',
    SHUTDOWN_TIMEOUT_MS: '5000',
    ...overrides,
  };
}

export interface Reply<T = any> { status: number; body: T; headers: Headers }

export interface Api {
  base: string;
  request<T = any>(method: string, path: string, opts?: { token?: string | null; body?: unknown; rawBody?: string; headers?: Record<string, string> }): Promise<Reply<T>>;
  post<T = any>(partnerId: string, command: unknown, token?: string, headers?: Record<string, string>): Promise<Reply<T>>;
  batch<T = any>(partnerId: string, commands: unknown[], token?: string): Promise<Reply<T>>;
  get<T = any>(path: string, token?: string): Promise<Reply<T>>;
  /** Posts a command and waits until the command log says it finished; returns its status. */
  apply<T = any>(partnerId: string, command: unknown, token?: string): Promise<T>;
  waitCommand<T = any>(commandId: string, timeoutMs?: number): Promise<T>;
}

export function makeApi(base: string): Api {
  const api: Api = {
    base,
    async request(method, path, opts = {}) {
      const headers: Record<string, string> = { ...(opts.headers ?? {}) };
      const token = opts.token === undefined ? TOKENS.admin : opts.token;
      if (token) headers.authorization = `Bearer ${token}`;
      let body: string | undefined = opts.rawBody;
      if (opts.body !== undefined) {
        body = JSON.stringify(opts.body);
        headers['content-type'] ??= 'application/json';
      }
      const res = await fetch(`${base}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        /* not JSON: keep the text */
      }
      return { status: res.status, body: parsed as any, headers: res.headers };
    },
    post: (partnerId, command, token = TOKENS.admin, headers) => api.request('POST', `/v1/partners/${partnerId}/commands`, { token, body: command, ...(headers ? { headers } : {}) }),
    batch: (partnerId, commands, token = TOKENS.admin) => api.request('POST', `/v1/partners/${partnerId}/commands:batch`, { token, body: { commands } }),
    get: (path, token = TOKENS.admin) => api.request('GET', path, { token }),
    async apply(partnerId, command, token = TOKENS.admin) {
      const r = await api.post(partnerId, command, token);
      if (r.status !== 202 && r.status !== 200) throw new Error(`command refused: ${r.status} ${JSON.stringify(r.body)}`);
      return api.waitCommand(r.body.commandId);
    },
    async waitCommand(commandId, timeoutMs = 30_000) {
      let last: any;
      await waitFor(async () => {
        const r = await api.get(`/v1/commands/${encodeURIComponent(commandId)}`);
        last = r.body;
        return r.status === 200 && (r.body.state === 'completed' || r.body.state === 'failed');
      }, { timeoutMs, what: `command ${commandId} to finish` });
      return last;
    },
  };
  return api;
}

/** Polls until the predicate holds, with a bound (never a bare sleep). */
export async function waitFor(pred: () => boolean | Promise<boolean>, opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  for (;;) {
    if (await pred()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${opts.what ?? 'a condition'}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
}

/** Deletes every Redis key of a queue prefix. */
export async function dropQueues(redisUrl: string, prefix: string): Promise<void> {
  const redis = new Redis(redisUrl);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

export interface TestService {
  app: RunningApp;
  config: Config;
  env: Record<string, string>;
  api: Api;
  smtp: TestSmtp;
  /** A second ORM on the same database for assertions. */
  db: Orm;
  /** Runs SQL on the test database (`?` placeholders); rows typed as the caller declares them. */
  sql<T extends object = Record<string, unknown>>(query: string, params?: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

/** Starts the whole service in process (roles per env) against a fresh database and queue prefix. */
export async function startService(overrides: Record<string, string> = {}, opts: { smtp?: TestSmtp; now?: () => Date } = {}): Promise<TestService> {
  const smtp = opts.smtp ?? (await startSmtp());
  const env = testEnv(smtp.url, overrides);
  const config = loadConfig(env);
  const app = await startApp(config, opts.now ? { now: opts.now } : {});
  const db = await openOrm(config.databaseUrl, { migrate: false, poolMax: 4 });
  const api = makeApi(app.url ?? 'http://127.0.0.1:1');
  return {
    app,
    config,
    env,
    api,
    smtp,
    db,
    sql: <T extends object>(query: string, params: unknown[] = []) => db.em.fork().execute<T[]>(query, params),
    async close() {
      await app.close();
      await db.close();
      if (!opts.smtp) await smtp.close();
      await dropQueues(config.redisUrl, config.queuePrefix);
      await dropDatabase(config.databaseUrl);
    },
  };
}

/** The `commands` job of a command's current acceptance (its id carries the row's `seq`), or undefined. */
export async function commandJobOf(svc: TestService, commandId: string) {
  const [row] = await svc.sql<{ seq: string }>('select seq::text as seq from command where id = ?', [commandId]);
  return row ? svc.app.ctx.queues.commands.getJob(jobIds.command(commandId, row.seq)) : undefined;
}

/** A service in a child process (`npm start`'s entry point), for crash and restart tests. */
export interface ChildService {
  proc: ChildProcess;
  url: Promise<string>;
  output: () => string;
  kill(signal: NodeJS.Signals): Promise<number | null>;
}

export function spawnService(env: Record<string, string>): ChildService {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const url = new Promise<string>((resolve, reject) => {
    const onData = (b: Buffer) => {
      out += b.toString();
      const m = /"msg":"partner access pipeline started"/.test(out) ? /"url":"([^"]+)"/.exec(out.split('\n').find((l) => l.includes('partner access pipeline started')) ?? '') : null;
      if (/"msg":"partner access pipeline started"/.test(out)) resolve(m?.[1] ?? '');
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', (b: Buffer) => { out += b.toString(); });
    proc.once('exit', (code) => reject(new Error(`service exited (${code}) before starting:\n${out}`)));
  });
  url.catch(() => undefined);
  return {
    proc,
    url,
    output: () => out,
    kill(signal) {
      return new Promise((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve(proc.exitCode);
        proc.once('exit', (code) => resolve(code));
        proc.kill(signal);
      });
    },
  };
}
