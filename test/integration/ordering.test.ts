import { startService, TOKENS, type TestService } from '../helpers/harness.js';

describe('order of one partner\'s commands', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startService();
    await svc.api.apply('p-100', { type: 'partner.upsert', name: 'Acme' });
  });
  afterAll(async () => {
    await svc.close();
  });

  it('when partner, employee, client and assign are posted in one batch, then each waits for the ones before it', async () => {
    const r = await svc.api.batch('p-100', [
      { type: 'employee.tag', email: 'ord1@acme.test' },
      { type: 'client.upsert', hubId: 'ord-c1', name: 'Ord', contactEmail: 'boss@ord.test' },
      { type: 'access.assign', clientHubIds: ['ord-c1'], employeeEmails: ['ord1@acme.test'] },
    ], TOKENS.admin);
    expect(r.status).toBe(202);
    const assign = await svc.api.waitCommand(r.body.commands[2].commandId);
    expect(assign.items).toEqual([{ clientHubId: 'ord-c1', employeeEmail: 'ord1@acme.test', state: 'completed', outcome: 'pending' }]);
  });

  it("when assigns and revokes of the same pairs are posted back to back without issuedAt, then the last accepted wins, as one partner's commands apply in order", async () => {
    await svc.api.apply('p-100', { type: 'employee.tag', email: 'ord2@acme.test' }, TOKENS.crm);
    const hubs = Array.from({ length: 20 }, (_, i) => `ord-h${i}`);
    await svc.api.batch('p-100', hubs.map((hubId) => ({ type: 'client.upsert', hubId, name: hubId, contactEmail: `${hubId}@ord.test` })), TOKENS.platform);
    // Per pair: assign, revoke, assign, revoke ... ending with a revoke for even hubs and an assign for odd ones.
    const commands = hubs.flatMap((hubId, i) => {
      const steps = i % 2 === 0 ? ['access.assign', 'access.revoke'] : ['access.assign', 'access.revoke', 'access.assign'];
      return steps.map((type) => ({ type, clientHubIds: [hubId], employeeEmails: ['ord2@acme.test'] }));
    });
    const r = await svc.api.batch('p-100', commands, TOKENS.crm);
    expect(r.status).toBe(202);
    for (const c of r.body.commands) await svc.api.waitCommand(c.commandId);
    const clients = await svc.api.get('/v1/partners/p-100/clients', TOKENS.crm);
    const live = new Map<string, string>();
    for (const c of clients.body.clients as { hubId: string; employees: { email: string; access: string }[] }[]) {
      for (const e of c.employees) if (e.email === 'ord2@acme.test') live.set(c.hubId, e.access);
    }
    expect(hubs.filter((_, i) => i % 2 === 1).every((h) => live.get(h) === 'pending')).toBe(true);
    expect(hubs.filter((_, i) => i % 2 === 0).some((h) => live.has(h))).toBe(false);
  });
});
