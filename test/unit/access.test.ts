import fc from 'fast-check';
import { decideAssignment, decideGrant, decideRevoke, isSuperseded, type AssignFacts } from '../../src/domain/access.js';
import { DomainError } from '../../src/domain/errors.js';

const t = (iso: string) => new Date(iso);
const base: AssignFacts = {
  employee: { tagged: true, status: 'active' },
  client: { status: 'active' },
  access: null,
  linkedToOtherPartner: false,
  isPortalUser: false,
  issuedAt: null,
};

const codeOf = (f: () => unknown) => {
  try {
    f();
  } catch (err) {
    if (err instanceof DomainError) return err.code;
    throw err;
  }
  return null;
};

describe('decideAssignment', () => {
  it.each<[string, Partial<AssignFacts>, string]>([
    ['a tagged employee and an active client', {}, 'pending'],
    ['the employee is already a portal user', { isPortalUser: true }, 'active'],
    ['the pair is already pending', { access: { state: 'pending', lastIssuedAt: null } }, 'unchanged'],
    ['the pair is already active', { access: { state: 'active', lastIssuedAt: null } }, 'unchanged'],
    ['the pair was revoked before', { access: { state: 'revoked', lastIssuedAt: null } }, 'pending'],
    ['the pair is live here and the email also elsewhere', { access: { state: 'active', lastIssuedAt: null }, linkedToOtherPartner: true }, 'unchanged'],
    ['a newer command already touched the pair', { issuedAt: t('2026-01-01T00:00:00Z'), access: { state: 'revoked', lastIssuedAt: t('2026-01-02T00:00:00Z') } }, 'superseded'],
    ['an older command touched the pair', { issuedAt: t('2026-01-03T00:00:00Z'), access: { state: 'revoked', lastIssuedAt: t('2026-01-02T00:00:00Z') } }, 'pending'],
  ])('when %s, then the outcome is %s', (_name, facts, outcome) => {
    expect(decideAssignment({ ...base, ...facts }).outcome).toBe(outcome);
  });

  it.each<[string, Partial<AssignFacts>, string]>([
    ['the employee is unknown', { employee: null }, 'UNKNOWN_EMPLOYEE'],
    ['the employee is untagged', { employee: { tagged: false, status: 'active' } }, 'NOT_A_PARTNER_EMPLOYEE'],
    ['the employee was removed', { employee: { tagged: true, status: 'removed' } }, 'NOT_A_PARTNER_EMPLOYEE'],
    ['the client is unknown', { client: null }, 'UNKNOWN_CLIENT'],
    ['the client is terminated', { client: { status: 'terminated' } }, 'CLIENT_TERMINATED'],
    ['the email is live for the client under another partner', { linkedToOtherPartner: true }, 'EMAIL_LINKED_TO_OTHER_PARTNER'],
  ])('when %s, then it is refused with %s', (_name, facts, code) => {
    expect(codeOf(() => decideAssignment({ ...base, ...facts }))).toBe(code);
  });

  it('when the conflict is refused, then the message is the contract\'s and names no partner', () => {
    try {
      decideAssignment({ ...base, linkedToOtherPartner: true });
      throw new Error('not refused');
    } catch (err) {
      expect((err as DomainError).message).toBe('Their email address is already linked to another partner record for this client.');
    }
  });

  it('when facts vary at random, then a pending or active decision never comes with a live other-partner link or a live own access', () => {
    const access = fc.option(fc.record({ state: fc.constantFrom('pending' as const, 'active' as const, 'revoked' as const), lastIssuedAt: fc.constant(null) }), { nil: null });
    fc.assert(fc.property(fc.boolean(), fc.boolean(), fc.boolean(), access, (linked, portal, tagged, acc) => {
      const facts = { ...base, linkedToOtherPartner: linked, isPortalUser: portal, employee: { tagged, status: 'active' as const }, access: acc };
      const code = codeOf(() => decideAssignment(facts));
      if (code) return true;
      const d = decideAssignment(facts);
      if (d.outcome === 'pending' || d.outcome === 'active') {
        expect(linked).toBe(false);
        expect(acc?.state ?? 'revoked').toBe('revoked');
        expect(d.outcome).toBe(portal ? 'active' : 'pending');
      }
      return true;
    }));
  });
});

describe('decideRevoke and decideGrant', () => {
  it.each([
    ['pending', 'revoked'],
    ['active', 'revoked'],
    ['revoked', 'unchanged'],
  ] as const)('when the pair is %s, then revoke is %s', (state, outcome) => {
    expect(decideRevoke({ state, lastIssuedAt: null }, null).outcome).toBe(outcome);
  });
  it('when the pair never existed, then revoke is unchanged', () => {
    expect(decideRevoke(null, null).outcome).toBe('unchanged');
  });
  it('when a revoke is older than the last command on the pair, then it is superseded', () => {
    expect(decideRevoke({ state: 'active', lastIssuedAt: t('2026-05-02T00:00:00Z') }, t('2026-05-01T00:00:00Z')).outcome).toBe('superseded');
  });
  it('when the pair is pending, then grant makes it active; active stays unchanged; otherwise NOT_FOUND', () => {
    expect(decideGrant({ state: 'pending', lastIssuedAt: null }, null).outcome).toBe('active');
    expect(decideGrant({ state: 'active', lastIssuedAt: null }, null).outcome).toBe('unchanged');
    expect(codeOf(() => decideGrant({ state: 'revoked', lastIssuedAt: null }, null))).toBe('NOT_FOUND');
    expect(codeOf(() => decideGrant(null, null))).toBe('NOT_FOUND');
  });
  it('when commands carry no issuedAt, then nothing is superseded', () => {
    fc.assert(fc.property(fc.date({ noInvalidDate: true }), (d) => !isSuperseded({ state: 'active', lastIssuedAt: d }, null)));
  });
});
