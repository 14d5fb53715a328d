/**
 * Property-level authorization (contract §3, issue 11 findings 1, 2, 3 and 5): a partner token acts
 * for the partner and may not assert platform facts. Every command type × every field it has × a
 * token without the scope it needs is refused with 403 and nothing is accepted: no command row of
 * the partner in Postgres, no job in the commands queue.
 */
import { commandPolicy, commandTypes, platformFieldsOf, type CommandType } from '../../src/commands/schemas.js';
import { createProducer } from '../../src/producers/client.js';
import { fullExamples } from '../helpers/command-examples.js';
import { startService, TOKENS, waitFor, type Reply, type TestService } from '../helpers/harness.js';

const P1 = 'p-100';
const P2 = 'p-200';
const HUB = 'c-1';
const ANN = 'ann@acme.test';

interface Footprint { commands: number; jobs: number }

/** What an accepted command leaves behind: rows of the partner's command log and jobs of the commands queue. */
async function footprint(svc: TestService, partnerId: string): Promise<Footprint> {
  const [row] = await svc.sql<{ n: number }>('select count(*)::int as n from command where partner_id = ?', [partnerId]);
  const counts = await svc.app.ctx.queues.commands.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized', 'waiting-children');
  return { commands: row!.n, jobs: Object.values(counts).reduce((a, b) => a + b, 0) };
}

/** Waits until every command of the log has finished, so that the footprint only moves by intake. */
async function settle(svc: TestService): Promise<void> {
  await waitFor(async () => (await svc.sql<{ n: number }>(`select count(*)::int as n from command where state in ('waiting', 'active')`))[0]!.n === 0, { what: 'every command to finish' });
}

const tokenNames: Record<string, string> = Object.fromEntries(Object.entries(TOKENS).map(([k, v]) => [v, k]));

/** A command this token may post (the other half of a refused batch). */
const allowedFor = (token: string): Record<string, unknown> =>
  token === TOKENS.platform ? { type: 'client.churn', clientHubId: HUB, on: '2026-06-01' } : { type: 'credit.recalculate' };

interface Case { name: string; token: string; body: Record<string, unknown>; fields?: string[] }

/**
 * The table: for every type and every field of its full example, one body with that field sent by
 * each token that lacks the scope the field needs. For `client.upsert`, the platform fields go with
 * `hubId` and `name` (which a partner may send), so the refusal is about that field alone.
 */
function cases(): Case[] {
  const out: Case[] = [];
  for (const type of commandTypes) {
    const example = fullExamples[type];
    const rule = commandPolicy[type];
    const platformFields = new Set(platformFieldsOf(type));
    for (const field of Object.keys(example).filter((k) => k !== 'type')) {
      if (platformFields.has(field)) {
        for (const token of [TOKENS.crm, TOKENS.writer, TOKENS.multi]) {
          out.push({ name: `${type} ${field} by ${tokenNames[token]}`, token, body: { type, hubId: HUB, name: 'Client One', [field]: example[field] }, fields: [field] });
        }
        continue;
      }
      // Tokens that hold none of the scopes the type needs (admin holds all: never here).
      const without = [TOKENS.crm, TOKENS.platform, TOKENS.reader, TOKENS.staff].filter((t) => {
        const scopes = t === TOKENS.crm ? ['commands:write'] : t === TOKENS.platform ? ['clients:sync'] : [];
        return !rule.scopes.some((s) => scopes.includes(s));
      });
      for (const token of without) out.push({ name: `${type} ${field} by ${tokenNames[token]}`, token, body: { type, [field]: example[field] } });
    }
  }
  return out;
}

describe('property-level authorization: partner tokens cannot assert platform facts', () => {
  let svc: TestService;

  beforeAll(async () => {
    svc = await startService();
    const { api } = svc;
    for (const [id, name] of [[P1, 'Acme Partners'], [P2, 'Rival Agency']] as const) {
      expect((await api.apply(id, { type: 'partner.upsert', name })).state).toBe('completed');
      expect((await api.apply(id, { type: 'client.upsert', hubId: HUB, name: 'Client One', contactEmail: 'boss@c1.test', mrr: 1000 }, TOKENS.platform)).state).toBe('completed');
    }
    expect((await api.apply(P1, { type: 'employee.tag', email: ANN, name: 'Ann' }, TOKENS.crm)).state).toBe('completed');
    expect((await api.apply(P2, { type: 'employee.tag', email: 'bob@rival.test', name: 'Bob' }, TOKENS.other)).state).toBe('completed');
    const assigned = await api.apply(P1, { type: 'access.assign', clientHubIds: [HUB], employeeEmails: [ANN] }, TOKENS.crm);
    expect(assigned.items[0].outcome).toBe('pending');
    await settle(svc);
  });

  afterAll(async () => {
    await svc?.close();
  });

  /** Sends, expects 403 FORBIDDEN (with these fields, when given) and no footprint. */
  async function forbidden(partnerId: string, send: () => Promise<Reply>, fields?: string[]): Promise<Reply> {
    const before = await footprint(svc, partnerId);
    const r = await send();
    expect({ status: r.status, code: r.body?.error?.code }).toEqual({ status: 403, code: 'FORBIDDEN' });
    expect(typeof r.body.error.message).toBe('string');
    if (fields) expect(r.body.error.fields).toEqual(fields);
    expect(await footprint(svc, partnerId)).toEqual(before);
    return r;
  }

  it('when every command type × every field is sent by a token without the scope it needs, alone and in a batch, then each is 403 naming the refused fields and nothing is accepted', async () => {
    const table = cases();
    const before = await footprint(svc, P1);
    const got: { name: string; single: [number, string, unknown]; batch: [number, string, unknown, unknown] }[] = [];
    for (const c of table) {
      const single = await svc.api.post(P1, c.body, c.token);
      const batch = await svc.api.batch(P1, [allowedFor(c.token), c.body], c.token);
      got.push({
        name: c.name,
        single: [single.status, single.body?.error?.code, single.body?.error?.fields],
        batch: [batch.status, batch.body?.error?.code, batch.body?.error?.fields, batch.body?.error?.commands],
      });
    }
    const routeLevel = (c: Case) => c.token === TOKENS.reader || c.token === TOKENS.staff;
    expect(got).toEqual(table.map((c) => ({
      name: c.name,
      single: [403, 'FORBIDDEN', c.fields],
      // Without any posting scope the route refuses before it looks at the commands.
      batch: [403, 'FORBIDDEN', c.fields, routeLevel(c) ? undefined : [1]],
    })));
    expect(await footprint(svc, P1)).toEqual(before);
    const types = new Set(table.map((c) => c.body.type as CommandType));
    console.log(`property-level authorization: ${table.length} cases × (single + batch) = ${table.length * 2} requests over ${types.size} command types, all 403, 0 accepted`);
    expect(types.size).toBe(commandTypes.length);
  });

  it('when a partner token sends every platform field of client.upsert at once, then the 403 names them all, sorted', async () => {
    const { type: _t, ...all } = fullExamples['client.upsert'];
    const expected = platformFieldsOf('client.upsert').sort();
    await forbidden(P1, () => svc.api.post(P1, { type: 'client.upsert', ...all }, TOKENS.crm), expected);
    await forbidden(P1, () => svc.api.batch(P1, [{ type: 'employee.tag', email: 'x@acme.test' }, { type: 'client.upsert', ...all }], TOKENS.crm), expected);
  });

  it('when the platform token or the admin sends the same facts, then they are accepted', async () => {
    const { api } = svc;
    const r = await api.apply(P1, { ...fullExamples['client.upsert'], hubId: 'c-full', contactEmail: 'boss@cfull.test' }, TOKENS.platform);
    expect(r.state).toBe('completed');
    expect((await api.apply(P1, fullExamples['sale.record'], TOKENS.platform)).state).toBe('completed');
    expect((await api.apply(P1, { ...fullExamples['client.upsert'], hubId: 'c-full', contactEmail: 'boss@cfull.test', mrr: 1300 })).state).toBe('completed');
    // A partner token may still send what is its own: the envelope, hubId and name go past authorization.
    const own = await api.post(P1, { type: 'client.upsert', commandId: 'own-1', issuedAt: '2026-03-01T10:00:00Z', hubId: 'c-full', name: 'Renamed' }, TOKENS.crm);
    expect(own.body?.error?.code).not.toBe('FORBIDDEN');
  });

  it('when a partner token posts access.grant for its own pending pair (finding 1, self-grant), then 403 and the pair stays pending; the platform\'s access.grant is taken', async () => {
    const grant = { type: 'access.grant', clientHubId: HUB, employeeEmail: ANN };
    const r = await forbidden(P1, () => svc.api.post(P1, grant, TOKENS.crm));
    expect(r.body.error.message).toContain('clients:sync');
    await forbidden(P1, () => svc.api.batch(P1, [grant], TOKENS.crm));
    await forbidden(P1, () => svc.api.post(P1, grant, TOKENS.multi));
    const state = await svc.sql<{ state: string }>('select state from access where partner_id = ? and hub_id = ? and email = ?', [P1, HUB, ANN]);
    expect(state).toEqual([{ state: 'pending' }]);

    // The platform reports a grant the client made elsewhere: that one is taken.
    const granted = await svc.api.apply(P1, grant, TOKENS.platform);
    expect(granted.result).toMatchObject({ outcome: 'active' });
  });

  it('when a partner token sets contactEmail (finding 2, consent redirected), then 403 names contactEmail and the contact stays the platform\'s', async () => {
    await forbidden(P1, () => svc.api.post(P1, { type: 'client.upsert', hubId: HUB, name: 'Client One', contactEmail: 'me@acme.test' }, TOKENS.crm), ['contactEmail']);
    await forbidden(P2, () => svc.api.post(P2, { type: 'client.upsert', hubId: HUB, name: 'Client One', contactEmail: 'me@rival.test' }, TOKENS.other), ['contactEmail']);
    const client = await svc.api.get(`/v1/partners/${P1}/clients/${HUB}`, TOKENS.crm);
    expect(client.body.contactEmail).toBe('boss@c1.test');
  });

  it('when partner B adds its own employee to the portal users (finding 3, portal users asserted), then 403 names portalUserEmails and the portal users do not change', async () => {
    const portalBefore = await svc.sql('select hub_id, email from portal_user order by hub_id, email');
    await forbidden(P2, () => svc.api.post(P2, { type: 'client.upsert', hubId: HUB, name: 'Client One', portalUserEmails: ['bob@rival.test'] }, TOKENS.other), ['portalUserEmails']);
    await forbidden(P2, () => svc.api.batch(P2, [
      { type: 'client.upsert', hubId: HUB, name: 'Client One', portalUserEmails: ['bob@rival.test'] },
      { type: 'access.assign', clientHubIds: [HUB], employeeEmails: ['bob@rival.test'] },
    ], TOKENS.other), ['portalUserEmails']);
    expect(await svc.sql('select hub_id, email from portal_user order by hub_id, email')).toEqual(portalBefore);
  });

  it('when a partner token asserts its own mrr or records a sale (finding 5, credit asserted), then both are 403 and the MRR and sales do not change', async () => {
    const clientBefore = (await svc.api.get(`/v1/partners/${P1}/clients/${HUB}`, TOKENS.crm)).body;
    const salesBefore = await svc.sql('select * from sale order by sale_id');
    await forbidden(P1, () => svc.api.post(P1, { type: 'client.upsert', hubId: HUB, name: 'Client One', mrr: 99_999 }, TOKENS.crm), ['mrr']);
    const sale = await forbidden(P1, () => svc.api.post(P1, { type: 'sale.record', saleId: 'self-1', clientHubId: HUB, closedOn: '2026-03-01', mrr: 99_999 }, TOKENS.crm));
    expect(sale.body.error.message).toContain('clients:sync');
    await forbidden(P1, () => svc.api.post(P1, { type: 'client.churn', clientHubId: HUB, on: '2026-03-01' }, TOKENS.crm));
    expect((await svc.api.get(`/v1/partners/${P1}/clients/${HUB}`, TOKENS.crm)).body).toEqual(clientBefore);
    expect(await svc.sql('select * from sale order by sale_id')).toEqual(salesBefore);
  });

  it('when the TypeScript producer is given partner scopes, then it refuses platform facts exactly as HTTP does, and records nothing', async () => {
    const producer = await createProducer({ config: svc.config, name: 'crm-sdk', scopes: ['commands:write'] });
    try {
      const before = await footprint(svc, P1);
      await expect(producer.send(P1, { type: 'client.upsert', hubId: HUB, name: 'Client One', mrr: 5, contactEmail: 'me@acme.test' }))
        .rejects.toMatchObject({ status: 403, code: 'FORBIDDEN', details: { fields: ['contactEmail', 'mrr'] } });
      await expect(producer.sendBatch(P1, [{ type: 'credit.recalculate' }, { type: 'access.grant', clientHubId: HUB, employeeEmail: ANN }]))
        .rejects.toMatchObject({ status: 403, code: 'FORBIDDEN', details: { commands: [1] } });
      await expect(producer.send(P1, { type: 'partner.upsert', name: 'Hijack' })).rejects.toMatchObject({ status: 403, code: 'FORBIDDEN' });
      expect(await footprint(svc, P1)).toEqual(before);
    } finally {
      await producer.close();
    }
  });
});
