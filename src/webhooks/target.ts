import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions } from 'node:dns';
import { isIP, isIPv4, type LookupFunction } from 'node:net';

/**
 * Where a webhook may point (contract §8): an `http`/`https` URL without credentials, at most
 * 2048 characters, whose host is not on a loopback, private, link-local or otherwise non-public
 * address, unless WEBHOOK_ALLOW_PRIVATE=true. The URL's text is checked when a partner subscribes;
 * the addresses its host name resolves to are checked again at every send, and the request connects
 * to the address that was checked (a name cannot resolve to a public address for the check and to a
 * private one for the connection: no DNS rebinding).
 */

/** The longest webhook URL accepted. */
export const MAX_WEBHOOK_URL_LENGTH = 2048;

/** One IPv4 block: its first address as a 32-bit number and its prefix length. */
type V4Block = readonly [base: number, bits: number];

const v4 = (a: number, b: number, c: number, d: number) => ((a << 24) >>> 0) + (b << 16) + (c << 8) + d;

/** IPv4 blocks that are not public unicast (RFC 6890 and neighbours). */
const PRIVATE_V4: readonly V4Block[] = [
  [v4(0, 0, 0, 0), 8], // "this network", 0.0.0.0
  [v4(10, 0, 0, 0), 8],
  [v4(100, 64, 0, 0), 10], // carrier-grade NAT
  [v4(127, 0, 0, 0), 8], // loopback
  [v4(169, 254, 0, 0), 16], // link-local (cloud metadata endpoints live here)
  [v4(172, 16, 0, 0), 12],
  [v4(192, 0, 0, 0), 24], // IETF protocol assignments
  [v4(192, 168, 0, 0), 16],
  [v4(198, 18, 0, 0), 15], // benchmarking
  [v4(224, 0, 0, 0), 3], // multicast, reserved, broadcast
];

function v4Number(ip: string): number {
  return ip.split('.').reduce((n, part) => n * 256 + Number(part), 0);
}

function isPrivateV4Number(n: number): boolean {
  return PRIVATE_V4.some(([base, bits]) => {
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    return ((n & mask) >>> 0) === base;
  });
}

/** The eight 16-bit groups of an IPv6 address (a zone index is ignored; a trailing dotted IPv4 is two groups). */
function v6Groups(ip: string): number[] | null {
  let s = ip.replace(/%.*$/, '').toLowerCase();
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (dotted) {
    if (!isIPv4(dotted[1]!)) return null;
    const n = v4Number(dotted[1]!);
    s = `${s.slice(0, -dotted[1]!.length)}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail].map((g) => Number.parseInt(g, 16));
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null;
}

function isPrivateV6(groups: number[]): boolean {
  const [g0, g1, g2, g3, g4, g5, g6, g7] = groups as [number, number, number, number, number, number, number, number];
  const embedded = ((g6 << 16) >>> 0) + g7;
  const zeroTo = (k: number) => groups.slice(0, k).every((g) => g === 0);
  if (zeroTo(7) && (g7 === 0 || g7 === 1)) return true; // :: and ::1
  if (zeroTo(5) && g5 === 0xffff) return isPrivateV4Number(embedded); // IPv4-mapped ::ffff:a.b.c.d
  if (zeroTo(6)) return isPrivateV4Number(embedded); // IPv4-compatible ::a.b.c.d
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) return isPrivateV4Number(embedded); // NAT64
  if (g0 === 0x2002) return isPrivateV4Number(((g1 << 16) >>> 0) + g2); // 6to4
  if ((g0 & 0xfe00) === 0xfc00) return true; // unique local fc00::/7
  if ((g0 & 0xffc0) === 0xfe80 || (g0 & 0xffc0) === 0xfec0) return true; // link-local fe80::/10, site-local fec0::/10
  if ((g0 & 0xff00) === 0xff00) return true; // multicast
  if (g0 === 0x100 && g1 === 0 && g2 === 0 && g3 === 0) return true; // discard 100::/64
  if (g0 === 0x2001 && g1 === 0xdb8) return true; // documentation
  return false;
}

/**
 * Whether an IP address (v4 or v6, IPv4-mapped and IPv4-embedding forms included) is loopback,
 * private, link-local, unspecified, multicast or otherwise not a public unicast address. A string
 * that is not an IP address counts as private (refused rather than guessed at).
 */
export function isPrivateAddress(ip: string): boolean {
  const kind = isIP(ip.replace(/%.*$/, ''));
  if (kind === 4) return isPrivateV4Number(v4Number(ip));
  if (kind === 6) {
    const groups = v6Groups(ip);
    return groups === null || isPrivateV6(groups);
  }
  return true;
}

/** A URL's host without IPv6 brackets or a trailing dot. */
const bareHost = (hostname: string) => hostname.replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '').toLowerCase();

/** Whether a host (name or IP literal) names this machine or a private network by its text alone. */
export function isPrivateHostText(hostname: string): boolean {
  const host = bareHost(hostname);
  if (isIP(host)) return isPrivateAddress(host);
  return host === '' || host === 'localhost' || host.endsWith('.localhost');
}

/** What is wrong with a webhook URL (nothing: an empty list). `allowPrivate`: WEBHOOK_ALLOW_PRIVATE. */
export function webhookUrlProblems(raw: string, opts: { allowPrivate: boolean }): string[] {
  if (raw.length > MAX_WEBHOOK_URL_LENGTH) return [`must be at most ${MAX_WEBHOOK_URL_LENGTH} characters`];
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return ['must be an absolute http or https URL'];
  }
  const problems: string[] = [];
  if (url.protocol !== 'http:' && url.protocol !== 'https:') problems.push('must be an http or https URL');
  if (url.username !== '' || url.password !== '') problems.push('must not carry credentials (user:password@)');
  if (problems.length === 0 && !opts.allowPrivate && isPrivateHostText(url.hostname)) {
    problems.push('must not point to a loopback, private or link-local address');
  }
  return problems;
}

/** A send refused because the target resolved to a non-public address. */
export class PrivateTargetError extends Error {
  override name = 'PrivateTargetError';
  readonly code = 'WEBHOOK_TARGET_PRIVATE';
}

type Resolver = (hostname: string, options: LookupAllOptions, callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => void;

/**
 * A `lookup` for `http.request` that resolves every address of the host, refuses the connection
 * when any of them is not public (unless `allowPrivate`), and hands the socket only addresses it
 * checked. Serves both forms Node asks for (one address, or all of them for happy eyeballs).
 */
export function checkedLookup(opts: { allowPrivate: boolean; resolve?: Resolver }): LookupFunction {
  const resolve: Resolver = opts.resolve ?? ((h, o, cb) => dnsLookup(h, o, cb));
  return (hostname, options, callback) => {
    const family = typeof options.family === 'number' ? options.family : options.family === 'IPv6' ? 6 : options.family === 'IPv4' ? 4 : 0;
    resolve(hostname, { all: true, family, ...(options.hints !== undefined ? { hints: options.hints } : {}) }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const bad = opts.allowPrivate ? undefined : addresses.find((a) => isPrivateAddress(a.address));
      if (bad) return callback(new PrivateTargetError(`${hostname} resolves to ${bad.address}, a loopback, private or link-local address`), '', 0);
      if (!addresses.length) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), '', 0);
      if (options.all === true) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
      const first = addresses[0]!;
      return callback(null, first.address, first.family);
    });
  };
}
