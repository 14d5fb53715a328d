import { ConfigError, loadConfig } from '../../config/index.js';

describe('loadConfig', () => {
  it('when nothing is set, then the contract defaults apply', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      databaseUrl: 'postgres://postgres@127.0.0.1:5432/partner_access',
      redisUrl: 'redis://127.0.0.1:6379/0',
      smtpUrl: 'smtp://127.0.0.1:1025',
      port: 3000,
      publicUrl: 'http://localhost:3000',
      tokens: null,
      recalcCron: '0 6 * * *',
      recalcTz: 'UTC',
      renewalAlertDays: 90,
      migrateOnStart: true,
    });
    expect([...c.roles].sort()).toEqual(['api', 'scheduler', 'worker']);
  });

  it.each([
    ['PORT', 'not-a-port'],
    ['ROLES', 'api,cook'],
    ['RENEWAL_ALERT_DAYS', '-3'],
    ['MIGRATE_ON_START', 'maybe'],
    ['DATABASE_URL', 'nope'],
  ])('when %s is bad, then start stops naming the key', (key, value) => {
    expect(() => loadConfig({ [key]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [key]: value })).toThrow(key);
  });

  it('when API_TOKENS is invalid, then the error names the key but never the secret', () => {
    const secret = 'super-secret-token-value';
    let message = '';
    try {
      loadConfig({ API_TOKENS: JSON.stringify([{ token: secret, name: 'x', partners: '*', scopes: ['nope'] }]) });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('API_TOKENS');
    expect(message).not.toContain(secret);
  });

  it('when NODE_ENV is production without API_TOKENS, then it refuses to start', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/API_TOKENS/);
  });

  it('when ROLES=worker and PUBLIC_URL are given, then they are honoured', () => {
    const c = loadConfig({ ROLES: 'worker', PUBLIC_URL: 'https://partners.example/', PORT: '8080' });
    expect([...c.roles]).toEqual(['worker']);
    expect(c.publicUrl).toBe('https://partners.example');
  });
});
