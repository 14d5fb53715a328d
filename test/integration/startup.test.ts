import { Redis } from 'ioredis';
import pino from 'pino';
import { Writable } from 'node:stream';
import { checkRedisSettings } from '../../src/app.js';
import { dropDatabase } from '../../src/db/orm.js';
import { dropQueues, REDIS_URL, spawnService, startService, testEnv, waitFor, type TestService } from '../helpers/harness.js';
import { startSmtp, type TestSmtp } from '../helpers/smtp.js';

describe('starting and stopping the service', () => {
  let smtp: TestSmtp;
  beforeAll(async () => {
    smtp = await startSmtp();
  });
  afterAll(async () => {
    await smtp.close();
  });

  it('when Redis does not answer, then npm start says so and how to start it, without a stack trace', async () => {
    const env = testEnv(smtp.url, { REDIS_URL: 'redis://127.0.0.1:1/0' });
    const child = spawnService(env);
    const code = await new Promise<number | null>((resolve) => child.proc.once('exit', (c) => resolve(c)));
    expect(code).toBe(3);
    expect(child.output()).toMatch(/Redis at 127\.0\.0\.1:1 did not answer/);
    expect(child.output()).toMatch(/redis-server/);
    expect(child.output()).not.toMatch(/\n\s+at /);
    await dropDatabase(env.DATABASE_URL!);
  });

  it('when Postgres does not answer, then npm start names Postgres and how to start it', async () => {
    const env = testEnv(smtp.url, { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' });
    const child = spawnService(env);
    const code = await new Promise<number | null>((resolve) => child.proc.once('exit', (c) => resolve(c)));
    expect(code).toBe(3);
    expect(child.output()).toMatch(/Postgres at 127\.0\.0\.1:1 did not answer/);
    expect(child.output()).toMatch(/pg_ctlcluster/);
  });

  it('when an environment value is bad, then start stops with the key name and exit code 2', async () => {
    const child = spawnService(testEnv(smtp.url, { PORT: 'eighty' }));
    const code = await new Promise<number | null>((resolve) => child.proc.once('exit', (c) => resolve(c)));
    expect(code).toBe(2);
    expect(child.output()).toContain('PORT');
  });

  it('when the service gets SIGTERM, then it stops serving and exits 0 within the drain bound', async () => {
    const env = testEnv(smtp.url, { SHUTDOWN_TIMEOUT_MS: '3000' });
    const child = spawnService(env);
    const url = await child.url;
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const started = Date.now();
    const code = await child.kill('SIGTERM');
    expect(code).toBe(0);
    expect(Date.now() - started).toBeLessThan(15_000);
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    await dropQueues(env.REDIS_URL!, env.QUEUE_PREFIX!);
    await dropDatabase(env.DATABASE_URL!);
  });
});

describe('operations surface', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startService();
  });
  afterAll(async () => {
    await svc.close();
  });

  it('when /openapi.json is read, then it documents every route and every command type from the zod schemas', async () => {
    const r = await svc.api.request('GET', '/openapi.json', { token: null });
    expect(r.status).toBe(200);
    expect(r.body.openapi).toBe('3.1.0');
    expect(Object.keys(r.body.paths)).toEqual(expect.arrayContaining(['/v1/partners/{partnerId}/commands', '/v1/partners/{partnerId}/commands:batch', '/v1/commands/{commandId}', '/v1/partners/{partnerId}/dashboard', '/v1/grants/{token}', '/metrics']));
    const assign = r.body.components.schemas['access.assign'];
    expect(assign.properties.employeeEmails.maxItems).toBe(1000);
    expect(assign.additionalProperties).toBe(false);
    expect(r.body.components.schemas.Command.oneOf).toHaveLength(15);
    const docs = await svc.api.request('GET', '/docs', { token: null });
    expect(docs.status).toBe(200);
    expect(String(docs.body)).toContain('swagger');
  });

  it('when Redis keeps nothing on disk or may evict, then the start warns loudly', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } }));
    const redis = new Redis(REDIS_URL);
    try {
      const [, aof] = (await redis.config('GET', 'appendonly')) as string[];
      const [, policy] = (await redis.config('GET', 'maxmemory-policy')) as string[];
      const warnings = await checkRedisSettings(redis, logger);
      expect(warnings.some((w) => w.includes('appendonly'))).toBe(aof === 'no');
      expect(warnings.some((w) => w.includes('noeviction'))).toBe(policy !== 'noeviction');
      await waitFor(() => lines.length === warnings.length, { what: 'the warnings to be logged' });
      expect(lines.every((l) => JSON.parse(l).level === 40)).toBe(true);
    } finally {
      redis.disconnect();
    }
  });

  it('when the worker role runs, then readiness reports workers consuming; without it, no worker check', async () => {
    const ready = await svc.api.request('GET', '/readyz', { token: null });
    expect(ready.body.checks).toEqual({ postgres: true, redis: true, workers: true });
    await svc.app.workers!.workers[0]!.pause(true);
    const paused = await svc.api.request('GET', '/readyz', { token: null });
    expect(paused.status).toBe(503);
    expect(paused.body.checks.workers).toBe(false);
    svc.app.workers!.workers[0]!.resume();
    expect((await svc.api.request('GET', '/readyz', { token: null })).status).toBe(200);
  });
});
