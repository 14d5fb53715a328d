import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadConfig } from '../../config/index.js';
import { startApp, type RunningApp } from '../../src/app.js';
import { dropDatabase } from '../../src/db/orm.js';
import { SERVICE_VERSION } from '../../src/metrics.js';
import { dropQueues, makeApi, PG_BASE, REDIS_URL, spawnService, startService, testEnv, TOKENS, waitFor, type ChildService, type TestService } from '../helpers/harness.js';
import { startSmtp, type TestSmtp } from '../helpers/smtp.js';
import { StallingProxy } from '../helpers/stalling-proxy.js';

/** Observability (contract §7, issue 16): HTTP and queue-age metrics, worker metrics, dashboards, alerts, logs, bounded readiness. */

const ROOT = new URL('../..', import.meta.url).pathname;

interface Sample { name: string; labels: Record<string, string>; value: number }

/** The samples of a Prometheus text scrape (comments skipped; label values without escaped quotes suffice here). */
function samples(text: string): Sample[] {
  return text.split('\n').filter((l) => l && !l.startsWith('#')).map((line) => {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!]));
    return { name: m[1]!, labels, value: Number(m[3]) };
  });
}
const find = (all: Sample[], name: string, labels: Record<string, string> = {}) =>
  all.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));

async function scrape(url: string): Promise<{ text: string; all: Sample[] }> {
  const r = await fetch(url);
  expect(r.status).toBe(200);
  const text = await r.text();
  return { text, all: samples(text) };
}

/** promtool from Debian's prometheus package; `.ci/run` installs it, so in CI its absence fails. */
function promtool(args: string[], input?: string): { status: number | null; output: string } | null {
  const r = spawnSync('promtool', args, { cwd: ROOT, ...(input === undefined ? {} : { input }), encoding: 'utf8' });
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    if (process.env.CI) throw new Error('promtool is not installed (apt-get install prometheus); .ci/run installs it');
    return null;
  }
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

/** Every series name the registry exports: histograms as their _bucket, _sum and _count. */
async function exportedNames(app: RunningApp): Promise<Set<string>> {
  const names = new Set<string>();
  for (const m of await app.ctx.metrics.registry.getMetricsAsJSON()) {
    names.add(m.name);
    if (String(m.type) === 'histogram' || String(m.type) === 'summary') for (const s of ['_bucket', '_sum', '_count']) names.add(`${m.name}${s}`);
  }
  return names;
}
const metricNamesIn = (expr: string) => [...expr.matchAll(/\bpap_[a-zA-Z0-9_]+/g)].map((m) => m[0]);

describe('the metrics of the API process', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startService();
  });
  afterAll(async () => {
    await svc.close();
  });

  it('when traffic has gone through the API, then /metrics counts requests per route pattern, method and status, with a duration histogram and the build version, and promtool accepts the scrape', async () => {
    const { api } = svc;
    await api.apply('p-100', { type: 'partner.upsert', name: 'Metrics Partner' });
    await api.apply('p-100', { type: 'employee.tag', email: 'met@acme.test' });
    expect((await api.get('/v1/partners/p-100/clients')).status).toBe(200);
    expect((await api.get('/v1/partners/p-100/clients', 'tok-not-issued-000000')).status).toBe(401);
    expect((await api.request('GET', '/no/such/route/p-100')).status).toBe(404);
    expect((await api.request('GET', '/v1/grants/some-grant-token-value', { token: null })).status).toBeGreaterThanOrEqual(200);

    const { text, all } = await scrape(`${api.base}/metrics`);
    const posts = find(all, 'pap_http_requests_total', { route: '/v1/partners/:partnerId/commands', method: 'POST', status: '202' });
    expect(posts.map((s) => s.value)).toEqual([2]);
    expect(find(all, 'pap_http_requests_total', { route: '/v1/partners/:partnerId/clients', method: 'GET', status: '200' }).map((s) => s.value)).toEqual([1]);
    expect(find(all, 'pap_http_requests_total', { route: '/v1/partners/:partnerId/clients', method: 'GET', status: '401' }).map((s) => s.value)).toEqual([1]);
    expect(find(all, 'pap_http_requests_total', { route: 'unmatched', status: '404' }).map((s) => s.value)).toEqual([1]);
    // Route patterns, never raw URLs: no partner id, command id or grant token in a label.
    const routes = new Set(find(all, 'pap_http_requests_total').map((s) => s.labels.route!));
    for (const r of routes) expect(r).not.toMatch(/p-100|some-grant-token-value|no\/such/);
    expect(routes).toContain('/v1/commands/:commandId');

    const count = find(all, 'pap_http_request_duration_seconds_count', { route: '/v1/partners/:partnerId/commands', method: 'POST' });
    expect(count.map((s) => s.value)).toEqual([2]);
    const inf = find(all, 'pap_http_request_duration_seconds_bucket', { route: '/v1/partners/:partnerId/commands', method: 'POST', le: '+Inf' });
    expect(inf.map((s) => s.value)).toEqual([2]);

    expect(SERVICE_VERSION).toBe((JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { version: string }).version);
    expect(find(all, 'pap_build_info').map((s) => [s.labels.version, s.value])).toEqual([[SERVICE_VERSION, 1]]);
    expect(find(all, 'pap_queue_oldest_waiting_seconds').map((s) => s.labels.queue).sort()).toEqual(['commands', 'credit', 'lifecycle', 'mail', 'pairs', 'webhooks']);
    // The metrics the service had before are all still there.
    for (const name of ['pap_queue_jobs', 'pap_commands_accepted_total', 'pap_jobs_finished_total', 'pap_job_duration_seconds_count', 'pap_accept_to_applied_seconds_count']) {
      expect({ name, present: find(all, name).length > 0 }).toEqual({ name, present: true });
    }

    const checked = promtool(['check', 'metrics'], text);
    if (checked) expect(checked).toEqual({ status: 0, output: '' });
  });

  it('when the workers of a queue do not take jobs, then pap_queue_oldest_waiting_seconds of that queue grows with the waiting job, and drops to 0 once it is taken', async () => {
    const { api } = svc;
    const commands = svc.app.ctx.queues.commands;
    await commands.pause();
    try {
      const r = await api.post('p-100', { type: 'employee.tag', commandId: 'oldest-wait-1', email: 'wait@acme.test' });
      expect(r.status).toBe(202);
      let age = 0;
      await waitFor(async () => {
        age = find((await scrape(`${api.base}/metrics`)).all, 'pap_queue_oldest_waiting_seconds', { queue: 'commands' })[0]?.value ?? 0;
        return age >= 1;
      }, { timeoutMs: 10_000, intervalMs: 200, what: 'the oldest waiting age to reach 1 s' });
      expect(age).toBeLessThan(10);
      const other = find((await scrape(`${api.base}/metrics`)).all, 'pap_queue_oldest_waiting_seconds', { queue: 'mail' });
      expect(other.map((s) => s.value)).toEqual([0]);
    } finally {
      await commands.resume();
    }
    await api.waitCommand('oldest-wait-1');
    const after = find((await scrape(`${api.base}/metrics`)).all, 'pap_queue_oldest_waiting_seconds', { queue: 'commands' });
    expect(after.map((s) => s.value)).toEqual([0]);
  });

  it('when the Grafana dashboard and the alert rules are read, then every panel and rule names only metrics the running service exports, and promtool accepts the rules and their tests', async () => {
    const exported = await exportedNames(svc.app);
    const dashboard = JSON.parse(readFileSync(`${ROOT}ops/grafana/partner-access-pipeline.json`, 'utf8')) as { panels: { type: string; title: string; targets?: { expr: string }[]; panels?: unknown[] }[] };
    const panels = dashboard.panels.flatMap((p) => [p, ...((p.panels ?? []) as typeof dashboard.panels)]).filter((p) => p.type !== 'row');
    expect(panels.length).toBeGreaterThanOrEqual(10);
    const used = new Set<string>();
    for (const p of panels) {
      const exprs = (p.targets ?? []).map((t) => t.expr);
      expect({ panel: p.title, expressions: exprs.length > 0 }).toEqual({ panel: p.title, expressions: true });
      for (const e of exprs) {
        const names = metricNamesIn(e);
        expect({ panel: p.title, expr: e, namesAMetric: names.length > 0 }).toEqual({ panel: p.title, expr: e, namesAMetric: true });
        for (const n of names) {
          used.add(n);
          expect({ panel: p.title, metric: n, exported: exported.has(n) }).toEqual({ panel: p.title, metric: n, exported: true });
        }
      }
    }
    // What the issue asks the dashboard to show.
    for (const n of ['pap_queue_jobs', 'pap_queue_oldest_waiting_seconds', 'pap_jobs_finished_total', 'pap_jobs_failed_total', 'pap_accept_to_applied_seconds_bucket', 'pap_emails_total', 'pap_http_requests_total', 'pap_http_request_duration_seconds_bucket']) {
      expect({ metric: n, onTheDashboard: used.has(n) }).toEqual({ metric: n, onTheDashboard: true });
    }

    const rules = readFileSync(`${ROOT}ops/prometheus/alerts.yml`, 'utf8');
    for (const n of metricNamesIn(rules)) expect({ rule: n, exported: exported.has(n) }).toEqual({ rule: n, exported: true });
    const alerts = [...rules.matchAll(/- alert: (\w+)/g)].map((m) => m[1]);
    expect(alerts).toEqual(expect.arrayContaining(['PapOldestWaitingJobTooOld', 'PapJobFailuresRising', 'PapReconcilerReenqueueing', 'PapEmailsFailing', 'PapNoWorkerConsuming']));

    const check = promtool(['check', 'rules', 'ops/prometheus/alerts.yml']);
    if (check) expect(check.status).toBe(0);
    const unit = promtool(['test', 'rules', 'ops/prometheus/alerts.test.yml']);
    if (unit) expect(unit).toMatchObject({ status: 0 });
  });
});

describe('a worker-only process', () => {
  let api: TestService;
  let worker: RunningApp | undefined;
  beforeAll(async () => {
    api = await startService({ ROLES: 'api,scheduler' });
  });
  afterAll(async () => {
    await worker?.close();
    await api.close();
  });

  it('when ROLES=worker and METRICS_PORT is set, then that process serves its own job and email counters on /metrics there, and closes that port on shutdown', async () => {
    worker = await startApp(loadConfig({ ...api.env, ROLES: 'worker', METRICS_PORT: '0' }));
    expect(worker.url).toBeUndefined();
    const metricsUrl = worker.metricsUrl!;
    expect(metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    await api.api.apply('p-100', { type: 'partner.upsert', name: 'Split Roles' });
    await api.api.apply('p-100', { type: 'employee.tag', email: 'split@acme.test' });
    await api.api.apply('p-100', { type: 'client.upsert', hubId: 'c-split', name: 'Split Client', contactEmail: 'boss@c-split.test' });
    const assigned = await api.api.apply('p-100', { type: 'access.assign', clientHubIds: ['c-split'], employeeEmails: ['split@acme.test'] });
    expect(assigned.state).toBe('completed');
    await waitFor(() => api.smtp.messages.some((m) => m.to.includes('boss@c-split.test')), { what: 'the grant email' });

    // The assign's grant email goes out from its command job just before that job completes: the
    // fourth command job is counted right after the email, so wait for it, then count exactly.
    const commandsFinished = (all: Awaited<ReturnType<typeof scrape>>['all']) =>
      find(all, 'pap_jobs_finished_total', { queue: 'commands', outcome: 'completed' }).reduce((n, s) => n + s.value, 0);
    let { all } = await scrape(`${metricsUrl}/metrics`);
    await waitFor(async () => {
      ({ all } = await scrape(`${metricsUrl}/metrics`));
      return commandsFinished(all) >= 4;
    }, { what: 'the four command jobs to be counted' });
    expect(commandsFinished(all)).toBe(4);
    await waitFor(async () => find((await scrape(`${metricsUrl}/metrics`)).all, 'pap_emails_total', { outcome: 'sent' }).reduce((n, s) => n + s.value, 0) >= 1, { what: 'the sent email to be counted' });
    expect(find(all, 'pap_build_info').map((s) => s.labels.version)).toEqual([SERVICE_VERSION]);
    // The API process applied nothing itself: its own scrape has no job counts.
    const apiScrape = await scrape(`${api.api.base}/metrics`);
    expect(find(apiScrape.all, 'pap_jobs_finished_total')).toEqual([]);
    expect((await fetch(`${metricsUrl}/anything-else`)).status).toBe(404);

    await worker.close();
    worker = undefined;
    await expect(fetch(`${metricsUrl}/metrics`)).rejects.toThrow();
  });
});

describe('request logs', () => {
  let smtp: TestSmtp;
  let env: Record<string, string>;
  let child: ChildService;
  beforeAll(async () => {
    smtp = await startSmtp();
    env = testEnv(smtp.url);
    child = spawnService(env);
    await child.url;
  });
  afterAll(async () => {
    await child.kill('SIGTERM');
    await smtp.close();
    await dropQueues(env.REDIS_URL!, env.QUEUE_PREFIX!);
    await dropDatabase(env.DATABASE_URL!);
  });

  it('when requests are served at LOG_LEVEL=info, then each gives one line with its request id, method, route pattern, status and duration, and no line holds a token', async () => {
    const api = makeApi(await child.url);
    const mark = child.output().length;
    for (const cmd of [
      { type: 'partner.upsert', name: 'Logged Partners' },
      { type: 'employee.tag', email: 'log@acme.test' },
      { type: 'client.upsert', hubId: 'c-log', name: 'Log Client', contactEmail: 'boss@c-log.test' },
      { type: 'access.assign', clientHubIds: ['c-log'], employeeEmails: ['log@acme.test'] },
    ]) await api.apply('p-100', cmd);
    await waitFor(() => smtp.messages.some((m) => m.to.includes('boss@c-log.test')), { what: 'the grant email' });
    const grantToken = /\/v1\/grants\/([A-Za-z0-9_-]+)/.exec(smtp.messages.find((m) => m.to.includes('boss@c-log.test'))!.text)![1]!;
    const unknownToken = 'tok-never-issued-infolog-42';
    expect((await fetch(`${api.base}/v1/grants/${grantToken}`)).status).toBe(200);
    expect((await api.get('/v1/partners/p-100/clients', unknownToken)).status).toBe(401);
    expect((await api.get('/v1/partners/p-100/clients', TOKENS.crm)).status).toBe(200);
    expect((await api.request('GET', '/healthz', { token: null })).status).toBe(200);

    const lines = () => child.output().slice(mark).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    await waitFor(() => lines().filter((l) => l.msg === 'request' && l.route === '/v1/partners/:partnerId/clients').length === 2, { what: 'the request lines' });
    const requests = lines().filter((l) => l.msg === 'request');
    for (const l of requests) {
      expect(l).toMatchObject({ level: 30, reqId: expect.any(String), method: expect.any(String), route: expect.any(String), status: expect.any(Number), ms: expect.any(Number) });
    }
    // One line per request (the /healthz probe logs at debug only), each with its own id.
    expect(new Set(requests.map((l) => l.reqId)).size).toBe(requests.length);
    expect(requests.map((l) => `${l.method} ${l.route} ${l.status}`)).toEqual(expect.arrayContaining([
      'POST /v1/partners/:partnerId/commands 202',
      'GET /v1/commands/:commandId 200',
      'GET /v1/grants/:token 200',
      'GET /v1/partners/:partnerId/clients 401',
      'GET /v1/partners/:partnerId/clients 200',
    ]));
    expect(requests.some((l) => l.route === '/healthz')).toBe(false);
    const out = child.output();
    for (const secret of [grantToken, unknownToken, TOKENS.admin, TOKENS.crm]) {
      expect({ secret, leaked: out.includes(secret) }).toEqual({ secret, leaked: false });
    }
    expect(out).not.toMatch(/authorization|bearer/i);
  });

  it('when LOG_PRETTY=1, then the lines are readable text, not JSON, and still hold no token', async () => {
    const prettyEnv = testEnv(smtp.url, { LOG_PRETTY: '1' });
    const pretty = spawnService(prettyEnv);
    try {
      await waitFor(() => pretty.output().includes('partner access pipeline started') || pretty.proc.exitCode !== null, { timeoutMs: 60_000, what: 'the pretty service to start' });
      const base = /url: "(http:\/\/[^"]+)"/.exec(pretty.output())?.[1];
      expect(base).toBeDefined();
      const r = await fetch(`${base}/v1/partners/p-100/clients`, { headers: { authorization: `Bearer ${TOKENS.crm}` } });
      expect(r.status).toBe(404); // no such partner in this fresh database
      await waitFor(() => /INFO.*: request/.test(pretty.output()), { what: 'the readable request line' });
      const out = pretty.output();
      expect(out.split('\n').filter((l) => l.startsWith('{"level"'))).toEqual([]);
      expect(out).toMatch(/route: "\/v1\/partners\/:partnerId\/clients"/);
      expect(out).not.toContain(TOKENS.crm);
    } finally {
      expect(await pretty.kill('SIGTERM')).toBe(0);
      await dropQueues(prettyEnv.REDIS_URL!, prettyEnv.QUEUE_PREFIX!);
      await dropDatabase(prettyEnv.DATABASE_URL!);
    }
  });
});

describe('readiness under a stall', () => {
  let redisProxy: StallingProxy;
  let pgProxy: StallingProxy;
  let svc: TestService;
  beforeAll(async () => {
    redisProxy = await new StallingProxy(Number(new URL(REDIS_URL).port || 6379)).start();
    pgProxy = await new StallingProxy(Number(new URL(PG_BASE).port || 5432)).start();
    const db = `${PG_BASE.replace(/:\d+$/, `:${pgProxy.port}`)}/pap_test_ready_${Date.now().toString(36)}`;
    svc = await startService({ REDIS_URL: `redis://127.0.0.1:${redisProxy.port}/0`, DATABASE_URL: db });
  });
  afterAll(async () => {
    redisProxy.resume();
    pgProxy.resume();
    await svc.close();
    await redisProxy.close();
    await pgProxy.close();
  });

  const timedReady = async () => {
    const started = Date.now();
    const r = await svc.api.request('GET', '/readyz', { token: null });
    return { ms: Date.now() - started, status: r.status, checks: r.body.checks as Record<string, boolean> };
  };

  it('when Redis stops answering, then /readyz answers 503 within 2 s naming Redis, and 200 again once it answers', async () => {
    expect((await timedReady()).status).toBe(200);
    redisProxy.stall();
    const stalled = await timedReady();
    expect(stalled.ms).toBeLessThan(2000);
    expect(stalled).toMatchObject({ status: 503, checks: { redis: false, postgres: true } });
    redisProxy.resume();
    await waitFor(async () => (await timedReady()).status === 200, { what: '/readyz to answer 200 after the stall' });
  });

  it('when Postgres stops answering, then /readyz answers 503 within 2 s naming Postgres, and 200 again once it answers', async () => {
    pgProxy.stall();
    const stalled = await timedReady();
    expect(stalled.ms).toBeLessThan(2000);
    expect(stalled).toMatchObject({ status: 503, checks: { postgres: false, redis: true } });
    pgProxy.resume();
    await waitFor(async () => (await timedReady()).status === 200, { what: '/readyz to answer 200 after the stall' });
  });
});
