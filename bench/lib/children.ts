import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BenchTimeout, withTimeout } from './util.js';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const preload = fileURLToPath(new URL('./worker-preload.ts', import.meta.url));
const baselineEntry = fileURLToPath(new URL('./baseline-worker.ts', import.meta.url));
const ceilingEntry = fileURLToPath(new URL('./smtp-ceiling.ts', import.meta.url));

export interface MemReport { rss: number; heapUsed: number; heapTotal: number; external: number; elu: number }

export interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
  /** The last lines of its output, for error messages. */
  tail(): string;
  alive(): boolean;
  /** Asks the child (worker preload) for a GC + memory report. */
  memReport(timeoutMs?: number): Promise<MemReport>;
  stop(timeoutMs?: number): Promise<void>;
}

const live = new Set<Child>();

function track(name: string, proc: ChildProcess, readyPattern: RegExp, readyTimeoutMs: number): Promise<Child> {
  const lines: string[] = [];
  const memWaiters: ((m: MemReport) => void)[] = [];
  let exited = false;
  let onReady: (() => void) | null = null;
  let buf = '';
  const onLine = (line: string) => {
    if (line.startsWith('BENCH_MEM ')) {
      const m = JSON.parse(line.slice('BENCH_MEM '.length)) as MemReport;
      memWaiters.shift()?.(m);
      return;
    }
    lines.push(line);
    if (lines.length > 60) lines.shift();
    if (onReady && readyPattern.test(line)) onReady();
  };
  const onData = (b: Buffer) => {
    buf += b.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  };
  proc.stdout?.on('data', onData);
  proc.stderr?.on('data', onData);
  const exitP = new Promise<void>((resolve) => proc.once('exit', () => { exited = true; resolve(); }));
  const child: Child = {
    name,
    proc,
    pid: proc.pid ?? -1,
    tail: () => lines.join('\n'),
    alive: () => !exited,
    memReport(timeoutMs = 10_000) {
      const p = new Promise<MemReport>((resolve) => memWaiters.push(resolve));
      proc.kill('SIGUSR2');
      return withTimeout(`memory report of ${name}`, p, timeoutMs);
    },
    async stop(timeoutMs = 15_000) {
      live.delete(child);
      if (exited || proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
      t.unref();
      await exitP;
      clearTimeout(t);
    },
  };
  live.add(child);
  return new Promise<Child>((resolve, reject) => {
    const timer = setTimeout(() => {
      onReady = null;
      void child.stop(2000);
      reject(new BenchTimeout(`${name} did not become ready within ${readyTimeoutMs / 1000} s:\n${child.tail()}`));
    }, readyTimeoutMs);
    onReady = () => {
      onReady = null;
      clearTimeout(timer);
      resolve(child);
    };
    void exitP.then(() => {
      if (!onReady) return;
      onReady = null;
      clearTimeout(timer);
      live.delete(child);
      reject(new Error(`${name} exited (code ${proc.exitCode}, signal ${proc.signalCode}) before it was ready:\n${child.tail()}`));
    });
  });
}

function childEnv(env: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env };
}

/** Extra Node flags for worker children, e.g. `BENCH_WORKER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"` to profile them. */
const workerNodeArgs = (process.env.BENCH_WORKER_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);

/** One service process with ROLES=worker (`src/main.ts`), with the memory-report preload. */
export function spawnWorker(name: string, env: Record<string, string>, readyTimeoutMs = 90_000): Promise<Child> {
  const proc = spawn(process.execPath, [...workerNodeArgs, '--expose-gc', '--import', 'tsx', '--import', preload, 'src/main.ts'], {
    cwd: repoRoot,
    env: childEnv({ ...env, ROLES: 'worker', LOG_LEVEL: 'info', MIGRATE_ON_START: 'false' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return track(name, proc, /"msg":"partner access pipeline started"/, readyTimeoutMs);
}

/** The bare BullMQ + Postgres baseline worker (bench/lib/baseline-worker.ts). */
export function spawnBaseline(env: Record<string, string>, readyTimeoutMs = 60_000): Promise<Child> {
  const proc = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', '--import', preload, baselineEntry], {
    cwd: repoRoot,
    env: childEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return track('baseline worker', proc, /BASELINE_READY/, readyTimeoutMs);
}

/** The bare SMTP ceiling sender (bench/lib/smtp-ceiling.ts); resolves once its pool is warm and it starts sending. */
export function spawnCeiling(env: Record<string, string>, readyTimeoutMs = 60_000): Promise<Child> {
  const proc = spawn(process.execPath, ['--import', 'tsx', ceilingEntry], {
    cwd: repoRoot,
    env: childEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return track('SMTP ceiling sender', proc, /CEILING_READY/, readyTimeoutMs);
}

/** Stops every child still running (exit, failure, SIGINT). */
export async function stopAllChildren(): Promise<void> {
  await Promise.all([...live].map((c) => c.stop(10_000).catch(() => undefined)));
}

/** Last resort on process exit: no await possible, just kill. */
export function killAllChildrenSync(): void {
  for (const c of live) {
    try {
      c.proc.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
}
