import { UnrecoverableError, type Job } from 'bullmq';
import type { Transporter } from 'nodemailer';
import type { AppContext } from '../../src/context.js';
import { jobContracts, jobIds, parsePayload } from '../../src/jobs/contracts.js';
import { processCommandJob } from '../../src/workers/commands.js';
import { processCreditJob } from '../../src/workers/credit-jobs.js';
import { processMailJob } from '../../src/workers/mail.js';
import { processPairJob } from '../../src/workers/pairs.js';

/**
 * A job forged into Redis (or corrupt) fails at once, before any I/O: the processors parse their
 * payload with the contract first. The context below has nothing in it, so a processor that got
 * past the parse would throw a TypeError instead.
 */
const nothing = {} as AppContext;
const job = (name: string, data: unknown) => ({ name, id: 'forged', data, timestamp: Date.now(), moveToDelayed: async () => undefined, updateProgress: async () => undefined }) as unknown as Job;

async function failure(run: () => Promise<unknown>): Promise<Error> {
  try {
    await run();
  } catch (err) {
    return err as Error;
  }
  throw new Error('the job did not fail');
}

const expectValidationFailed = (err: Error) => {
  expect(err).toBeInstanceOf(UnrecoverableError);
  expect(err.message).toMatch(/^VALIDATION_FAILED: /);
};

describe('job contracts', () => {
  it.each([
    ['no commandId', {}],
    ['a commandId that is not a string', { commandId: 42 }],
    ['a commandId outside the id alphabet', { commandId: 'a b' }],
    ['a commandId longer than 128 characters', { commandId: 'x'.repeat(129) }],
    ['a key the contract does not know', { commandId: 'c-1', email: 'ann@acme.test' }],
    ['no object at all', null],
  ])('when a commands job carries %s, then it fails at once with VALIDATION_FAILED', async (_, data) => {
    expectValidationFailed(await failure(() => processCommandJob(nothing, job('employee.tag', data), 'token')));
  });

  it.each([
    ['a range whose bounds are not numbers', { commandId: 'c-1', from: 'unreadable' }],
    ['an empty range', { commandId: 'c-1', from: 5, to: 5 }],
    ['a range beyond 1000 pairs', { commandId: 'c-1', from: 0, to: 1001 }],
    ['a pair index that is not an integer', { commandId: 'c-1', idx: 1.5 }],
    ['a negative pair index', { commandId: 'c-1', idx: -1 }],
    ['both a range and an index', { commandId: 'c-1', idx: 0, from: 0, to: 1 }],
  ])('when a pairs job carries %s, then it fails at once with VALIDATION_FAILED', async (_, data) => {
    expectValidationFailed(await failure(() => processPairJob(nothing, data, { type: 'access.assign' })));
  });

  it.each([
    ['an outboxId that is a number', { outboxId: 7 }],
    ['an outboxId that is not digits', { outboxId: '7; drop table outbox' }],
    ['an email address', { outboxId: '7', to: 'boss@c1.test' }],
  ])('when a mail job carries %s, then it fails at once with VALIDATION_FAILED', async (_, data) => {
    expectValidationFailed(await failure(() => processMailJob(nothing, {} as Transporter, data)));
  });

  it.each([
    ['recalculate-all', { groupSize: 0 }],
    ['recalculate-all', { groupSize: 2.5 }],
    ['recalculate-partners', { partnerIds: [], runId: 'run1' }],
    ['recalculate-partners', { partnerIds: ['p-1'], runId: 'run:1' }],
    ['recalculate-partner', { partnerId: '' }],
    ['recalculate-partner', {}],
    ['recalculate-everything', {}],
  ])('when a credit job %s carries %j, then it fails at once with VALIDATION_FAILED', async (name, data) => {
    expectValidationFailed(await failure(() => processCreditJob(nothing, job(name, data))));
  });

  it('when a payload fits its contract, then it parses to itself', () => {
    expect(parsePayload('command', { commandId: 'assign:1' })).toEqual({ ok: true, data: { commandId: 'assign:1' } });
    expect(parsePayload('pairRange', { commandId: 'a', from: 0, to: 32 })).toEqual({ ok: true, data: { commandId: 'a', from: 0, to: 32 } });
    expect(parsePayload('pair', { commandId: 'a', idx: 999 })).toEqual({ ok: true, data: { commandId: 'a', idx: 999 } });
    expect(parsePayload('mail', { outboxId: '12' })).toEqual({ ok: true, data: { outboxId: '12' } });
    expect(parsePayload('recalculateAll', {})).toEqual({ ok: true, data: {} });
    expect(parsePayload('recalculatePartners', { partnerIds: ['p-1', 'p-2'], runId: 'repeat1' }).ok).toBe(true);
    expect(parsePayload('recalculatePartner', { partnerId: 'p-1', isolatedFrom: 'rg.run1.abc' }).ok).toBe(true);
  });

  it('when a payload does not fit, then the reason names the field and stays bounded', () => {
    const r = parsePayload('pairRange', { commandId: 'x'.repeat(5000), from: 'a', to: 'b', extra: 'y'.repeat(5000) });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message).toMatch(/^pairRange job payload is invalid: /);
    expect(r.message).toContain('commandId');
    expect(r.message.length).toBeLessThanOrEqual(500);
  });

  it('when job ids are built, then they match each contract and never contain ":"', () => {
    expect(jobContracts.command.jobId({ commandId: 'assign:1' }, '42')).toBe(jobIds.command('assign:1', '42'));
    expect(jobIds.command('assign:1', '42')).toBe('c.assign~1.42');
    // One id per acceptance: the same commandId accepted again (a new seq) gets a new job.
    expect(jobIds.command('assign:1', '43')).not.toBe(jobIds.command('assign:1', '42'));
    expect(jobContracts.pairRange.jobId({ commandId: 'a:1', from: 32, to: 64 })).toBe('p.a~1.32-64');
    expect(jobContracts.pair.jobId({ commandId: 'a:1', idx: 3 })).toBe('p.a~1.3');
    expect(jobContracts.mail.jobId({ outboxId: '12' })).toBe('m.12');
    expect(jobContracts.recalculatePartner.jobId({ partnerId: 'p:1' }, 'run1')).toBe('r.p~1.run1');
    expect(jobContracts.recalculatePartners.jobId({ partnerIds: ['p-1'], runId: 'run1' })).toBe(jobIds.recalcGroup('run1', ['p-1']));
    expect(jobIds.recalcGroup('run1', ['p-1'])).not.toBe(jobIds.recalcGroup('run1', ['p-2']));
  });
});
