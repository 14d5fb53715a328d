import { ConfigError, envSchema, loadConfig } from '../../config/index.js';

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
    ['METRICS_PORT', '70000'],
    ['REDIS_CLUSTER', 'yes'],
    ['GRANT_REMINDER_DAYS', '3,soon'],
    ['ACCESS_END_REMINDER_DAYS', '-1'],
    ['WEBHOOK_ALLOW_PRIVATE', 'maybe'],
    ['LOG_PRETTY', '2'],
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

  it('when the contract v2 keys are unset, then their defaults apply', () => {
    expect(loadConfig({})).toMatchObject({
      metricsPort: undefined,
      logPretty: false,
      redisCluster: false,
      grantReminderDays: [3],
      accessEndReminderDays: [30, 7, 1],
      webhookAllowPrivate: false,
    });
  });

  it('when day lists have decimals, spaces and repeats, then they are numbers, once each, largest first', () => {
    const c = loadConfig({ GRANT_REMINDER_DAYS: '0.0005, 0.001', ACCESS_END_REMINDER_DAYS: '1,30,7,7', METRICS_PORT: '9464', LOG_PRETTY: '1', REDIS_CLUSTER: 'true', WEBHOOK_ALLOW_PRIVATE: 'true' });
    expect(c.grantReminderDays).toEqual([0.001, 0.0005]);
    expect(c.accessEndReminderDays).toEqual([30, 7, 1]);
    expect(c).toMatchObject({ metricsPort: 9464, logPretty: true, redisCluster: true, webhookAllowPrivate: true });
  });

  it('when a token has the clients:sync and webhooks:write scopes, then they are accepted', () => {
    const all = ['commands:write', 'read', 'employees:read', 'clients:sync', 'webhooks:write', 'admin'];
    const c = loadConfig({ API_TOKENS: JSON.stringify([{ token: 'platform-token-1', name: 'platform', partners: '*', scopes: all }]) });
    expect(c.tokens?.[0]?.scopes).toEqual(all);
  });

  it('when API_TOKENS is not JSON, then the error names the key but never the value', () => {
    const secret = 'not-json-super-secret';
    expect(() => loadConfig({ API_TOKENS: secret })).toThrow(/API_TOKENS: not valid JSON/);
    expect(() => loadConfig({ API_TOKENS: secret })).not.toThrow(secret);
  });

  it('when SMTP_URL with a password is invalid, then the error names the key but never the password', () => {
    let message = '';
    try {
      loadConfig({ SMTP_URL: 'smtp://user:hunter2-secret@ bad host' });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('SMTP_URL');
    expect(message).not.toContain('hunter2-secret');
  });

  it('when the schema is read, then every key has a description', () => {
    const undocumented = Object.entries(envSchema.shape).filter(([, schema]) => !schema.description).map(([key]) => key);
    expect(undocumented).toEqual([]);
  });
});
