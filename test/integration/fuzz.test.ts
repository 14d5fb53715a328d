/**
 * Bad input never takes anyone else down (issue 11, findings 9 and 10): a bounded fast-check run of
 * generated bodies (wrong types, unknown keys, inherited property names as `type`, `__proto__` keys,
 * NUL and lone surrogates, CRLF in emails and names, huge strings, bad dates, non-objects) sent with
 * bounded concurrency beside valid requests, against both command endpoints.
 *
 * The oracle is the validation and the authorization table themselves (`parseCommand`,
 * `commandsRefusal`) on the body as the server will see it (a JSON round trip): the properties checked
 * are the ones no oracle can fake: no 5xx for anyone, every refusal has the contract's error body,
 * every valid request 202, as many command rows and jobs as 202s (nothing of a refused body), and
 * after the workers ran, no SMTP message went to anyone but the expected people.
 */
import fc from 'fast-check';
import { commandsRefusal, commandTypes, parseCommand, type CommandType } from '../../src/commands/schemas.js';
import { fullExamples, stringLeaves, withLeaf } from '../helpers/command-examples.js';
import { startService, TOKENS, waitFor, type TestService } from '../helpers/harness.js';

const VALID_PARTNER = 'p-100';
const FUZZ_PARTNER = 'p-200';
const CLIENTS = ['c-1', 'c-2', 'c-3'];
const TEAM = { channelAccountManager: { name: 'Cam Manager', email: 'cam@hub.test' }, channelConsultant: { name: 'Cora Consultant', email: 'cora@hub.test' } };
/** Everyone who may receive an email in this file (the examples' team and contacts included). */
const EXPECTED_RECIPIENTS = new Set(['cam@hub.test', 'cora@hub.test', ...CLIENTS.map((c) => `boss@${c}.test`), 'boss@c-9.test', fullExamples['client.upsert'].contactEmail as string]);
const INJECTED = 'evil@attacker.test';

const SCOPES: Record<string, string[]> = {
  [TOKENS.crm]: ['commands:write', 'read', 'employees:read'],
  [TOKENS.other]: ['commands:write', 'read', 'employees:read'],
  [TOKENS.platform]: ['clients:sync', 'read'],
};

interface Send { kind: 'valid' | 'fuzz'; partnerId: string; path: 'commands' | 'commands:batch'; token: string; text: string; contentType: string; expectAccepted: number | null }
interface Outcome { send: Send; status: number; body: unknown }

// ---- the generators ---------------------------------------------------------------------------------

const inherited = ['toString', '__proto__', 'constructor', 'hasOwnProperty', 'valueOf', 'isPrototypeOf', '__defineGetter__', '__lookupSetter__', 'propertyIsEnumerable', 'toLocaleString'];
const poison = fc.constantFrom('\u0000', 'a\u0000b', '\ud800', 'x\udc00y', '\ud83d', '\ude00\ud83d', 'ok\u0000');
const crlf = fc.constantFrom(`\r\nBcc: ${INJECTED}`, `\nCc: ${INJECTED}`, '\r\n\r\nbody', '\r', '\u2028', '\u0085', '\t');
const badDate = fc.constantFrom('0000-01-01', '2026-02-30', '2025-02-29', '2026-13-01', '2026-00-10', '9999-99-99', '+275760-09-13', '2026-1-5', 'yesterday', '', '0001-01-01T00:00:00+01:00',
  '9999-12-31T23:30:00-01:00', '2026-01-01T24:00:00Z', '2026-01-01T00:00:60Z', '1e999', '-000001-01-01T00:00:00Z');
const weirdString = fc.oneof(poison, crlf, badDate, fc.string({ maxLength: 30 }), fc.string({ unit: 'binary', maxLength: 30 }), fc.constantFrom(...inherited));
const wrongValue = fc.oneof(
  fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.constantFrom(1e308, -1e308, Number.MAX_SAFE_INTEGER + 2),
  fc.array(fc.oneof(fc.integer(), fc.string({ maxLength: 8 }), fc.constant(null)), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(fc.integer(), fc.string({ maxLength: 8 })), { maxKeys: 3 }),
  weirdString,
);
const mutation = fc.record({
  type: fc.constantFrom(...commandTypes),
  kind: fc.constantFrom('wrongType', 'unknownKey', 'inheritedType', 'protoKey', 'nestedProtoKey', 'poison', 'crlf', 'huge', 'badDate', 'dropField', 'notObject', 'weirdLeaf'),
  pick: fc.nat(),
  value: wrongValue,
  poison,
  crlf,
  badDate,
  weird: weirdString,
  key: fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'extra', 'Type')),
  inheritedType: fc.constantFrom(...inherited),
  hugeLength: fc.constantFrom(201, 1_000, 20_001, 300_000),
  batch: fc.boolean(),
  platform: fc.boolean(),
});
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

/** A generated body: a full example of a type with one thing made wrong (or, by chance, still right). */
function build(m: Mutation, commandId: string): unknown {
  const body: Record<string, unknown> = { ...fullExamples[m.type as CommandType], commandId };
  const leaves = stringLeaves(body).filter((l) => l.path[0] !== 'commandId');
  const leaf = leaves[m.pick % leaves.length]!;
  const keys = Object.keys(body).filter((k) => k !== 'commandId');
  const key = keys[m.pick % keys.length]!;
  switch (m.kind) {
    case 'wrongType': return { ...body, [key]: m.value };
    case 'unknownKey': return { ...body, [m.key]: m.value };
    case 'inheritedType': return { ...body, type: m.inheritedType };
    case 'protoKey': return JSON.parse(`{"__proto__":${JSON.stringify({ type: 'partner.upsert', polluted: true })},${JSON.stringify(body).slice(1)}`) as unknown;
    case 'nestedProtoKey': return { ...body, [key]: JSON.parse('{"__proto__":{"polluted":true}}') as unknown };
    case 'poison': return withLeaf(body, leaf.path, `${leaf.value}${m.poison}`);
    case 'crlf': return withLeaf(body, leaf.path, `${leaf.value}${m.crlf}`);
    case 'huge': return withLeaf(body, leaf.path, 'x'.repeat(m.hugeLength));
    case 'badDate': return withLeaf(body, leaf.path, m.badDate);
    case 'weirdLeaf': return withLeaf(body, leaf.path, m.weird);
    case 'dropField': {
      const { [key]: _dropped, ...rest } = body;
      return rest;
    }
    case 'notObject': return m.value;
    default: return body;
  }
}

/** Whether Fastify's JSON parser refuses the value: a `__proto__` key, or `constructor.prototype`, anywhere. */
function poisoned(v: unknown): boolean {
  if (v === null || typeof v !== 'object') return false;
  if (Object.hasOwn(v, '__proto__')) return true;
  const ctor = Object.hasOwn(v, 'constructor') ? (v as { constructor: unknown }).constructor : undefined;
  if (ctor !== null && typeof ctor === 'object' && Object.hasOwn(ctor, 'prototype')) return true;
  return Object.values(v).some(poisoned);
}

/** What the server should accept, from the body as it will arrive (JSON round trip): the number of commands, or null for a refusal. */
function oracle(path: Send['path'], scopes: string[], text: string): number | null {
  const raw: unknown = JSON.parse(text);
  const commands = path === 'commands' ? [raw] : (raw as { commands?: unknown }).commands;
  if (!Array.isArray(commands) || commands.length === 0) return null;
  if (poisoned(raw)) return null;
  if (commandsRefusal(scopes, commands, { batch: path !== 'commands' })) return null;
  return commands.every((c) => parseCommand(c).ok) ? commands.length : null;
}

/** Runs `fn` over the items with at most `limit` at a time. */
async function pool<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  }));
  return out;
}

describe('fuzzed command bodies beside valid ones', () => {
  let svc: TestService;
  const employees = Array.from({ length: 40 }, (_, i) => `emp${i}@acme.test`);

  async function footprint(partnerId: string) {
    const [row] = await svc.sql<{ n: number }>('select count(*)::int as n from command where partner_id = ?', [partnerId]);
    const counts = await svc.app.ctx.queues.commands.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized', 'waiting-children');
    return { commands: row!.n, jobs: Object.values(counts).reduce((a, b) => a + b, 0) };
  }

  async function settle(): Promise<void> {
    await waitFor(async () => {
      const [c] = await svc.sql<{ n: number }>(`select count(*)::int as n from command where state in ('waiting', 'active')`);
      const [o] = await svc.sql<{ n: number }>(`select count(*)::int as n from outbox where state not in ('sent', 'failed')`);
      return c!.n === 0 && o!.n === 0;
    }, { timeoutMs: 45_000, what: 'every command and email to finish' });
  }

  async function send(s: Send): Promise<Outcome> {
    const res = await fetch(`${svc.api.base}/v1/partners/${s.partnerId}/${s.path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.token}`, 'content-type': s.contentType },
      body: s.text,
    });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* not JSON: kept as text, and the checks below will say so */
    }
    return { send: s, status: res.status, body };
  }

  const hasErrorBody = (body: unknown): boolean => {
    const e = (body as { error?: Record<string, unknown> } | null)?.error;
    return !!e && typeof e.code === 'string' && typeof e.message === 'string' && e.message.length > 0 && typeof e.requestId === 'string';
  };

  beforeAll(async () => {
    svc = await startService();
    const { api } = svc;
    for (const p of [VALID_PARTNER, FUZZ_PARTNER]) {
      expect((await api.apply(p, { type: 'partner.upsert', name: `Partner ${p}`, team: TEAM })).state).toBe('completed');
      const clients = await api.batch(p, CLIENTS.map((hubId) => ({ type: 'client.upsert', hubId, name: `Client ${hubId}`, contactEmail: `boss@${hubId}.test` })), TOKENS.platform);
      expect(clients.status).toBe(202);
    }
    const tagged = await api.batch(VALID_PARTNER, employees.map((email) => ({ type: 'employee.tag', email })), TOKENS.crm);
    expect(tagged.status).toBe(202);
    await settle();
  });

  afterAll(async () => {
    await svc?.close();
  });

  it('when 3,000 generated bodies go to both command endpoints at 24 at a time beside 300 valid requests, then no 5xx for anyone, every refusal has the error body, every valid one is 202, nothing of a refused body is recorded and no mail goes to anyone else', async () => {
    const FUZZ = 3000;
    const seed = 20261124;
    const mutations = fc.sample(mutation, { numRuns: FUZZ, seed });
    const fuzz: Send[] = mutations.map((m, i) => {
      const body = build(m, `fz-${i}`);
      const path = m.batch ? 'commands:batch' : 'commands';
      const payload = m.batch ? { commands: [{ type: 'credit.recalculate', commandId: `fzb-${i}` }, body] } : body;
      const token = m.platform ? TOKENS.platform : TOKENS.other;
      const text = JSON.stringify(payload) ?? 'null';
      return { kind: 'fuzz', partnerId: FUZZ_PARTNER, path, token, text, contentType: 'application/json', expectAccepted: oracle(path, SCOPES[token]!, text) };
    });
    // Raw texts no object can produce: broken JSON, a prototype key, deep nesting, a body over the limit.
    const raws = ['{"type":', '{"type":"employee.tag","email":"a@acme.test",}', '{"type":"employee.tag"}{}', '[', 'null', '"employee.tag"', '\u0000',
      '{"__proto__":{"type":"partner.upsert"},"type":"employee.tag","email":"a@acme.test"}', '{"type":"employee.tag","email":"a@acme.test","constructor":{"prototype":{"polluted":true}}}',
      `${'['.repeat(50_000)}${']'.repeat(50_000)}`, `{"type":"team.email","to":"channelAccountManager","subject":"s","body":"${'x'.repeat(6 * 1024 * 1024)}"}`];
    for (const [i, text] of raws.entries()) {
      fuzz.push({ kind: 'fuzz', partnerId: FUZZ_PARTNER, path: i % 2 ? 'commands:batch' : 'commands', token: TOKENS.other, text, contentType: 'application/json', expectAccepted: null });
    }

    // Valid requests: team emails (random subjects, bodies with line breaks), tags with random names, pending assigns.
    const line = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 60 }).filter((s) => parseCommand({ type: 'employee.tag', email: 'x@acme.test', name: s }).ok);
    const subjects = fc.sample(line, { numRuns: 150, seed: seed + 1 });
    const names = fc.sample(line, { numRuns: 110, seed: seed + 2 });
    const bodies = fc.sample(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 400 }).map((s) => `${s}\r\n-- \nsent by the fuzz run`)
      .filter((body) => parseCommand({ type: 'team.email', to: 'channelAccountManager', subject: 's', body }).ok), { numRuns: 150, seed: seed + 3 });
    const validBodies: unknown[] = [
      ...subjects.map((subject, i) => ({ type: 'team.email', commandId: `ok-mail-${i}`, to: i % 2 ? 'channelAccountManager' : 'channelConsultant', subject, body: bodies[i] })),
      ...names.map((name, i) => ({ type: 'employee.tag', commandId: `ok-tag-${i}`, email: `named${i}@acme.test`, name })),
      ...employees.map((email, i) => ({ type: 'access.assign', commandId: `ok-assign-${i}`, clientHubIds: [CLIENTS[i % CLIENTS.length]!], employeeEmails: [email] })),
    ];
    const valid: Send[] = validBodies.map((b) => ({ kind: 'valid', partnerId: VALID_PARTNER, path: 'commands', token: TOKENS.crm, text: JSON.stringify(b), contentType: 'application/json', expectAccepted: 1 }));
    for (const v of valid) expect(oracle('commands', SCOPES[TOKENS.crm]!, v.text)).toBe(1);

    // Interleaved deterministically: each valid request among about ten generated ones.
    const all: Send[] = [];
    for (let i = 0, v = 0; i < fuzz.length; i++) {
      all.push(fuzz[i]!);
      if (i % 10 === 0 && v < valid.length) all.push(valid[v++]!);
      if (i === fuzz.length - 1) all.push(...valid.slice(v));
    }

    const before = { valid: await footprint(VALID_PARTNER), fuzz: await footprint(FUZZ_PARTNER) };
    const outcomes = await pool(all, 24, send);

    const serverErrors = outcomes.filter((o) => o.status >= 500);
    const badBodies = outcomes.filter((o) => o.status >= 400 && o.status < 500 && !hasErrorBody(o.body));
    const wrongVerdicts = outcomes.filter((o) => (o.send.expectAccepted === null ? o.status < 400 : o.status !== 202));
    const accepted = (kind: Send['kind']) => outcomes.filter((o) => o.send.kind === kind && o.status === 202).reduce((n, o) => n + o.send.expectAccepted!, 0);
    const show = (os: Outcome[]) => os.slice(0, 5).map((o) => ({ status: o.status, body: o.body, sent: o.send.text.slice(0, 300) }));
    const fuzzAccepted = accepted('fuzz');
    console.log(`fuzz: ${fuzz.length} generated bodies + ${valid.length} valid requests (seed ${seed}); ` +
      `5xx seen: ${serverErrors.length}; 4xx without the error body: ${badBodies.length}; generated bodies refused: ${outcomes.filter((o) => o.send.kind === 'fuzz' && o.status >= 400).length}, ` +
      `accepted (still valid after mutation): ${fuzzAccepted} commands; statuses ${JSON.stringify(outcomes.reduce<Record<number, number>>((m, o) => ({ ...m, [o.status]: (m[o.status] ?? 0) + 1 }), {}))}`);
    expect(show(serverErrors)).toEqual([]);
    expect(show(badBodies)).toEqual([]);
    expect(show(wrongVerdicts)).toEqual([]);

    // Exactly the accepted commands are in the log and the queue: nothing of a refused body.
    expect(await footprint(VALID_PARTNER)).toEqual({ commands: before.valid.commands + valid.length, jobs: before.valid.jobs + valid.length + fuzzAccepted });
    expect((await footprint(FUZZ_PARTNER)).commands).toBe(before.fuzz.commands + fuzzAccepted);

    // The workers apply them all; every valid tag and mail completes (its text was storable), and no
    // email went to anyone but the team and the clients' contacts, one recipient each, no header injected.
    await settle();
    const failed = await svc.sql<{ id: string; error: unknown }>(`select id, error from command where partner_id = ? and state = 'failed'`, [VALID_PARTNER]);
    expect(failed).toEqual([]);
    const messages = svc.smtp.messages;
    const strays = messages.filter((m) => m.recipients.length !== 1 || !EXPECTED_RECIPIENTS.has(m.recipients[0]!));
    expect(strays.map((m) => ({ recipients: m.recipients, subject: m.subject }))).toEqual([]);
    const injected = messages.filter((m) => m.raw.headerLines.some((h) => h.line.includes(INJECTED) || h.key === 'bcc' || h.key === 'cc'));
    expect(injected.map((m) => m.raw.headerLines)).toEqual([]);
    const teamMails = messages.filter((m) => m.recipients[0] === 'cam@hub.test' || m.recipients[0] === 'cora@hub.test').length;
    const [sentTeamEmails] = await svc.sql<{ n: number }>(`select count(*)::int as n from command where type = 'team.email' and state = 'completed'`);
    expect(teamMails).toBe(sentTeamEmails!.n);
    expect(teamMails).toBeGreaterThanOrEqual(subjects.length);
    console.log(`fuzz: after the workers ran, ${messages.length} emails, ${strays.length} to an unexpected recipient, ${injected.length} with an injected header`);
  }, 120_000);

  it('when a NUL name is posted beside 90 valid concurrent requests (finding 9), then the valid ones are 202, the bad one 400, and only the valid ones are recorded', async () => {
    const before = await footprint(VALID_PARTNER);
    const requests = [
      ...Array.from({ length: 45 }, (_, i) => ({ type: 'employee.tag', commandId: `nul-ok-${i}`, email: `nul${i}@acme.test`, name: `Name ${i}` })),
      { type: 'employee.tag', commandId: 'nul-bad', email: 'nul.bad@acme.test', name: 'Bad\u0000Name' },
      ...Array.from({ length: 45 }, (_, i) => ({ type: 'employee.tag', commandId: `nul-ok-b${i}`, email: `nulb${i}@acme.test`, name: `Name b${i}` })),
      { type: 'employee.tag', commandId: 'surrogate-bad', email: 'sur.bad@acme.test', name: 'Bad\ud800' },
    ];
    const replies = await Promise.all(requests.map((r) => svc.api.post(VALID_PARTNER, r, TOKENS.crm)));
    const statuses = replies.map((r, i) => [requests[i]!.commandId, r.status]);
    expect(statuses).toEqual(requests.map((r) => [r.commandId, r.commandId.endsWith('bad') ? 400 : 202]));
    expect(replies[45]!.body.error.issues).toEqual([{ path: 'name', message: expect.any(String) }]);
    expect((await footprint(VALID_PARTNER)).commands).toBe(before.commands + 90);
  });

  it.each(inherited)('when "%s" is sent as the type, alone or in a batch, then 400 on type, never 500', async (type) => {
    const single = await svc.api.post(VALID_PARTNER, { type, email: 'a@acme.test' }, TOKENS.crm);
    expect([single.status, single.body.error.code, single.body.error.issues]).toEqual([400, 'VALIDATION_FAILED', [{ path: 'type', message: expect.any(String) }]]);
    const batch = await svc.api.batch(VALID_PARTNER, [{ type: 'credit.recalculate' }, { type }], TOKENS.crm);
    expect([batch.status, batch.body.error.issues]).toEqual([400, [{ path: 'commands.1.type', message: expect.any(String) }]]);
  });

  it('when a command is posted form-encoded (finding 10), then 415 UNSUPPORTED_MEDIA_TYPE and nothing is recorded, while the grant page still takes its form post', async () => {
    const before = await footprint(VALID_PARTNER);
    const form = 'type=employee.tag&email=form%40acme.test';
    for (const path of ['commands', 'commands:batch']) {
      const r = await svc.api.request('POST', `/v1/partners/${VALID_PARTNER}/${path}`, { token: TOKENS.crm, rawBody: form, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
      expect([path, r.status, r.body.error.code]).toEqual([path, 415, 'UNSUPPORTED_MEDIA_TYPE']);
      const multipart = await svc.api.request('POST', `/v1/partners/${VALID_PARTNER}/${path}`, { token: TOKENS.crm, rawBody: '--x\r\n\r\n--x--', headers: { 'content-type': 'multipart/form-data; boundary=x' } });
      expect([path, multipart.status]).toEqual([path, 415]);
    }
    expect(await footprint(VALID_PARTNER)).toEqual(before);

    // The grant link still takes the form its page posts.
    const { api } = svc;
    expect((await api.apply(VALID_PARTNER, { type: 'client.upsert', hubId: 'c-9', name: 'Client c-9', contactEmail: 'boss@c-9.test' }, TOKENS.platform)).state).toBe('completed');
    expect((await api.apply(VALID_PARTNER, { type: 'access.assign', clientHubIds: ['c-9'], employeeEmails: [employees[0]!] }, TOKENS.crm)).items[0].outcome).toBe('pending');
    await waitFor(() => svc.smtp.messages.some((m) => m.recipients.includes('boss@c-9.test')), { what: 'the grant email of c-9' });
    const mail = svc.smtp.messages.find((m) => m.recipients.includes('boss@c-9.test'))!;
    const link = /http:\/\/grants\.test(\/v1\/grants\/[A-Za-z0-9_-]+)/.exec(mail.text)?.[1];
    expect(link).toBeDefined();
    const granted = await api.request('POST', link!, { token: null, rawBody: 'decision=grant', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(granted.status).toBe(200);
    const clients = await api.get(`/v1/partners/${VALID_PARTNER}/clients/c-9`, TOKENS.crm);
    expect(clients.body.employees).toEqual([{ email: employees[0], access: 'active' }]);
  });
});
