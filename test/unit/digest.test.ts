import { grantAllToken, grantToken, readGrantAllToken } from '../../src/lib/grant-link.js';
import { rangeSizeFor } from '../../src/workers/pairs.js';

describe('the request digest', () => {
  const secret = 'unit-test-secret-0123456789';
  const ref = { partnerId: 'p-100', hubId: 'c-1', commandId: 'cmd:42' };

  it('when a "grant all" token is read back with its secret, then it names its partner, client and command', () => {
    expect(readGrantAllToken(secret, grantAllToken(secret, ref))).toEqual(ref);
  });

  it('when a "grant all" token is tampered with, signed with another secret, or not one at all, then it reads as nothing', () => {
    const token = grantAllToken(secret, ref);
    const [payload, sig] = token.split('.') as [string, string];
    const other = Buffer.from('p-100\nc-2\ncmd:42').toString('base64url');
    expect(readGrantAllToken(secret, `${other}.${sig}`)).toBeNull();
    expect(readGrantAllToken(secret, `${payload}.${sig.slice(0, -1)}${sig.endsWith('A') ? 'B' : 'A'}`)).toBeNull();
    expect(readGrantAllToken('another-secret-0123456789', token)).toBeNull();
    expect(readGrantAllToken(secret, grantToken(secret, { partnerId: 'p-100', hubId: 'c-1', email: 'a@x.test', seq: 1 }))).toBeNull();
    expect(readGrantAllToken(secret, `${Buffer.from('p-100\nc-1').toString('base64url')}.${sig}`)).toBeNull();
  });

  it.each([
    [1, 32, 32], [3, 32, 30], [5, 32, 30], [32, 32, 32], [33, 32, 33], [1000, 32, 1000], [7, 1, 7],
  ])('when a command names %i employees and PAIR_RANGE_SIZE is %i, then a range holds %i pairs: whole clients', (employees, batch, size) => {
    expect(rangeSizeFor(employees, batch)).toBe(size);
    expect(size % employees).toBe(0);
  });
});
