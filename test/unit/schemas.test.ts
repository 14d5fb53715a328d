import {
  commandPolicy,
  commandSchemas,
  commandsRefusal,
  commandTypes,
  isStorableText,
  parseCommand,
  parseCommands,
  platformFieldsOf,
  postingScopes,
  type CommandType,
} from '../../src/commands/schemas.js';
import { envelope, fullExamples, stringLeaves, withLeaf } from '../helpers/command-examples.js';

const pathsOf = (raw: unknown): string[] => {
  const r = parseCommand(raw);
  return r.ok ? [] : [...new Set(r.issues.map((i) => i.path))].sort();
};
const dotted = (path: (string | number)[]) => path.map(String).join('.');

/** Every (type, string leaf) of the full examples, envelope included. */
const leaves = commandTypes.flatMap((type) =>
  stringLeaves({ ...fullExamples[type], ...envelope }).map((l) => ({ type, path: l.path, value: l.value, name: `${type} ${dotted(l.path)}` })),
);

describe('the examples the tables are built from', () => {
  it.each(commandTypes)('when the full example of %s is parsed, then it is valid and names every field of its schema', (type) => {
    const example = { ...fullExamples[type], ...envelope };
    expect(parseCommand(example)).toMatchObject({ ok: true });
    expect(Object.keys(example).sort()).toEqual(Object.keys(commandSchemas[type].shape).sort());
  });
});

describe('text that Postgres cannot store (NUL, lone surrogates)', () => {
  it.each([
    ['plain text', 'Ann Agent', true],
    ['an emoji (a surrogate pair)', 'Ann 😀', true],
    ['a NUL', 'Ann\u0000', false],
    ['a lone high surrogate', 'Ann\ud83d', false],
    ['a lone low surrogate', '\ude00Ann', false],
    ['a reversed pair', '\ude00\ud83d', false],
  ])('when the text is %s, then isStorableText says %s', (_what, text, storable) => {
    expect(isStorableText(text)).toBe(storable);
  });

  const poisons: [string, string][] = [['a NUL', 'a\u0000b'], ['a lone high surrogate', 'a\ud800b'], ['a lone low surrogate', 'a\udc00b']];
  for (const [what, poison] of poisons) {
    it.each(leaves.map((l) => [l.name, l] as const))(`when %s holds ${what}, then it is refused at validation with that path`, (_name, l) => {
      const raw = withLeaf({ ...fullExamples[l.type], ...envelope }, l.path, poison);
      expect(pathsOf(raw)).toContain(dotted(l.path));
    });
  }

  it('when a batch holds one command with a NUL, then the batch is refused with the indexed path', () => {
    const r = parseCommands([fullExamples['employee.tag'], { ...fullExamples['employee.tag'], name: 'Bad\u0000Name' }]);
    expect(r).toEqual({ ok: false, issues: [{ path: 'commands.1.name', message: expect.any(String) }] });
  });
});

describe('command types are own properties only', () => {
  it.each(['toString', '__proto__', 'constructor', 'hasOwnProperty', 'valueOf', 'isPrototypeOf', '__defineGetter__', 'propertyIsEnumerable', 'toLocaleString'])(
    'when type is "%s", then it is one clear issue on type, never a crash',
    (type) => {
      expect(parseCommand({ type, email: 'a@acme.test' })).toEqual({ ok: false, issues: [{ path: 'type', message: expect.stringMatching(/^must be one of /) }] });
      expect(commandsRefusal(['commands:write'], [{ type }], { batch: false })).toBeNull();
    },
  );

  it('when the body comes from JSON with a __proto__ key, then it is an unknown field and no prototype is touched', () => {
    const raw: unknown = JSON.parse('{"type":"employee.tag","email":"a@acme.test","__proto__":{"type":"partner.upsert","polluted":true}}');
    expect(pathsOf(raw)).toEqual(['__proto__']);
    const nested: unknown = JSON.parse('{"type":"partner.upsert","name":"P","team":{"__proto__":{"x":1}}}');
    expect(pathsOf(nested)).toEqual(['team.__proto__']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('when type is only inherited (from a prototype), then it is not a type', () => {
    const raw = Object.create({ type: 'employee.tag' }) as Record<string, unknown>;
    raw.email = 'a@acme.test';
    expect(pathsOf(raw)).toEqual(['type']);
  });

  it.each<[string, unknown]>([['null', null], ['an array', [fullExamples['employee.tag']]], ['a string', 'employee.tag'], ['a number', 42]])(
    'when the command is %s, then it must be a JSON object',
    (_what, raw) => {
      expect(parseCommand(raw)).toEqual({ ok: false, issues: [{ path: '', message: 'must be a JSON object' }] });
    },
  );
});

describe('CR, LF and other control characters (mail headers)', () => {
  const multiLine = new Set(['team.email body']);
  const singleLine = leaves.filter((l) => !multiLine.has(l.name));

  it.each(singleLine.map((l) => [l.name, l] as const))('when %s holds CRLF inside, then it is refused with that path', (_name, l) => {
    const raw = withLeaf({ ...fullExamples[l.type], ...envelope }, l.path, `${l.value}\r\nBcc: evil@attacker.test`);
    expect(pathsOf(raw)).toContain(dotted(l.path));
  });

  it.each<[string, CommandType, string, string, boolean]>([
    ['an email with CRLF and a Bcc header', 'employee.tag', 'email', 'ann@acme.test\r\nBcc: evil@attacker.test', false],
    ['an email with a bare LF', 'employee.tag', 'email', 'ann@acme.test\nx', false],
    ['an email with a space', 'employee.tag', 'email', 'ann @acme.test', false],
    ['an email without a dotted domain', 'employee.tag', 'email', 'ann@localhost', false],
    ['an email in upper case', 'employee.tag', 'email', 'Ann@Acme.TEST', true],
    ['a name with a tab', 'employee.tag', 'name', 'Ann\tAgent', false],
    ['a name with a line separator (U+2028)', 'employee.tag', 'name', 'Ann\u2028Agent', false],
    ['a name with a NEL (U+0085)', 'employee.tag', 'name', 'Ann\u0085Agent', false],
    ['a name ending in CRLF (trimmed away)', 'employee.tag', 'name', 'Ann Agent\r\n', true],
    ['a name with accents and an emoji', 'employee.tag', 'name', 'Åsa Ñandú 😀', true],
    ['a subject with CRLF', 'team.email', 'subject', 'Hi\r\nBcc: evil@attacker.test', false],
    ['a subject with a bare CR', 'team.email', 'subject', 'Hi\rthere', false],
    ['a body with CRLF and LF', 'team.email', 'body', 'line one\r\nline two\nthree', true],
    ['a body with a tab', 'team.email', 'body', 'a\tb', true],
    ['a body with a NUL', 'team.email', 'body', 'a\u0000b', false],
    ['a team member email with CRLF', 'partner.upsert', 'team.channelAccountManager.email', 'cam@hub.test\r\nBcc: evil@attacker.test', false],
    ['a team member name with LF', 'partner.upsert', 'team.channelConsultant.name', 'Cora\nBcc: evil@attacker.test', false],
    ['a contact email with CRLF', 'client.upsert', 'contactEmail', 'boss@c1.test\r\nCc: evil@attacker.test', false],
    ['a portal user email with LF', 'client.upsert', 'portalUserEmails.0', 'user@c1.test\nx', false],
    ['an employee email of a pair with CRLF', 'access.assign', 'employeeEmails.0', 'ann@acme.test\r\n', false],
    ['a client name with CRLF', 'client.upsert', 'name', 'Client\r\nOne', false],
    ['an email domain with LF', 'partner.upsert', 'emailDomains.0', 'acme.test\nx', false],
  ])('when %s is sent, then valid is %s', (_what, type, path, value, valid) => {
    const raw = withLeaf(fullExamples[type], path.split('.').map((p) => (/^\d+$/.test(p) ? Number(p) : p)), value);
    expect(pathsOf(raw)).toEqual(valid ? [] : [path]);
  });
});

describe('dates and instants Postgres can store', () => {
  it.each<[string, CommandType, string, unknown, boolean]>([
    ['a renewal date in year 0000', 'client.upsert', 'renewalDate', '0000-06-01', false],
    ['a renewal date in year 0001', 'client.upsert', 'renewalDate', '0001-06-01', true],
    ['February 30', 'sale.record', 'closedOn', '2026-02-30', false],
    ['February 29 of a leap year', 'sale.record', 'closedOn', '2024-02-29', true],
    ['February 29 of a common year', 'sale.record', 'closedOn', '2026-02-29', false],
    ['month 13', 'client.churn', 'on', '2026-13-01', false],
    ['a date with a time', 'client.churn', 'on', '2026-01-01T00:00:00Z', false],
    ['a number as a date', 'client.churn', 'on', 20260101, false],
    ['an issuedAt in words', 'credit.recalculate', 'issuedAt', 'last tuesday', false],
    ['an issuedAt without offset', 'credit.recalculate', 'issuedAt', '2026-01-01T00:00:00', false],
    ['an issuedAt that is year 0 in UTC', 'credit.recalculate', 'issuedAt', '0001-01-01T00:00:00+01:00', false],
    ['an issuedAt that is year 10000 in UTC', 'credit.recalculate', 'issuedAt', '9999-12-31T23:30:00-01:00', false],
    ['an issuedAt of year 0000', 'credit.recalculate', 'issuedAt', '0000-01-01T00:00:00Z', false],
    ['an ordinary issuedAt', 'credit.recalculate', 'issuedAt', '2026-03-01T10:00:00.123+01:00', true],
    ['an issuedAt as a number', 'credit.recalculate', 'issuedAt', 1767225600000, false],
  ])('when %s is sent, then valid is %s', (_what, type, path, value, valid) => {
    expect(pathsOf({ ...fullExamples[type], [path]: value })).toEqual(valid ? [] : [path]);
  });
});

describe('who may post what (commandPolicy)', () => {
  const partner = ['commands:write', 'read', 'employees:read'];
  const platform = ['clients:sync', 'read'];

  it('when the table is read, then it is the trust model of contract §3', () => {
    const table = Object.fromEntries(commandTypes.map((t) => [t, { scopes: commandPolicy[t].scopes, platformFields: platformFieldsOf(t) }]));
    expect(table).toEqual({
      'partner.upsert': { scopes: ['admin'], platformFields: [] },
      'employee.tag': { scopes: ['commands:write'], platformFields: [] },
      'employee.untag': { scopes: ['commands:write'], platformFields: [] },
      'employee.remove': { scopes: ['commands:write'], platformFields: [] },
      'client.upsert': {
        scopes: ['commands:write', 'clients:sync'],
        platformFields: ['contactEmail', 'locale', 'mrr', 'products', 'renewalDate', 'portalUserEmails', 'companyInfo', 'subscriptions', 'contactTier', 'emailTier',
          'renewalOwner', 'renewalRep', 'currentSubscription', 'renewalSubscription', 'portalUsage', 'platformEngagementScore'],
      },
      'client.terminate': { scopes: ['commands:write'], platformFields: [] },
      'access.assign': { scopes: ['commands:write'], platformFields: [] },
      'access.grant': { scopes: ['clients:sync'], platformFields: [] },
      'access.revoke': { scopes: ['commands:write'], platformFields: [] },
      'access.resend': { scopes: ['commands:write'], platformFields: [] },
      'access.extend': { scopes: ['commands:write'], platformFields: [] },
      'sale.record': { scopes: ['clients:sync'], platformFields: [] },
      'client.churn': { scopes: ['clients:sync'], platformFields: [] },
      'credit.recalculate': { scopes: ['commands:write'], platformFields: [] },
      'team.email': { scopes: ['commands:write'], platformFields: [] },
    });
    expect([...postingScopes].sort()).toEqual(['clients:sync', 'commands:write']);
  });

  it.each<[string, string[], Record<string, unknown>, { message: string; fields?: string[] } | null]>([
    ['a partner token tags an employee', partner, fullExamples['employee.tag'], null],
    ['a partner token lists a client by hubId and name', partner, { type: 'client.upsert', hubId: 'c-1', name: 'C' }, null],
    ['a partner token sets the contact', partner, { type: 'client.upsert', hubId: 'c-1', name: 'C', contactEmail: 'me@partner.test' }, { message: expect.any(String), fields: ['contactEmail'] }],
    ['a partner token sets mrr and portal users', partner, { type: 'client.upsert', hubId: 'c-1', name: 'C', portalUserEmails: [], mrr: 1 }, { message: expect.any(String), fields: ['mrr', 'portalUserEmails'] }],
    ['a partner token sends an invalid platform field', partner, { type: 'client.upsert', mrr: 'lots' }, { message: expect.any(String), fields: ['mrr'] }],
    ['a partner token records a sale', partner, fullExamples['sale.record'], { message: expect.stringContaining('"clients:sync"') }],
    ['a partner token grants', partner, fullExamples['access.grant'], { message: expect.stringContaining('"clients:sync"') }],
    ['a partner token churns a client', partner, fullExamples['client.churn'], { message: expect.stringContaining('"clients:sync"') }],
    ['a partner token upserts the partner', partner, fullExamples['partner.upsert'], { message: expect.stringContaining('"admin"') }],
    ['the platform syncs a whole client', platform, fullExamples['client.upsert'], null],
    ['the platform records a sale', platform, fullExamples['sale.record'], null],
    ['the platform tags an employee', platform, fullExamples['employee.tag'], { message: expect.stringContaining('"commands:write"') }],
    ['the platform assigns', platform, fullExamples['access.assign'], { message: expect.stringContaining('"commands:write"') }],
    ['the admin does anything', ['admin'], fullExamples['partner.upsert'], null],
    ['a partner token sends an unknown type (left to validation)', partner, { type: 'employee.fire', mrr: 1 }, null],
    ['a partner token sends a field as undefined (absent)', partner, { type: 'client.upsert', hubId: 'c-1', name: 'C', mrr: undefined }, null],
  ])('when %s, then the refusal is as the table says', (_what, scopes, raw, expected) => {
    const r = commandsRefusal(scopes, [raw], { batch: false });
    expect(r === null ? null : { message: r.message, ...r.details }).toEqual(expected);
  });

  it('when a batch mixes allowed and refused commands, then the refusal names every refused field and command index', () => {
    const r = commandsRefusal(['commands:write'], [
      fullExamples['employee.tag'],
      { type: 'client.upsert', hubId: 'c-1', name: 'C', renewalDate: '2027-01-01' },
      fullExamples['sale.record'],
      { type: 'client.upsert', hubId: 'c-2', name: 'D', contactEmail: 'x@y.test' },
    ], { batch: true });
    expect(r?.details).toEqual({ fields: ['contactEmail', 'renewalDate'], commands: [1, 2, 3] });
    expect(r?.message).toMatch(/^commands\.1: /);
  });
});
