/** Small helpers shared by the benchmark modules. */

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class BenchTimeout extends Error {
  override name = 'BenchTimeout';
}

/**
 * Polls `probe` until it returns a value other than undefined, at most `timeoutMs`. On timeout,
 * throws a BenchTimeout naming what was awaited and the last progress reported by `describe`.
 */
export async function pollUntil<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  opts: { timeoutMs: number; intervalMs?: number; describe?: () => string },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) {
      throw new BenchTimeout(`timed out after ${(opts.timeoutMs / 1000).toFixed(0)} s waiting for ${what}${opts.describe ? ` (last: ${opts.describe()})` : ''}`);
    }
    await sleep(opts.intervalMs ?? 100);
  }
}

/** Races a promise against a timer; the timer never keeps the process alive. */
export async function withTimeout<T>(what: string, p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BenchTimeout(`timed out after ${(ms / 1000).toFixed(0)} s: ${what}`)), ms);
    timer.unref();
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    if (timer) clearTimeout(timer);
  }
}

export const seconds = (fromMs: number, toMs = performance.now()) => (toMs - fromMs) / 1000;

export function fmtNum(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return String(n);
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function fmtBytes(n: number): string {
  if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

