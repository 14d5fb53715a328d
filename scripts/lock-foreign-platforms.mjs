// The npm registry mirror on our build machines serves only linux-x64 native binaries, so
// `npm install` leaves other platforms' optional binaries out of package-lock.json and `npm ci`
// then refuses the lock. This records each missing optional platform package (version, os, cpu,
// optional) so `npm ci` skips it as foreign instead of rejecting the lock. Run after `npm install`:
//   node scripts/lock-foreign-platforms.mjs
import { readFileSync, writeFileSync } from 'node:fs';

const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'));
const platform = (name) => {
  const m = /-(darwin|linux|win32|android|freebsd|openharmony)-(x64|arm64|arm|ia32|ppc64|s390x|riscv64|loong64)(?:-(gnu|musl|gnueabihf|musleabihf|msvc|eabi))?$/.exec(name);
  if (!m) return null;
  const [, os, cpu, abi] = m;
  return { os: [os], cpu: [cpu], ...(os === 'linux' && abi ? { libc: [abi.startsWith('musl') ? 'musl' : 'glibc'] } : {}) };
};
let added = 0;
for (const [path, entry] of Object.entries(lock.packages)) {
  for (const [dep, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const key = `node_modules/${dep}`;
    const nested = `${path}/node_modules/${dep}`;
    if (lock.packages[key] || lock.packages[nested]) continue;
    const p = platform(dep);
    if (!p) continue;
    lock.packages[key] = { version, optional: true, ...p };
    added++;
  }
}
lock.packages = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : a > b ? 1 : 0)));
writeFileSync('package-lock.json', JSON.stringify(lock, null, 2) + '\n');
console.log(`recorded ${added} foreign-platform optional package(s)`);
