/**
 * The API document is the code (issue 14): `GET /openapi.json` is written by @fastify/swagger from
 * the routes' zod schemas. Every operation has an id, a tag and its security; every read has a
 * typed answer and the contract's error bodies; every read's real answer is exactly what its
 * schema says (no field missing, none undocumented); and the checked-in document of the typed
 * client (clients/typescript/openapi.json) is the one the service serves.
 */
import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { startService, TOKENS, type TestService } from '../helpers/harness.js';
import {
  AuditPage, ClientDetail, ClientList, CommandStatus, ConflictList, CreditReport, Dashboard, EmployeeList, ErrorBody, PreviewResult, Readiness, RenewalList, RequestList,
} from '../../src/producers/http/api-schemas.js';

type Json = Record<string, any>;

const P = 'p-100';
const RIVAL = 'p-200';
const today = new Date();
const inDays = (n: number) => new Date(today.getTime() + n * 86_400_000).toISOString().slice(0, 10);

describe('the OpenAPI document', () => {
  let svc: TestService;
  let doc: Json;

  beforeAll(async () => {
    svc = await startService();
    const { api } = svc;
    const team = { channelAccountManager: { name: 'Cam Manager', email: 'cam@hub.test' } };
    expect((await api.apply(P, { type: 'partner.upsert', name: 'Acme Partners', team })).state).toBe('completed');
    expect((await api.apply(RIVAL, { type: 'partner.upsert', name: 'Rival' })).state).toBe('completed');
    for (const p of [P, RIVAL]) {
      expect((await api.apply(p, {
        type: 'client.upsert', hubId: 'c-1', name: 'Client One', contactEmail: 'boss@c1.test', mrr: 1200, products: ['marketing'], renewalDate: inDays(30),
        companyInfo: { domain: 'c1.test', industry: 'Retail', employees: 40 }, subscriptions: [{ product: 'marketing', tier: 'pro', mrr: 1200 }], contactTier: 'Professional',
        renewalOwner: { name: 'Rita Owner', email: 'rita@c1.test' }, currentSubscription: { name: 'Pro', mrr: 1200, endsOn: inDays(30) },
        portalUsage: { products: ['marketing'], apps: ['forms'] }, platformEngagementScore: 72,
      }, TOKENS.platform)).state).toBe('completed');
    }
    expect((await api.apply(P, { type: 'employee.tag', email: 'ann@acme.test', name: 'Ann Agent' })).state).toBe('completed');
    expect((await api.apply(RIVAL, { type: 'employee.tag', email: 'ann@acme.test' })).state).toBe('completed');
    expect((await api.apply(P, { type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: ['ann@acme.test'] })).items[0].outcome).toBe('pending');
    expect((await api.apply(RIVAL, { type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: ['ann@acme.test'] })).items[0].error.code).toBe('EMAIL_LINKED_TO_OTHER_PARTNER');
    expect((await api.apply(P, { type: 'sale.record', saleId: 's-1', clientHubId: 'c-1', closedOn: today.toISOString().slice(0, 10), mrr: 300 }, TOKENS.platform)).state).toBe('completed');
    doc = (await api.request('GET', '/openapi.json', { token: null })).body;
  });
  afterAll(async () => {
    await svc?.close();
  });

  const operations = () => Object.entries(doc.paths as Json).flatMap(([path, item]) => Object.entries(item as Json)
    .filter(([method]) => ['get', 'post', 'put', 'delete', 'patch'].includes(method))
    .map(([method, op]) => ({ path, method, op: op as Json })));
  const deref = (schema: Json): Json => (schema.$ref ? doc.components.schemas[String(schema.$ref).replace('#/components/schemas/', '')] : schema);

  it('when the document is read, then it is OpenAPI 3.1 with servers, and every operation has a unique operationId, a tag and its security', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.servers).toEqual([expect.objectContaining({ url: svc.config.publicUrl })]);
    const ids = operations().map((o) => o.op.operationId);
    expect(ids.every((id) => typeof id === 'string' && id.length > 0)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    for (const { path, method, op } of operations()) {
      expect({ path, method, tags: op.tags?.length > 0, security: Array.isArray(op.security) }).toEqual({ path, method, tags: true, security: true });
      const bearer = op.security.some((s: Json) => 'bearer' in s);
      expect({ path, method, bearer }).toEqual({ path, method, bearer: path.startsWith('/v1/partners/') || path.startsWith('/v1/commands/') });
    }
    expect(doc.paths['/admin/queues'].get.security).toEqual([{ basic: [] }]);
    expect(doc.components.securitySchemes).toEqual({ bearer: expect.objectContaining({ type: 'http', scheme: 'bearer' }), basic: expect.objectContaining({ type: 'http', scheme: 'basic' }) });
  });

  it('when a read is documented, then its answer is a named, typed schema and its errors are the contract\'s error body with X-Request-Id', () => {
    const reads = operations().filter((o) => o.method === 'get' && o.path.startsWith('/v1/'));
    expect(reads.map((o) => o.op.operationId).sort()).toEqual(expect.arrayContaining([
      'getClient', 'getCommand', 'getCredit', 'getDashboard', 'listAudit', 'listClients', 'listConflicts', 'listEmployees', 'listRenewals', 'listRequests',
    ]));
    for (const { path, op } of reads) {
      if (path.startsWith('/v1/grants/')) continue;
      const ok = op.responses['200'].content['application/json'].schema;
      expect({ path, ref: typeof ok.$ref }).toEqual({ path, ref: 'string' });
      expect({ path, properties: Object.keys(deref(ok).properties ?? {}).length > 0 }).toEqual({ path, properties: true });
      for (const code of ['401', '403', '404']) {
        expect({ path, code, schema: op.responses[code]?.content?.['application/json']?.schema }).toEqual({ path, code, schema: { $ref: '#/components/schemas/Error' } });
      }
      expect(op.responses['200'].headers['X-Request-Id']).toEqual({ $ref: '#/components/headers/RequestId' });
    }
    const lists = ['listEmployees', 'listClients', 'listConflicts', 'listRequests', 'listAudit'];
    for (const { op } of reads.filter((o) => lists.includes(o.op.operationId))) {
      const names = (op.parameters as Json[]).filter((p) => p.in === 'query').map((p) => p.name);
      expect({ id: op.operationId, names }).toEqual({ id: op.operationId, names: expect.arrayContaining(['limit', 'cursor']) });
      expect(Object.keys(deref(op.responses['200'].content['application/json'].schema).properties)).toContain('nextCursor');
    }
    const post = doc.paths['/v1/partners/{partnerId}/commands'].post;
    expect(post.responses['200'].headers['Idempotent-Replayed']).toBeDefined();
    expect(post.requestBody.content['application/json'].schema).toEqual({ $ref: '#/components/schemas/Command' });
    expect(doc.components.schemas.Command.discriminator).toEqual({ propertyName: 'type' });
    expect(doc.paths['/v1/commands/{commandId}'].get.parameters).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'wait', in: 'query', schema: expect.objectContaining({ maximum: 30 }) })]));
    expect(doc.paths['/v1/partners/{partnerId}/commands:preview'].post.responses['200'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/Preview' });
  });

  /** The answer of a read, checked against its schema: it parses, and parsing keeps every field (an undocumented field would be dropped). */
  async function exactly<T extends z.ZodType>(schema: T, path: string, token: string = TOKENS.admin, init: { method?: string; body?: unknown } = {}) {
    const r = await svc.api.request(init.method ?? 'GET', path, { token, ...(init.body !== undefined ? { body: init.body } : {}) });
    expect({ path, status: r.status }).toEqual({ path, status: 200 });
    const parsed = schema.safeParse(r.body);
    expect({ path, issues: parsed.success ? [] : parsed.error.issues }).toEqual({ path, issues: [] });
    expect(parsed.data).toEqual(r.body);
    return r.body as z.output<T>;
  }

  it('when every read is called, then its answer is exactly its documented schema', async () => {
    const base = `/v1/partners/${P}`;
    const employees = await exactly(EmployeeList, `${base}/employees`);
    expect(employees.employees[0]!.clients).toEqual([{ hubId: 'c-1', access: 'pending' }]);
    expect((await exactly(ClientList, `${base}/clients`)).clients[0]!.employees).toEqual([{ email: 'ann@acme.test', access: 'pending' }]);
    expect((await exactly(ClientList, `${base}/clients`, TOKENS.reader)).clients[0]!.employeeCount).toBe(1);
    const client = await exactly(ClientDetail, `${base}/clients/c-1`);
    expect(client.clientInfo.companyInfo?.domain).toBe('c1.test');
    await exactly(ClientDetail, `${base}/clients/c-1`, TOKENS.reader);
    expect((await exactly(Dashboard, `${base}/dashboard`)).alerts.pendingRequests).toBe(1);
    expect((await exactly(CreditReport, `${base}/credit`)).months).toHaveLength(12);
    expect((await exactly(ConflictList, `/v1/partners/${RIVAL}/conflicts`)).conflicts).toHaveLength(1);
    expect((await exactly(RequestList, `${base}/requests`)).requests).toHaveLength(1);
    expect((await exactly(RenewalList, `${base}/renewals`)).renewals[0]!.renewalOwner).toEqual({ name: 'Rita Owner', email: 'rita@c1.test' });
    const audit = await exactly(AuditPage, `${base}/audit`);
    expect(audit.entries.length).toBeGreaterThan(3);
    await exactly(AuditPage, `${base}/audit`, TOKENS.reader);
    const assign = audit.entries.find((e) => e.type === 'access.assign')!;
    expect((await exactly(CommandStatus, `/v1/commands/${assign.commandId}`)).items).toHaveLength(1);
    expect((await exactly(CommandStatus, `/v1/commands/${audit.entries.at(-1)!.commandId}`)).state).toBe('completed');
    await exactly(PreviewResult, `${base}/commands:preview`, TOKENS.crm, { method: 'POST', body: { type: 'access.revoke', clientHubIds: ['c-1'], employeeEmails: ['ann@acme.test'] } });
    await exactly(Readiness, '/readyz');
  });

  it('when a request is refused, then its body is the documented error body', async () => {
    for (const [path, token] of [[`/v1/partners/${P}/nope`, TOKENS.admin], [`/v1/partners/${P}/clients`, TOKENS.other], [`/v1/partners/${P}/clients?limit=5000`, TOKENS.admin], ['/v1/commands/x', 'wrong-token']] as const) {
      const r = await svc.api.request('GET', path, { token });
      expect(r.status).toBeGreaterThanOrEqual(400);
      const parsed = ErrorBody.safeParse(r.body);
      expect({ path, ok: parsed.success, requestId: r.body.error.requestId }).toEqual({ path, ok: true, requestId: r.headers.get('x-request-id') });
    }
  });

  it('when the checked-in client document is compared with the served one, then they are the same (npm run client:generate is up to date)', () => {
    const checkedIn = JSON.parse(readFileSync(new URL('../../clients/typescript/openapi.json', import.meta.url), 'utf8')) as Json;
    // Only `servers` differs: it names PUBLIC_URL, http://localhost:3000 in the checked-in file.
    expect(checkedIn.servers).toEqual([expect.objectContaining({ url: 'http://localhost:3000' })]);
    expect({ ...checkedIn, servers: null }).toEqual({ ...doc, servers: null });
  });
});
