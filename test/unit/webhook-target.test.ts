import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LookupAddress, LookupAllOptions } from 'node:dns';
import { Webhook } from 'standardwebhooks';
import { checkedLookup, isPrivateAddress, PrivateTargetError, webhookUrlProblems } from '../../src/webhooks/target.js';
import { newWebhookSecret, sendWebhook, signatureHeaders } from '../../src/webhooks/sender.js';
import { retryDelayMs, RETRY_CAP_MS } from '../../src/workers/webhooks.js';

/** Where a webhook may point (contract §8): the URL's text at subscribe, the resolved addresses at every send. */

describe('webhook targets', () => {
  it.each([
    '127.0.0.1', '127.255.255.254', '10.0.0.1', '172.16.0.1', '172.31.255.255', '192.168.0.1', '169.254.169.254', '0.0.0.0', '100.64.0.1', '224.0.0.1', '255.255.255.255',
    '::1', '::', 'fc00::1', 'fdff:ffff::1', 'fe80::1', 'fe80::1%eth0', 'febf::1', 'ff02::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:10.1.2.3', '::127.0.0.1',
    '64:ff9b::a9fe:a9fe', '2002:c0a8:0101::1', '2001:db8::1', 'not-an-ip',
  ])('when the address is %s, then it is not public', (ip) => {
    expect(isPrivateAddress(ip)).toBe(true);
  });

  it.each(['93.184.216.34', '8.8.8.8', '172.32.0.1', '172.15.255.255', '192.169.0.1', '100.128.0.1', '2606:4700:4700::1111', '2a00:1450:4001::200e', '::ffff:8.8.8.8', '2002:0808:0808::1'])(
    'when the address is %s, then it is public', (ip) => {
      expect(isPrivateAddress(ip)).toBe(false);
    },
  );

  it('when a URL names a private host in any spelling, then it is refused unless private targets are allowed', () => {
    for (const url of ['http://127.0.0.1/', 'http://localhost:3000/', 'http://a.b.localhost/', 'http://LOCALHOST./', 'http://[::1]/', 'http://[::ffff:127.0.0.1]/', 'http://2130706433/', 'http://0177.0.0.1/', 'http://169.254.169.254/']) {
      expect({ url, problems: webhookUrlProblems(url, { allowPrivate: false }) }).toEqual({ url, problems: ['must not point to a loopback, private or link-local address'] });
      expect(webhookUrlProblems(url, { allowPrivate: true })).toEqual([]);
    }
    expect(webhookUrlProblems('https://hooks.example.com/in?x=1', { allowPrivate: false })).toEqual([]);
    expect(webhookUrlProblems('ftp://hooks.example.com/', { allowPrivate: true })).toEqual(['must be an http or https URL']);
    expect(webhookUrlProblems('https://u:p@hooks.example.com/', { allowPrivate: true })).toEqual(['must not carry credentials (user:password@)']);
    expect(webhookUrlProblems(`https://hooks.example.com/${'x'.repeat(2040)}`, { allowPrivate: true })).toEqual(['must be at most 2048 characters']);
    expect(webhookUrlProblems('hooks.example.com/in', { allowPrivate: true })).toEqual(['must be an absolute http or https URL']);
  });

  /** A resolver that answers from a table, as dns.lookup with `all: true` would. */
  const resolverOf = (table: Record<string, string[]>) => (hostname: string, _o: LookupAllOptions, cb: (err: NodeJS.ErrnoException | null, a: LookupAddress[]) => void) =>
    cb(null, (table[hostname] ?? []).map((address) => ({ address, family: address.includes(':') ? 6 : 4 })));
  const lookupOnce = (lookup: ReturnType<typeof checkedLookup>, host: string, all: boolean) => new Promise<{ err: Error | null; result: unknown }>((resolve) => {
    lookup(host, { all } as never, ((err: Error | null, a: unknown, f?: number) => resolve({ err, result: all ? a : { address: a, family: f } })) as never);
  });

  it('when a host name resolves to a private address at send time (DNS rebinding), then the connection is refused; a public one is handed to the socket as checked', async () => {
    const resolve = resolverOf({ 'rebind.example': ['93.184.216.34', '127.0.0.1'], 'public.example': ['93.184.216.34', '2606:4700:4700::1111'] });
    const strict = checkedLookup({ allowPrivate: false, resolve });
    const refused = await lookupOnce(strict, 'rebind.example', false);
    expect(refused.err).toBeInstanceOf(PrivateTargetError);
    expect(refused.err?.message).toContain('127.0.0.1');
    expect((await lookupOnce(strict, 'rebind.example', true)).err).toBeInstanceOf(PrivateTargetError);
    expect(await lookupOnce(strict, 'public.example', false)).toEqual({ err: null, result: { address: '93.184.216.34', family: 4 } });
    expect(await lookupOnce(strict, 'public.example', true)).toEqual({ err: null, result: [{ address: '93.184.216.34', family: 4 }, { address: '2606:4700:4700::1111', family: 6 }] });
    expect((await lookupOnce(checkedLookup({ allowPrivate: true, resolve }), 'rebind.example', false)).err).toBeNull();
  });

  it('when the target is a loopback address and private targets are not allowed, then nothing is sent; allowed, it is sent signed', async () => {
    const got: { headers: Record<string, string | string[] | undefined>; body: string }[] = [];
    const server: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => { body += c.toString(); });
      req.on('end', () => { got.push({ headers: req.headers, body }); res.writeHead(204).end(); });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
      const secret = newWebhookSecret();
      const body = JSON.stringify({ id: 'evt_1', type: 'command.completed', partnerId: 'p-1', createdAt: new Date().toISOString(), data: {} });
      const refused = await sendWebhook({ url, secret, eventId: 'evt_1', body, allowPrivate: false });
      expect(refused.status).toBeNull();
      expect(refused.error).toContain('loopback, private or link-local');
      expect(got).toHaveLength(0);
      expect(await sendWebhook({ url, secret, eventId: 'evt_1', body, allowPrivate: true })).toEqual({ status: 204, error: null });
      expect(got).toHaveLength(1);
      expect(new Webhook(secret).verify(got[0]!.body, got[0]!.headers as Record<string, string>)).toEqual(JSON.parse(body));
      // A host name goes through the checked lookup (both the one-address and the all-addresses forms Node asks for).
      expect(await sendWebhook({ url: url.replace('127.0.0.1', 'localhost'), secret, eventId: 'evt_1', body, allowPrivate: true })).toEqual({ status: 204, error: null });
      expect((await sendWebhook({ url: url.replace('127.0.0.1', 'localhost'), secret, eventId: 'evt_1', body, allowPrivate: false })).error).toContain('loopback, private or link-local');
      expect(got).toHaveLength(2);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('when a receiver does not answer within the timeout, then the attempt fails with no status', async () => {
    const server: Server = createServer(() => undefined);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      expect(await sendWebhook({ url, secret: newWebhookSecret(), eventId: 'evt_2', body: '{}', allowPrivate: true, timeoutMs: 200 })).toEqual({ status: null, error: 'no answer within 200 ms' });
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe('webhook signatures and retries', () => {
  it('when a message is signed, then the Standard Webhooks headers carry the id, the Unix timestamp and a v1 signature the library verifies', () => {
    const secret = newWebhookSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const at = new Date('2026-11-30T12:00:00.500Z');
    const h = signatureHeaders(secret, 'evt_abc', '{"a":1}', at);
    expect(h['webhook-id']).toBe('evt_abc');
    expect(h['webhook-timestamp']).toBe(String(Math.floor(at.getTime() / 1000)));
    expect(h['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/);
    const now = signatureHeaders(secret, 'evt_abc', '{"a":1}', new Date());
    expect(new Webhook(secret).verify('{"a":1}', now)).toEqual({ a: 1 });
    expect(() => new Webhook(secret).verify('{"a":2}', now)).toThrow();
  });

  it('when a delivery keeps failing, then its retries double from the base up to one hour apart', () => {
    expect([1, 2, 3, 4, 10, 11, 12, 40].map((n) => retryDelayMs(n, 5000))).toEqual([5000, 10_000, 20_000, 40_000, 2_560_000, RETRY_CAP_MS, RETRY_CAP_MS, RETRY_CAP_MS]);
    // Over 24 hours with the default base: about 30 attempts.
    let t = 0;
    let n = 0;
    while (t < 24 * 3_600_000) t += retryDelayMs(++n, 5000);
    expect(n).toBeGreaterThanOrEqual(25);
    expect(n).toBeLessThanOrEqual(35);
  });
});
