import { UnrecoverableError } from 'bullmq';
import { DomainError } from '../../src/domain/errors.js';
import { classify, isTransientDatabaseError, toUnrecoverable } from '../../src/workers/failures.js';

/** The workers' one failure mapper (src/workers/failures.ts): retry or not, and what a refusal looks like in the queue. */

/** A Postgres error as `pg` raises it: a SQLSTATE in `code`. */
const pgError = (code: string, message = 'postgres says no') => Object.assign(new Error(message), { code });

describe('the failure mapper', () => {
  it.each([
    ['25006', 'a read-only transaction (a standby after a failover, default_transaction_read_only)'],
    ['25P02', 'a transaction already aborted'],
    ['57P01', 'an administrator shutdown'],
    ['57P03', 'a database that cannot connect now (starting up)'],
    ['53100', 'a disk full'],
    ['53300', 'too many connections'],
    ['08006', 'a connection failure'],
    ['40001', 'a serialization failure'],
    ['40P01', 'a deadlock'],
  ])('when a job meets SQLSTATE %s (%s), then it is transient: retried with backoff, and a batch retries whole', (code) => {
    expect(classify(pgError(code))).toEqual({ kind: 'transient' });
    expect(isTransientDatabaseError(pgError(code))).toBe(true);
  });

  it.each([['23505'], ['23503'], ['23P01']])('when a row of a batch meets a violation another writer may clear (SQLSTATE %s), then the job is retried but the batch is split, not retried whole', (code) => {
    expect(classify(pgError(code))).toEqual({ kind: 'transient' });
    expect(isTransientDatabaseError(pgError(code))).toBe(false);
  });

  it.each([
    ['23514', 'a CHECK violation'],
    ['23502', 'a NOT NULL violation'],
    ['22008', 'a date out of range'],
    ['22003', 'a number out of range'],
    ['22P05', 'text Postgres cannot store'],
  ])('when Postgres refuses a value (SQLSTATE %s, %s), then no retry can help: the job fails at once with VALIDATION_FAILED, naming the SQLSTATE and constraint', (code) => {
    const f = classify(Object.assign(pgError(code), { constraint: 'sale_closed_on_check' }));
    expect(f).toEqual({ kind: 'permanent', code: 'VALIDATION_FAILED', message: `The database refused a value of this command (SQLSTATE ${code}, constraint sale_closed_on_check).` });
    expect(isTransientDatabaseError(pgError(code))).toBe(false);
  });

  it('when a domain refusal becomes the queue\'s error, then it fails the job at once as CODE: message and carries no stack trace', () => {
    const f = classify(new DomainError('EMAIL_LINKED_TO_OTHER_PARTNER'));
    expect(f).toMatchObject({ kind: 'permanent', code: 'EMAIL_LINKED_TO_OTHER_PARTNER' });
    const err = toUnrecoverable(f as { code: string; message: string });
    expect(err).toBeInstanceOf(UnrecoverableError);
    expect(err.message).toMatch(/^EMAIL_LINKED_TO_OTHER_PARTNER: Their email address is already linked/);
    // BullMQ stores err.stack per attempt when there is one: there is none.
    expect(err.stack).toBe('');
  });
});
