import { createProducer, type Producer } from '../../src/producers/client.js';
import { HttpError } from '../../src/producers/errors.js';
import { startService, waitFor, type TestService } from '../helpers/harness.js';

describe('the TypeScript producer', () => {
  let svc: TestService;
  let producer: Producer;
  beforeAll(async () => {
    svc = await startService();
    producer = await createProducer({ config: svc.config, name: 'crm-sdk' });
  });
  afterAll(async () => {
    await producer.close();
    await svc.close();
  });

  it('when commands are sent through the producer, then workers apply them and the log names the producer', async () => {
    await producer.sendBatch('p-100', [
      { type: 'partner.upsert', name: 'Acme', commandId: 'sdk-1' },
      { type: 'employee.tag', email: 'SDK@Acme.test', commandId: 'sdk-2' },
    ]);
    await waitFor(async () => (await producer.status('sdk-2'))?.state === 'completed', { what: 'sdk-2 to complete' });
    const employees = await svc.api.get('/v1/partners/p-100/employees');
    expect(employees.body.employees.map((e: { email: string }) => e.email)).toEqual(['sdk@acme.test']);
    const [row] = await svc.sql<{ token_name: string }>(`select token_name from command where id = 'sdk-1'`);
    expect(row?.token_name).toBe('crm-sdk');
  });

  it('when the same commandId is sent again with another body, then it is refused as over HTTP', async () => {
    await producer.send('p-100', { type: 'employee.tag', email: 'a@acme.test', commandId: 'sdk-3' });
    const again = await producer.send('p-100', { type: 'employee.tag', email: 'a@acme.test', commandId: 'sdk-3' });
    expect(again.created).toBe(false);
    await expect(producer.send('p-100', { type: 'employee.tag', email: 'b@acme.test', commandId: 'sdk-3' })).rejects.toMatchObject({ status: 409, code: 'IDEMPOTENCY_KEY_REUSED' });
  });

  it('when a command is invalid, then VALIDATION_FAILED names the path and nothing is recorded', async () => {
    const err = await producer.send('p-100', { type: 'employee.tag', email: 'nope', commandId: 'sdk-bad' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpError);
    expect((err as HttpError).details).toEqual({ issues: [{ path: 'email', message: expect.any(String) }] });
    expect(await producer.status('sdk-bad')).toBeNull();
  });
});
