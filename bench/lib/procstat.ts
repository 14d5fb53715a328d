import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU accounting from /proc: utime+stime (+cutime+cstime, so that exited children reaped by a
 * parent, e.g. Postgres backends by the postmaster, are still counted) per process kind.
 */

const CLK_TCK = 100; // Linux USER_HZ

export type Kind = 'workers' | 'bench' | 'postgres' | 'redis';

function readStat(pid: number): { ticks: number; childTicks: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17 (1-based) → 11..14 here.
    const n = (i: number) => Number(rest[i] ?? 0);
    return { ticks: n(11) + n(12), childTicks: n(13) + n(14) };
  } catch {
    return null;
  }
}

function comm(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return null;
  }
}

export function pidsByComm(name: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    if (comm(Number(d)) === name) out.push(Number(d));
  }
  return out;
}

/** Sum of own (and reaped children's) CPU ticks over a set of processes. */
function sumTicks(pids: number[], withChildren: boolean): number {
  let t = 0;
  for (const p of pids) {
    const s = readStat(p);
    if (s) t += s.ticks + (withChildren ? s.childTicks : 0);
  }
  return t;
}

/** Whole-machine busy jiffies (all cores) from /proc/stat. */
function machineTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0); // user nice system idle iowait irq softirq steal
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

export interface CpuSnapshot {
  atMs: number;
  ticks: Record<Kind, number>;
  machine: { busy: number; total: number };
}

export interface CpuUsage {
  wallS: number;
  /** Percent of one core (200 % = both cores of a 2-core machine). */
  pct: Record<Kind, number>;
  /** Whole machine busy, percent of one core (includes other people's processes). */
  machinePct: number;
  cores: number;
}

/** `workerPids` is read at snapshot time, so workers started in between count from their start. */
export function cpuSnapshot(workerPids: number[]): CpuSnapshot {
  const redisPids = pidsByComm('redis-server');
  const pgPids = pidsByComm('postgres');
  return {
    atMs: performance.now(),
    ticks: {
      workers: sumTicks(workerPids, false),
      bench: sumTicks([process.pid], false),
      // The postmaster's cutime/cstime holds the CPU of backends that exited in between.
      postgres: sumTicks(pgPids, true),
      redis: sumTicks(redisPids, false),
    },
    machine: machineTicks(),
  };
}

export function cpuUsage(before: CpuSnapshot, after: CpuSnapshot, cores: number): CpuUsage {
  const wallS = (after.atMs - before.atMs) / 1000;
  const p = (k: Kind) => (wallS > 0 ? Math.max(0, after.ticks[k] - before.ticks[k]) / CLK_TCK / wallS * 100 : 0);
  const dTotal = after.machine.total - before.machine.total;
  const machinePct = dTotal > 0 ? ((after.machine.busy - before.machine.busy) / dTotal) * 100 * cores : 0;
  return { wallS, pct: { workers: p('workers'), bench: p('bench'), postgres: p('postgres'), redis: p('redis') }, machinePct, cores };
}

/** Resident set size from /proc/<pid>/status (VmRSS). */
export function rssBytes(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m?.[1] ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}
