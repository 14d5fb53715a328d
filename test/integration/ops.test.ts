import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { dropDatabase } from '../../src/db/orm.js';
import { dropQueues, startService, testEnv, TOKENS, waitFor, type Api, type TestService } from '../helpers/harness.js';
import { startSmtp, type TestSmtp } from '../helpers/smtp.js';

/** Operations (contract §3, §7): metrics, the audit trail, 415, the rate limit, log redaction and the ops CLI. */

const ROOT = new URL('../..', import.meta.url).pathname;
const CONFLICT_MESSAGE = 'Their email address is already linked to another partner record for this client.';

// ---------- Prometheus text format ----------

interface Sample { name: string; labels: Record<string, string>; value: number }

/** Parses the Prometheus text exposition format (samples only; comments skipped). */
function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim() || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? '';
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/y;
    let at = 0;
    while (at < body.length) {
      re.lastIndex = at;
      const l = re.exec(body);
      if (!l) throw new Error(`bad labels in: ${line}`);
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c));
      at = re.lastIndex;
    }
    const v = m[3]!;
    samples.push({ name: m[1]!, labels, value: v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v) });
  }
  return samples;
}

class Scrape {
  constructor(readonly samples: Sample[]) {}
  static async from(api: Api): Promise<Scrape> {
    const r = await fetch(`${api.base}/metrics`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
    return new Scrape(parsePrometheus(await r.text()));
  }
  /** The value of the sample with exactly these labels; 0 when absent (a counter never incremented). */
  get(name: string, labels: Record<string, string> = {}): number {
    const want = JSON.stringify(Object.entries(labels).sort());
    const found = this.samples.filter((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want);
    if (found.length > 1) throw new Error(`${found.length} samples for ${name}${want}`);
    return found[0]?.value ?? 0;
  }
  has(name: string, labels: Record<string, string>): boolean {
    return this.samples.some((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }
}

// ---------- RFC 4180 CSV ----------

/** A small RFC 4180 parser: comma-separated, CRLF or LF records, quoted fields with doubled quotes inside. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let i = 0;
  let quoted = false;
  let fieldStarted = false;
  while (i < text.length) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') { field += '"'; i += 2; continue; }
        quoted = false; i++; continue;
      }
      field += ch; i++; continue;
    }
    if (ch === '"') {
      if (field !== '') throw new Error(`a quote inside an unquoted field at ${i}`);
      quoted = true; fieldStarted = true; i++; continue;
    }
    if (ch === ',') { row.push(field); field = ''; fieldStarted = false; i++; continue; }
    if (ch === '\r' || ch === '\n') {
      row.push(field); rows.push(row); row = []; field = ''; fieldStarted = false;
      i += ch === '\r' && text[i + 1] === '\n' ? 2 : 1;
      continue;
    }
    field += ch; fieldStarted = true; i++;
  }
  if (quoted) throw new Error('unterminated quoted field');
  if (fieldStarted || field !== '' || row.length) { row.push(field); rows.push(row); }
  return rows;
}

// ---------- helpers ----------

interface AuditEntry { commandId: string; type: string; who: string | null; at: string; finishedAt: string | null; state: string; outcome: string | null; error: { code: string } | null; command: Record<string, unknown> }

async function auditAll(api: Api, partnerId: string, query = '', token: string = TOKENS.admin): Promise<AuditEntry[]> {
  const r = await api.get(`/v1/partners/${partnerId}/audit?limit=500${query ? `&${query}` : ''}`, token);
  expect(r.status).toBe(200);
  expect(r.body.nextCursor).toBeNull();
  return r.body.entries as AuditEntry[];
}

/** Two partners with the same tagged email on the same client; p-100 assigns, then p-200's assign fails. */
async function conflict(svc: TestService, hubId: string, email: string, rivalId: string) {
  const { api } = svc;
  for (const [partner, token] of [['p-100', TOKENS.crm], ['p-200', TOKENS.other]] as const) {
    expect((await api.apply(partner, { type: 'client.upsert', hubId, name: `Client ${hubId}`, contactEmail: `boss@${hubId}.test` }, TOKENS.platform)).state).toBe('completed');
    expect((await api.apply(partner, { type: 'employee.tag', email }, token)).state).toBe('completed');
  }
  const first = await api.apply('p-100', { type: 'access.assign', clientHubIds: [hubId], employeeEmails: [email] }, TOKENS.crm);
  expect(first.items[0].outcome).toBe('pending');
  const rival = await api.apply('p-200', { type: 'access.assign', commandId: rivalId, clientHubIds: [hubId], employeeEmails: [email] }, TOKENS.other);
  expect(rival.state).toBe('failed');
  expect(rival.items[0].error).toEqual({ code: 'EMAIL_LINKED_TO_OTHER_PARTNER', message: CONFLICT_MESSAGE });
  return { first, rival };
}

/**
 * A few finished commands of p-100 of their own (fixed command ids, so a second call replays them and
 * adds nothing): with the partner.upsert of beforeAll, more than five audit entries, two of them
 * employee.tag. A test that reads the trail in pages calls it, so it does not rely on earlier tests.
 */
async function auditHistory(svc: TestService): Promise<void> {
  const commands = [
    { type: 'employee.tag', commandId: 'history-tag-0', email: 'hana@acme.test' },
    { type: 'employee.tag', commandId: 'history-tag-1', email: 'hugo@acme.test' },
    { type: 'client.upsert', commandId: 'history-client-0', hubId: 'c-h0', name: 'History Client 0', contactEmail: 'boss@c-h0.test' },
    { type: 'client.upsert', commandId: 'history-client-1', hubId: 'c-h1', name: 'History Client 1', contactEmail: 'boss@c-h1.test' },
    { type: 'employee.tag', commandId: 'history-tag-2', email: 'hedy@acme.test' },
  ];
  for (const cmd of commands) {
    const token = cmd.type === 'client.upsert' ? TOKENS.platform : TOKENS.crm;
    expect((await svc.api.apply('p-100', cmd, token)).state).toBe('completed');
  }
}

/** Waits until no job of any queue is waiting, active or delayed (the job schedulers' next runs, `repeat:…`, excepted). */
async function settle(svc: TestService): Promise<void> {
  await waitFor(async () => {
    for (const q of svc.app.ctx.queues.all()) {
      const c = await q.getJobCounts('waiting', 'active', 'prioritized');
      const delayed = (await q.getDelayed()).filter((j) => !j.id?.startsWith('repeat:')).length;
      if (c.waiting! + c.active! + delayed + c.prioritized! > 0) return false;
    }
    return true;
  }, { what: 'every queue to be idle' });
}

describe('operations of one service: metrics, audit, media types and the ops CLI', () => {
  let svc: TestService;
  beforeAll(async () => {
    // Lifecycle sweeps a day apart, so none finishes inside the metrics test's window (it counts every finished job).
    svc = await startService({ LIFECYCLE_SWEEP_MS: '86400000' });
    for (const partner of ['p-100', 'p-200']) {
      expect((await svc.api.apply(partner, { type: 'partner.upsert', name: `Partner ${partner}`, team: { channelAccountManager: { name: 'Cam', email: `cam@${partner}.test` } } })).state).toBe('completed');
    }
  });
  afterAll(async () => {
    await svc?.close();
  });

  it('when a scripted run of commands, one conflict and emails finishes, then /metrics counts exactly that', async () => {
    const { api } = svc;
    await settle(svc);
    const before = await Scrape.from(api);
    const mailsBefore = svc.smtp.messages.length;

    // The run: 2 client.upsert, 2 employee.tag, 2 access.assign (one conflict), 1 team.email; 2 emails in all.
    await conflict(svc, 'c-m', 'mia@acme.test', 'metrics-rival');
    expect((await api.apply('p-100', { type: 'team.email', to: 'channelAccountManager', subject: 'Hello', body: 'A note.' }, TOKENS.crm)).state).toBe('completed');
    await waitFor(() => svc.smtp.messages.length === mailsBefore + 2, { what: 'two emails' });
    await settle(svc);

    const total = (s: Scrape, name: string) => s.samples.filter((x) => x.name === name).reduce((n, x) => n + x.value, 0);
    let after = before;
    await waitFor(async () => {
      after = await Scrape.from(api);
      return total(after, 'pap_jobs_finished_total') - total(before, 'pap_jobs_finished_total') >= 7 + 1 + 1;
    }, { what: 'the 9 jobs of the run (7 commands, the refused pair\'s own job, the team email) to be counted' });
    const delta = (name: string, labels: Record<string, string> = {}) => after.get(name, labels) - before.get(name, labels);

    const posted = { 'client.upsert': 2, 'employee.tag': 2, 'access.assign': 2, 'team.email': 1 };
    for (const [type, n] of Object.entries(posted)) {
      expect({ type, accepted: delta('pap_commands_accepted_total', { type }) }).toEqual({ type, accepted: n });
      expect({ type, finished: delta('pap_jobs_finished_total', { queue: 'commands', type, outcome: 'completed' }) }).toEqual({ type, finished: n });
    }
    expect(delta('pap_commands_accepted_total', { type: 'partner.upsert' })).toBe(0);

    // Pairs: a single-pair assign is applied inside its command job's run, with no pairs job; the
    // refused pair gets its own job, failed with the conflict code; the failure is counted once, by code.
    expect(delta('pap_jobs_finished_total', { queue: 'pairs', type: 'access.assign', outcome: 'completed' })).toBe(0);
    expect(delta('pap_jobs_finished_total', { queue: 'pairs', type: 'access.assign', outcome: 'failed' })).toBe(1);
    expect(delta('pap_jobs_failed_total', { queue: 'pairs', type: 'access.assign', code: 'EMAIL_LINKED_TO_OTHER_PARTNER' })).toBe(1);
    expect(total(after, 'pap_jobs_failed_total') - total(before, 'pap_jobs_failed_total')).toBe(1);
    expect(total(after, 'pap_jobs_finished_total') - total(before, 'pap_jobs_finished_total')).toBe(9);
    // The grant email is sent by the command job whose run committed it; the team email by a mail job. Both count as sent.
    expect(delta('pap_jobs_finished_total', { queue: 'mail', type: 'send', outcome: 'completed' })).toBe(1);
    expect(delta('pap_emails_total', { outcome: 'sent' })).toBe(2);
    expect(delta('pap_emails_total', { outcome: 'failed' })).toBe(0);

    // Histograms: one observation per finished job (latency) and per attempt (duration).
    // Each (queue, type) once, whether its jobs only completed or only failed (the pairs jobs of this run all fail).
    const finishedKeys = new Map(after.samples.filter((s) => s.name === 'pap_jobs_finished_total').map((s) => [`${s.labels.queue}|${s.labels.type}`, { queue: s.labels.queue!, type: s.labels.type! }]));
    let jobsInRun = 0;
    for (const key of finishedKeys.values()) {
      const finished = delta('pap_jobs_finished_total', { ...key, outcome: 'completed' }) + delta('pap_jobs_finished_total', { ...key, outcome: 'failed' });
      jobsInRun += finished;
      expect({ ...key, latency: delta('pap_accept_to_applied_seconds_count', key) }).toEqual({ ...key, latency: finished });
      expect({ ...key, duration: delta('pap_job_duration_seconds_count', key) }).toEqual({ ...key, duration: finished + delta('pap_job_attempts_failed_total', key) });
      expect(after.get('pap_job_duration_seconds_bucket', { ...key, le: '+Inf' })).toBe(after.get('pap_job_duration_seconds_count', key));
    }
    expect(jobsInRun).toBe(7 + 1 + 1); // 7 commands, the refused pair's job, the team email
    expect(delta('pap_job_duration_seconds_count', { queue: 'pairs', type: 'access.assign' })).toBe(1);
    expect(delta('pap_accept_to_applied_seconds_count', { queue: 'mail', type: 'send' })).toBe(1);

    // Queue depths per queue and state, matching the queues themselves.
    for (const q of svc.app.ctx.queues.all()) {
      const counts = await q.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed');
      for (const [state, n] of Object.entries(counts)) {
        expect(after.has('pap_queue_jobs', { queue: q.name, state })).toBe(true);
        expect({ queue: q.name, state, n: after.get('pap_queue_jobs', { queue: q.name, state }) }).toEqual({ queue: q.name, state, n });
      }
    }
    expect(after.get('pap_queue_jobs', { queue: 'pairs', state: 'failed' })).toBeGreaterThanOrEqual(1);
  });

  it('when a command is posted as text/plain, then it is refused with 415 UNSUPPORTED_MEDIA_TYPE and nothing is recorded', async () => {
    const { api } = svc;
    await settle(svc);
    const [{ n: rowsBefore }] = (await svc.sql<{ n: string }>('select count(*) as n from command')) as [{ n: string }];
    const jobsBefore = await svc.app.ctx.queues.commands.count();
    const acceptedBefore = (await Scrape.from(api)).get('pap_commands_accepted_total', { type: 'employee.tag' });

    const body = JSON.stringify({ type: 'employee.tag', commandId: 'plain-text-1', email: 'tex@acme.test' });
    for (const path of ['/v1/partners/p-100/commands', '/v1/partners/p-100/commands:batch']) {
      const r = await api.request('POST', path, { token: TOKENS.crm, rawBody: path.endsWith('batch') ? JSON.stringify({ commands: [JSON.parse(body)] }) : body, headers: { 'content-type': 'text/plain' } });
      expect({ path, status: r.status }).toEqual({ path, status: 415 });
      expect(r.body.error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    }
    const xml = await api.request('POST', '/v1/partners/p-100/commands', { token: TOKENS.crm, rawBody: '<tag/>', headers: { 'content-type': 'application/xml' } });
    expect(xml.status).toBe(415);
    expect(xml.body.error.code).toBe('UNSUPPORTED_MEDIA_TYPE');

    const [{ n: rowsAfter }] = (await svc.sql<{ n: string }>('select count(*) as n from command')) as [{ n: string }];
    expect(Number(rowsAfter)).toBe(Number(rowsBefore));
    expect(await svc.app.ctx.queues.commands.count()).toBe(jobsBefore);
    expect((await api.get('/v1/commands/plain-text-1')).status).toBe(404);
    expect((await Scrape.from(api)).get('pap_commands_accepted_total', { type: 'employee.tag' })).toBe(acceptedBefore);
    const employees = await api.get('/v1/partners/p-100/employees', TOKENS.crm);
    expect(employees.body.employees.map((e: { email: string }) => e.email)).not.toContain('tex@acme.test');
  });

  it('when commands are posted by different tokens, then the audit trail has one entry per accepted command with who, type, at, state and outcome', async () => {
    const { api } = svc;
    const tagged = await api.apply('p-100', { type: 'employee.tag', commandId: 'audit-tag-1', email: 'Ava@Acme.test', name: 'Ava' }, TOKENS.crm);
    expect(tagged.state).toBe('completed');
    const byWriter = await api.apply('p-100', { type: 'client.upsert', commandId: 'audit-client-1', hubId: 'c-a', name: 'Audit Client', contactEmail: 'boss@c-a.test' }, TOKENS.platform);
    expect(byWriter.state).toBe('completed');
    const refused = await api.apply('p-100', { type: 'employee.untag', commandId: 'audit-untag-unknown', email: 'nobody@acme.test' }, TOKENS.crm);
    expect(refused.state).toBe('failed');
    await settle(svc);

    const entries = await auditAll(api, 'p-100', '', TOKENS.crm); // employees:read: the entries name the employees
    // One entry per accepted command of p-100, as the command log has them, newest first.
    const logged = await svc.sql<{ id: string }>("select id from command where partner_id = 'p-100' order by seq desc");
    expect(entries.map((e) => e.commandId)).toEqual(logged.map((r) => r.id));
    expect(new Set(entries.map((e) => e.commandId)).size).toBe(entries.length);

    const byId = new Map(entries.map((e) => [e.commandId, e]));
    expect(byId.get('audit-tag-1')).toMatchObject({ type: 'employee.tag', who: 'crm-sync', state: 'completed', outcome: 'tagged', error: null, command: { email: 'ava@acme.test', name: 'Ava' } });
    expect(byId.get('audit-client-1')).toMatchObject({ type: 'client.upsert', who: 'platform-sync', state: 'completed' });
    expect(byId.get('audit-untag-unknown')).toMatchObject({ type: 'employee.untag', who: 'crm-sync', state: 'failed', outcome: null, error: { code: 'UNKNOWN_EMPLOYEE' } });
    const upsert = entries.find((e) => e.type === 'partner.upsert')!;
    expect(upsert).toMatchObject({ who: 'ops', state: 'completed', outcome: 'created' });
    for (const e of entries) {
      expect(new Date(e.at).toISOString()).toBe(e.at);
      expect(e.finishedAt === null || Date.parse(e.finishedAt) >= Date.parse(e.at)).toBe(true);
      expect(['waiting', 'active', 'completed', 'failed']).toContain(e.state);
      expect(e.who).not.toBeNull();
    }
    // Tokens never show in the trail, only their names.
    expect(JSON.stringify(entries)).not.toMatch(/tok-[a-z0-9-]+/);
  });

  it("when p-200's token asks for p-100's audit, then it is refused with 403, and p-200's commands never show in p-100's trail", async () => {
    const { api } = svc;
    await conflict(svc, 'c-iso', 'iso@acme.test', 'iso-rival');
    const forbidden = await api.get('/v1/partners/p-100/audit', TOKENS.other);
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.error.code).toBe('FORBIDDEN');
    expect((await api.get('/v1/partners/p-100/audit', TOKENS.staff)).status).toBe(403); // employees:read only, no read scope
    expect((await api.get('/v1/partners/p-100/audit', null as unknown as string)).status).toBe(401);
    const csvForbidden = await api.request('GET', '/v1/partners/p-100/audit', { token: TOKENS.other, headers: { accept: 'text/csv' } });
    expect(csvForbidden.status).toBe(403);

    const p100 = await auditAll(api, 'p-100', '', TOKENS.crm);
    const p200 = await auditAll(api, 'p-200', '', TOKENS.other);
    const p200Ids = (await svc.sql<{ id: string }>("select id from command where partner_id = 'p-200'")).map((r) => r.id);
    expect(p200.map((e) => e.commandId).sort()).toEqual([...p200Ids].sort());
    expect(p200.map((e) => e.commandId)).toContain('iso-rival');
    expect(p200.find((e) => e.commandId === 'iso-rival')).toMatchObject({ who: 'other-crm', type: 'access.assign', state: 'failed' });
    const leaked = p100.filter((e) => p200Ids.includes(e.commandId));
    expect(leaked).toEqual([]);
    // Filters do not cross partners either.
    const isoOf100 = await auditAll(api, 'p-100', 'email=iso%40acme.test', TOKENS.crm);
    expect(isoOf100.map((e) => e.type)).toEqual(['access.assign', 'employee.tag']);
    expect(isoOf100.filter((e) => p200Ids.includes(e.commandId))).toEqual([]);
    expect(isoOf100.map((e) => e.who)).toEqual(['crm-sync', 'crm-sync']);
  });

  it('when the audit trail is filtered by type, email, from and to, then exactly the matching entries come back', async () => {
    const { api } = svc;
    const ids: string[] = [];
    for (const [i, cmd] of [
      { type: 'employee.tag', email: 'Flo@Acme.test' },
      { type: 'client.upsert', hubId: 'c-f', name: 'Filter Client', contactEmail: 'flo@acme.test' },
      { type: 'access.assign', clientHubIds: ['c-f'], employeeEmails: ['flo@acme.test'] },
      { type: 'employee.tag', email: 'gus@acme.test' },
    ].entries()) {
      const r = await api.apply('p-100', { ...cmd, commandId: `filter-${i}` }, cmd.type === 'client.upsert' ? TOKENS.platform : TOKENS.crm);
      ids.push(r.commandId);
    }
    await settle(svc);
    const all = await auditAll(api, 'p-100');

    const tags = await auditAll(api, 'p-100', 'type=employee.tag');
    expect(tags.length).toBeGreaterThanOrEqual(2);
    expect(tags.map((e) => e.commandId)).toEqual(all.filter((e) => e.type === 'employee.tag').map((e) => e.commandId));

    // The email filter matches employee emails (email, employeeEmail, employeeEmails), case-insensitively.
    const flo = await auditAll(api, 'p-100', `email=${encodeURIComponent('FLO@acme.TEST')}`);
    expect(flo.map((e) => e.commandId)).toEqual(['filter-2', 'filter-0']);
    const tagsOfFlo = await auditAll(api, 'p-100', 'type=employee.tag&email=flo%40acme.test');
    expect(tagsOfFlo.map((e) => e.commandId)).toEqual(['filter-0']);

    // from is inclusive, to is exclusive; both on the acceptance time `at`.
    const pivot = all.find((e) => e.commandId === 'filter-2')!.at;
    const fromPivot = await auditAll(api, 'p-100', `from=${encodeURIComponent(pivot)}`);
    expect(fromPivot.map((e) => e.commandId)).toEqual(all.filter((e) => e.at >= pivot).map((e) => e.commandId));
    expect(fromPivot.map((e) => e.commandId)).toEqual(expect.arrayContaining(['filter-2', 'filter-3']));
    expect(fromPivot.map((e) => e.commandId)).not.toContain('filter-1');
    const toPivot = await auditAll(api, 'p-100', `to=${encodeURIComponent(pivot)}`);
    expect(toPivot.map((e) => e.commandId)).toEqual(all.filter((e) => e.at < pivot).map((e) => e.commandId));
    expect(toPivot.map((e) => e.commandId)).toContain('filter-1');
    expect(toPivot.map((e) => e.commandId)).not.toContain('filter-2');
    expect(fromPivot.length + toPivot.length).toBe(all.length);
    const start = all.find((e) => e.commandId === 'filter-1')!.at;
    const window = await auditAll(api, 'p-100', `from=${encodeURIComponent(start)}&to=${encodeURIComponent(pivot)}`);
    expect(window.map((e) => e.commandId)).toEqual(all.filter((e) => e.at >= start && e.at < pivot).map((e) => e.commandId));
    expect(window.map((e) => e.commandId)).toContain('filter-1');
  });

  it('when the audit query has an unknown type, a bad instant, a limit out of range or a malformed cursor, then it is refused with 400 VALIDATION_FAILED', async () => {
    const { api } = svc;
    // `!!` and the empty string are not cursors the service ever hands out.
    for (const bad of ['type=no.such', 'from=yesterday', 'to=2026-13-45T00:00:00Z', 'limit=0', 'limit=1001', 'limit=2.5', 'cursor=not-a-cursor', 'cursor=%21%21', 'cursor=']) {
      const r = await api.get(`/v1/partners/p-100/audit?${bad}`);
      expect({ bad, status: r.status, code: r.body.error?.code }).toEqual({ bad, status: 400, code: 'VALIDATION_FAILED' });
    }
  });

  it('when a pair command completes or fails on a conflict, then its audit entry (JSON and CSV) says how it ended', async () => {
    const { api } = svc;
    const { first, rival } = await conflict(svc, 'c-out', 'otto@acme.test', 'outcome-rival');
    await settle(svc);
    const p200 = await auditAll(api, 'p-200', 'type=access.assign', TOKENS.other);
    const failed = p200.find((e) => e.commandId === rival.commandId)!;
    expect(failed.state).toBe('failed');
    // GET /v1/commands/{id} knows the code; the audit trail must tell an auditor the same.
    expect(rival.error.code).toBe('EMAIL_LINKED_TO_OTHER_PARTNER');
    expect(failed.error).toMatchObject({ code: 'EMAIL_LINKED_TO_OTHER_PARTNER' });
    const csv = await fetch(`${api.base}/v1/partners/p-200/audit?type=access.assign`, { headers: { authorization: `Bearer ${TOKENS.other}`, accept: 'text/csv' } });
    const row = parseCsv(await csv.text()).find((r) => r[0] === rival.commandId)!;
    expect(row[7]).toBe('EMAIL_LINKED_TO_OTHER_PARTNER');

    const p100 = await auditAll(api, 'p-100', 'type=access.assign', TOKENS.crm);
    const completed = p100.find((e) => e.commandId === first.commandId)!;
    expect(completed.state).toBe('completed');
    expect(completed.outcome).not.toBeNull();
  });

  it('when the audit trail is read in pages, then following nextCursor yields every entry once, in order', async () => {
    const { api } = svc;
    await auditHistory(svc);
    const all = await auditAll(api, 'p-100');
    expect(all.length).toBeGreaterThan(5);
    const paged: AuditEntry[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const r: { status: number; body: { entries: AuditEntry[]; nextCursor: string | null } } = await api.get(`/v1/partners/p-100/audit?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, TOKENS.reader);
      expect(r.status).toBe(200);
      expect(r.body.entries.length).toBeLessThanOrEqual(2);
      expect(r.body.entries.length).toBeGreaterThan(0);
      paged.push(...r.body.entries);
      cursor = r.body.nextCursor;
      pages++;
      expect(pages).toBeLessThanOrEqual(all.length);
    } while (cursor);
    expect(pages).toBe(Math.ceil(all.length / 2));
    expect(paged.map((e) => e.commandId)).toEqual(all.map((e) => e.commandId));

    // Pages combine with filters.
    const tags = await auditAll(api, 'p-100', 'type=employee.tag');
    const first = await api.get('/v1/partners/p-100/audit?type=employee.tag&limit=1');
    expect(first.body.entries.map((e: AuditEntry) => e.commandId)).toEqual([tags[0]!.commandId]);
    const second = await api.get(`/v1/partners/p-100/audit?type=employee.tag&limit=1&cursor=${encodeURIComponent(first.body.nextCursor)}`);
    expect(second.body.entries.map((e: AuditEntry) => e.commandId)).toEqual([tags[1]!.commandId]);
  });

  it('when the audit trail is asked for as text/csv, then it is RFC 4180 CSV with a header and one row per entry', async () => {
    const { api } = svc;
    await auditHistory(svc);
    // A payload with commas, quotes and a line break, and a formula-like subject.
    const tricky = await api.apply('p-100', { type: 'team.email', commandId: 'csv-tricky', to: 'channelAccountManager', subject: '=SUM(A1) "quoted", yes', body: 'line one,\r\nline "two"' }, TOKENS.crm);
    expect(tricky.state).toBe('completed');
    await settle(svc);
    const entries = await auditAll(api, 'p-100');

    const res = await fetch(`${api.base}/v1/partners/p-100/audit?limit=500`, { headers: { authorization: `Bearer ${TOKENS.crm}`, accept: 'text/csv' } }); // employees:read: the same entries as the admin's JSON
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/csv/);
    const rows = parseCsv(await res.text());
    expect(rows[0]).toEqual(['commandId', 'type', 'who', 'at', 'finishedAt', 'state', 'outcome', 'errorCode', 'command']);
    const data = rows.slice(1);
    expect(data).toHaveLength(entries.length);
    for (const [i, row] of data.entries()) {
      expect(row).toHaveLength(9);
      const e = entries[i]!;
      expect(row.slice(0, 8)).toEqual([e.commandId, e.type, e.who ?? '', e.at, e.finishedAt ?? '', e.state, e.outcome ?? '', e.error?.code ?? '']);
      expect(JSON.parse(row[8]!)).toEqual(e.command);
    }
    const trickyRow = data.find((r) => r[0] === 'csv-tricky')!;
    expect(JSON.parse(trickyRow[8]!)).toMatchObject({ subject: '=SUM(A1) "quoted", yes', body: 'line one,\r\nline "two"' });

    // The CSV pages like the JSON: the next cursor comes in a header.
    const page = await fetch(`${api.base}/v1/partners/p-100/audit?limit=2`, { headers: { authorization: `Bearer ${TOKENS.reader}`, accept: 'text/csv' } });
    const pageRows = parseCsv(await page.text());
    expect(pageRows.slice(1).map((r) => r[0])).toEqual(entries.slice(0, 2).map((e) => e.commandId));
    expect(page.headers.get('x-next-cursor')).toBeTruthy();
  });

  it('when an operator runs `npm run ops -- failed --code EMAIL_LINKED_TO_OTHER_PARTNER`, then it lists the failed conflict job with its id and code', async () => {
    await conflict(svc, 'c-ops', 'ops@acme.test', 'ops-rival');
    await settle(svc);
    const failedConflicts = (await svc.app.ctx.queues.pairs.getFailed(0, -1)).filter((j) => j.failedReason?.startsWith('EMAIL_LINKED_TO_OTHER_PARTNER: '));
    expect(failedConflicts.map((j) => j.id)).toContain('p.ops-rival.0');

    const run = (...args: string[]) => promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/ops/cli.ts', ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...svc.env },
      timeout: 30_000,
    });
    const [{ stdout }, other] = await Promise.all([run('failed', '--code', 'EMAIL_LINKED_TO_OTHER_PARTNER'), run('failed', '--code', 'NOT_A_PARTNER_EMPLOYEE')]);
    const lines = stdout.trim().split('\n');
    const jobLines = lines.slice(0, -1).map((l) => l.split('\t'));
    expect(jobLines).toContainEqual(['pairs', 'p.ops-rival.0', 'EMAIL_LINKED_TO_OTHER_PARTNER', `EMAIL_LINKED_TO_OTHER_PARTNER: ${CONFLICT_MESSAGE}`]);
    expect(jobLines.map((l) => l[1]).sort()).toEqual(failedConflicts.map((j) => j.id).sort());
    expect(jobLines.every((l) => l[2] === 'EMAIL_LINKED_TO_OTHER_PARTNER')).toBe(true);
    expect(lines.at(-1)).toBe(`${failedConflicts.length} job(s) failed`);
    expect(stdout).not.toContain('ops@acme.test');

    expect(other.stdout).not.toContain('p.ops-rival.0');
    expect(other.stdout.trim()).toBe('0 job(s) failed');
    // Listing changes nothing.
    expect(await svc.app.ctx.queues.pairs.getJobState('p.ops-rival.0')).toBe('failed');
  });
});

describe('the rate limit', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startService({ RATE_LIMIT_PER_MINUTE: '5' });
  });
  afterAll(async () => {
    await svc?.close();
  });

  it('when one token sends more than RATE_LIMIT_PER_MINUTE requests, then it gets 429 RATE_LIMITED with Retry-After, nothing is enqueued, and another token still gets 200', async () => {
    const { api } = svc;
    for (let i = 0; i < 5; i++) {
      const r = await api.get('/v1/partners/p-100/audit', TOKENS.crm);
      expect({ i, status: r.status }).toEqual({ i, status: 200 });
    }
    const limited = await api.get('/v1/partners/p-100/audit', TOKENS.crm);
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('RATE_LIMITED');
    const retryAfter = Number(limited.headers.get('retry-after'));
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);

    // A command from the limited token is refused before anything is written or enqueued.
    const cmd = await api.post('p-100', { type: 'employee.tag', commandId: 'limited-1', email: 'lim@acme.test' }, TOKENS.crm);
    expect(cmd.status).toBe(429);
    expect(cmd.body.error.code).toBe('RATE_LIMITED');
    expect(await svc.sql("select id from command where id = 'limited-1'")).toEqual([]);
    const jobs = await svc.app.ctx.queues.commands.getJobs(['waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed'], 0, 999);
    expect(jobs.filter((j) => j.data.commandId === 'limited-1')).toEqual([]);

    // The limit is per token: another token of the same partner, and the admin, still get through.
    const other = await api.get('/v1/partners/p-100/audit', TOKENS.reader);
    expect(other.status).toBe(200);
    expect((await api.get('/v1/partners/p-200/audit', TOKENS.other)).status).toBe(200);
  });
});

describe('log redaction in the running service', () => {
  let smtp: TestSmtp;
  let proc: ChildProcess | undefined;
  let env: Record<string, string>;
  let out = '';
  let base = '';

  const exited = () => proc!.exitCode !== null || proc!.signalCode !== null;

  beforeAll(async () => {
    smtp = await startSmtp();
    env = testEnv(smtp.url, { LOG_LEVEL: 'debug' });
    // Like the harness's spawnService, but keeping LOG_LEVEL=debug (that one forces info, which logs no request lines).
    proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
    proc.stderr!.on('data', (b: Buffer) => { out += b.toString(); });
    await waitFor(() => out.includes('"msg":"partner access pipeline started"') || exited(), { timeoutMs: 30_000, what: 'the child service to start' });
    if (exited()) throw new Error(`the service exited:\n${out}`);
    base = JSON.parse(out.split('\n').find((l) => l.includes('partner access pipeline started'))!).url as string;
  });
  afterAll(async () => {
    if (proc && !exited()) {
      const gone = new Promise((r) => proc!.once('exit', r));
      proc.kill('SIGTERM');
      await gone;
    }
    await smtp?.close();
    if (env) {
      await dropQueues(env.REDIS_URL!, env.QUEUE_PREFIX!);
      await dropDatabase(env.DATABASE_URL!);
    }
  });

  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
  const req = (method: string, path: string, headers: Record<string, string> = {}, body?: unknown) =>
    fetch(`${base}${path}`, { method, headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const requestLines = (log: string) => log.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, any>).filter((l) => l.req || l.res);

  it('when requests carry bearer tokens and Basic passwords, then the debug log has a request id on every request line and none of those secrets', async () => {
    const mark = out.length;
    const unknownToken = 'tok-never-issued-leakcheck-123';
    const basicAdmin = Buffer.from(`ops:${TOKENS.admin}`).toString('base64');

    expect((await req('POST', '/v1/partners/p-100/commands', bearer(TOKENS.admin), { type: 'partner.upsert', name: 'Logged Partner' })).status).toBe(202);
    expect((await req('POST', '/v1/partners/p-100/commands', bearer(TOKENS.crm), { type: 'employee.tag', email: 'lee@acme.test' })).status).toBe(202);
    expect((await req('GET', '/v1/partners/p-100/audit', bearer(TOKENS.reader))).status).toBe(200);
    expect((await req('GET', '/v1/partners/p-100/audit', bearer(unknownToken))).status).toBe(401);
    expect((await req('GET', '/admin/queues', { authorization: `Basic ${basicAdmin}` })).status).toBe(200);
    expect((await req('GET', '/admin/queues', { authorization: `Basic ${Buffer.from(`ops:${TOKENS.crm}`).toString('base64')}` })).status).toBe(401);

    await waitFor(() => requestLines(out.slice(mark)).filter((l) => l.res).length >= 6, { what: 'the request log lines' });
    const lines = requestLines(out.slice(mark));
    const incoming = lines.filter((l) => l.req);
    const completed = lines.filter((l) => l.res);
    expect(incoming).toHaveLength(6);
    expect(completed).toHaveLength(6);
    for (const l of lines) expect(typeof l.reqId === 'string' || typeof l.reqId === 'number').toBe(true);
    // Each request's "incoming" and "completed" lines share one id, distinct between requests.
    expect(new Set(incoming.map((l) => l.reqId)).size).toBe(6);
    expect(new Set(completed.map((l) => l.reqId))).toEqual(new Set(incoming.map((l) => l.reqId)));
    expect(completed.map((l) => l.res.statusCode)).toEqual([202, 202, 200, 401, 200, 401]);

    for (const secret of [TOKENS.admin, TOKENS.crm, TOKENS.reader, unknownToken, basicAdmin]) {
      expect({ secret, leaked: out.includes(secret) }).toEqual({ secret, leaked: false });
    }
  });

  it('when a client opens a grant link while debug logging is on, then the grant token (a single-use credential) is not written to the log', async () => {
    const mark = out.length;
    for (const cmd of [
      { type: 'partner.upsert', name: 'Logged Partner' },
      { type: 'client.upsert', hubId: 'c-g', name: 'Grant Client', contactEmail: 'boss@c-g.test' },
      { type: 'employee.tag', email: 'gil@acme.test' },
      { type: 'access.assign', clientHubIds: ['c-g'], employeeEmails: ['gil@acme.test'] },
    ]) {
      expect((await req('POST', '/v1/partners/p-100/commands', bearer(TOKENS.admin), cmd)).status).toBe(202);
    }
    await waitFor(() => smtp.messages.some((m) => m.to.includes('boss@c-g.test')), { timeoutMs: 20_000, what: 'the grant email' });
    const mail = smtp.messages.find((m) => m.to.includes('boss@c-g.test'))!;
    const grantToken = /\/v1\/grants\/([A-Za-z0-9_-]+)/.exec(mail.text)![1]!;
    expect((await req('GET', `/v1/grants/${grantToken}`)).status).toBe(200);
    await waitFor(() => requestLines(out.slice(mark)).some((l) => l.res && l.res.statusCode === 200), { what: 'the grant page request to be logged' });
    expect(requestLines(out.slice(mark)).some((l) => String(l.req?.url ?? '').startsWith('/v1/grants/'))).toBe(true);
    expect({ secret: 'grant token', leaked: out.includes(grantToken) }).toEqual({ secret: 'grant token', leaked: false });
  });
});
