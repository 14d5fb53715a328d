/**
 * The typed HTTP client (clients/typescript), generated from the OpenAPI document: this file is
 * type-checked by `npm run typecheck` against the checked-in `schema.d.ts`, so a read whose fields
 * are used here and disappear from the document breaks the build. Every read is called and its
 * typed fields used; commands are posted with `postCommandAndWait`, which settles each one in a
 * single status request (`?wait=`), without a polling loop.
 */
import { ApiError, createApiClient, postCommandAndWait, type ApiClient, type Command } from '../../clients/typescript/index.js';
import { startService, TOKENS, type TestService } from '../helpers/harness.js';

const P = 'p-100';
const RIVAL = 'p-200';

describe('the generated typed client', () => {
  let svc: TestService;
  let admin: ApiClient;
  let crm: ApiClient;
  /** Requests the clients made, by method and path pattern. */
  const calls: string[] = [];

  beforeAll(async () => {
    svc = await startService();
    const counting: typeof fetch = async (input, init) => {
      const req = input instanceof Request ? input : new Request(input, init);
      calls.push(`${req.method} ${new URL(req.url).pathname}`);
      return fetch(req);
    };
    admin = createApiClient({ baseUrl: svc.api.base, token: TOKENS.admin, fetch: counting });
    crm = createApiClient({ baseUrl: svc.api.base, token: TOKENS.crm, fetch: counting });
  });
  afterAll(async () => {
    await svc?.close();
  });

  /** Posts a command with the helper and returns its final status; each settles in one status request. */
  async function apply(client: ApiClient, partnerId: string, command: Command, key: string) {
    const before = calls.length;
    const status = await postCommandAndWait(client, partnerId, command, { idempotencyKey: key, waitSeconds: 20 });
    expect(calls.slice(before)).toEqual([`POST /v1/partners/${partnerId}/commands`, `GET /v1/commands/${key}`]);
    return status;
  }

  it('when commands are posted with postCommandAndWait, then each settles in the same status request, and a replay of the key is answered as the same command', async () => {
    const upsert = await apply(admin, P, { type: 'partner.upsert', name: 'Acme Partners', team: { channelAccountManager: { name: 'Cam', email: 'cam@hub.test' } } }, 'tc-partner');
    expect(upsert.state).toBe('completed');
    expect((await apply(admin, RIVAL, { type: 'partner.upsert', name: 'Rival' }, 'tc-rival')).state).toBe('completed');
    const client: Command = { type: 'client.upsert', hubId: 'c-1', name: 'Client One', contactEmail: 'boss@c1.test', mrr: 900, renewalDate: new Date(Date.now() + 10 * 86_400_000).toISOString().slice(0, 10), renewalOwner: { name: 'Rita', email: 'rita@c1.test' } };
    expect((await apply(admin, P, client, 'tc-client')).state).toBe('completed');
    expect((await apply(admin, RIVAL, client, 'tc-client-rival')).state).toBe('completed');
    expect((await apply(crm, P, { type: 'employee.tag', email: 'ann@acme.test', name: 'Ann' }, 'tc-tag')).state).toBe('completed');
    expect((await apply(admin, RIVAL, { type: 'employee.tag', email: 'ann@acme.test' }, 'tc-tag-rival')).state).toBe('completed');
    const assigned = await apply(crm, P, { type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: ['ann@acme.test'] }, 'tc-assign');
    expect(assigned.state).toBe('completed');
    expect(assigned.items?.[0]?.outcome).toBe('pending');
    const conflict = await apply(admin, RIVAL, { type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: ['ann@acme.test'] }, 'tc-conflict');
    expect(conflict.state).toBe('failed');
    expect(conflict.items?.[0]?.error?.code).toBe('EMAIL_LINKED_TO_OTHER_PARTNER');
    expect((await apply(admin, P, { type: 'sale.record', saleId: 's-1', clientHubId: 'c-1', closedOn: new Date().toISOString().slice(0, 10), mrr: 250 }, 'tc-sale')).state).toBe('completed');
    // The same key and body again: the existing command, 200 with Idempotent-Replayed.
    const replay = await crm.POST('/v1/partners/{partnerId}/commands', { params: { path: { partnerId: P }, header: { 'idempotency-key': 'tc-tag' } }, body: { type: 'employee.tag', email: 'ann@acme.test', name: 'Ann' } });
    expect(replay.response.status).toBe(200);
    expect(replay.response.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.data?.commandId).toBe('tc-tag');
    // The same key with another body: a typed refusal.
    await expect(postCommandAndWait(crm, P, { type: 'employee.tag', email: 'bo@acme.test' }, { idempotencyKey: 'tc-tag' })).rejects.toMatchObject({ status: 409, body: { error: { code: 'IDEMPOTENCY_KEY_REUSED' } } });
    await expect(postCommandAndWait(crm, P, { type: 'employee.tag', email: 'nope' }, { idempotencyKey: 'tc-bad' })).rejects.toBeInstanceOf(ApiError);
  });

  it('when every read is called through the client, then its typed fields hold the data', async () => {
    const path = { partnerId: P };
    const employees = (await crm.GET('/v1/partners/{partnerId}/employees', { params: { path, query: { limit: 10 } } })).data!;
    expect(employees.employees[0]!.clients[0]!.access).toBe('pending');
    expect(employees.nextCursor).toBeNull();
    const clients = (await crm.GET('/v1/partners/{partnerId}/clients', { params: { path } })).data!;
    expect(clients.clients[0]!.employees?.[0]?.email).toBe('ann@acme.test');
    expect(clients.clients[0]!.mrr).toBe(900);
    const detail = (await crm.GET('/v1/partners/{partnerId}/clients/{hubId}', { params: { path: { partnerId: P, hubId: 'c-1' } } })).data!;
    expect(detail.renewals.renewalOwner?.name).toBe('Rita');
    expect(detail.clientInfo.subscriptions).toEqual([]);
    const dashboard = (await crm.GET('/v1/partners/{partnerId}/dashboard', { params: { path } })).data!;
    expect(dashboard.alerts.pendingRequests).toBe(1);
    expect(dashboard.team.channelAccountManager?.email).toBe('cam@hub.test');
    expect(typeof dashboard.tier.current).toBe('string');
    const credit = (await crm.GET('/v1/partners/{partnerId}/credit', { params: { path } })).data!;
    expect(credit.months.at(-1)!.total).toBe(250);
    const conflicts = (await admin.GET('/v1/partners/{partnerId}/conflicts', { params: { path: { partnerId: RIVAL } } })).data!;
    expect(conflicts.conflicts[0]!.clientHubId).toBe('c-1');
    const requests = (await crm.GET('/v1/partners/{partnerId}/requests', { params: { path, query: { state: 'pending' } } })).data!;
    expect(requests.requests[0]!.employeeEmail).toBe('ann@acme.test');
    expect(requests.requests[0]!.ageSeconds).toBeGreaterThanOrEqual(0);
    const renewals = (await crm.GET('/v1/partners/{partnerId}/renewals', { params: { path } })).data!;
    expect(renewals.renewals[0]!.hubId).toBe('c-1');
    const audit = (await crm.GET('/v1/partners/{partnerId}/audit', { params: { path, query: { limit: 2 } } })).data!;
    if (typeof audit === 'string') throw new Error('JSON was asked for, CSV came'); // the other documented form (Accept: text/csv)
    expect(audit.entries).toHaveLength(2);
    expect(audit.entries[0]!.who).toBe('ops');
    expect(audit.nextCursor).toEqual(expect.any(String));
    const status = (await crm.GET('/v1/commands/{commandId}', { params: { path: { commandId: 'tc-assign' } } })).data!;
    expect(status.items?.[0]?.state).toBe('completed');
    const preview = (await crm.POST('/v1/partners/{partnerId}/commands:preview', { params: { path }, body: { type: 'access.revoke', clientHubIds: ['c-1'], employeeEmails: ['ann@acme.test'] } })).data!;
    expect(preview.items[0]!.outcome).toBe('revoked');
    const webhooks = await crm.GET('/v1/partners/{partnerId}/webhooks', { params: { path } });
    expect(webhooks.response.status).toBe(403); // crm-sync lacks webhooks:write
    expect(webhooks.error?.error.code).toBe('FORBIDDEN');
    expect((await admin.GET('/v1/partners/{partnerId}/webhooks', { params: { path } })).data!.webhooks).toEqual([]);
    expect((await admin.GET('/readyz')).data!.checks.postgres).toBe(true);
    expect((await admin.GET('/healthz')).data!.status).toBe('ok');
    const refused = await crm.GET('/v1/partners/{partnerId}/clients', { params: { path: { partnerId: RIVAL } } });
    expect(refused.error?.error.code).toBe('FORBIDDEN');
  });
});
