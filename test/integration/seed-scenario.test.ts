import { startService, TOKENS, waitFor, type TestService } from '../helpers/harness.js';

describe('the seed scenario, end to end over HTTP', () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startService();
  });
  afterAll(async () => {
    await svc.close();
  });

  it('when a partner tags, assigns, the client clicks the link, a rival is refused and the employee is removed, then each step shows', async () => {
    const { api } = svc;
    for (const [partner, name] of [['p-100', 'Acme Partners'], ['p-200', 'Rival Agency']] as const) {
      expect((await api.apply(partner, { type: 'partner.upsert', name })).state).toBe('completed');
      expect((await api.apply(partner, { type: 'client.upsert', hubId: 'c-1', name: 'Client One', contactEmail: 'Boss@C1.test', locale: 'de', mrr: 500 })).state).toBe('completed');
    }
    expect((await api.apply('p-100', { type: 'employee.tag', email: 'Ann@Acme.test', name: 'Ann Agent' }, TOKENS.crm)).state).toBe('completed');
    expect((await api.apply('p-200', { type: 'employee.tag', email: 'ann@acme.test' }, TOKENS.other)).state).toBe('completed');

    const assigned = await api.apply('p-100', { type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: ['ANN@acme.test'] }, TOKENS.crm);
    expect(assigned.state).toBe('completed');
    expect(assigned.items).toEqual([{ clientHubId: 'c-1', employeeEmail: 'ann@acme.test', state: 'completed', outcome: 'pending' }]);

    await waitFor(() => svc.smtp.messages.length === 1, { what: 'the grant email' });
    const mail = svc.smtp.messages[0]!;
    expect(mail.to).toContain('boss@c1.test');
    expect(mail.subject).toContain('Acme Partners');
    expect(mail.text).toContain('Ann Agent');
    expect(mail.text).toContain('Zugriff'); // the client's locale
    const link = /http:\/\/grants\.test(\/v1\/grants\/[A-Za-z0-9_-]+)/.exec(mail.text)?.[1];
    expect(link).toBeDefined();

    const page = await api.request('GET', link!, { token: null });
    expect(page.status).toBe(200);
    expect(String(page.body)).toContain('Zugriff gewähren'); // the page in the client's locale, as its email
    const granted = await api.request('POST', link!, { token: null });
    expect(granted.status).toBe(200);
    const clients = await api.get('/v1/partners/p-100/clients', TOKENS.crm);
    expect(clients.body.clients[0]).toMatchObject({ hubId: 'c-1', managed: true, employees: [{ email: 'ann@acme.test', access: 'active' }] });

    const rival = await api.apply('p-200', { type: 'access.assign', clientHubIds: ['c-1'], employeeEmails: ['ann@acme.test'] }, TOKENS.other);
    expect(rival.state).toBe('failed');
    expect(rival.items[0].error).toEqual({ code: 'EMAIL_LINKED_TO_OTHER_PARTNER', message: 'Their email address is already linked to another partner record for this client.' });
    expect(JSON.stringify(rival)).not.toContain('p-100');
    expect(JSON.stringify(rival)).not.toContain('Acme');

    const removed = await api.apply('p-100', { type: 'employee.remove', email: 'ann@acme.test' }, TOKENS.crm);
    expect(removed.result).toMatchObject({ revoked: 1 });
    const employees = await api.get('/v1/partners/p-100/employees', TOKENS.crm);
    expect(employees.body.employees).toEqual([{ email: 'ann@acme.test', name: 'Ann Agent', tagged: false, status: 'removed', clients: [] }]);
    expect(svc.smtp.messages).toHaveLength(1);
  });
});
