/**
 * Preloaded into the benchmark's worker children (`--expose-gc --import tsx --import this`), never
 * into the service otherwise. On SIGUSR2 it collects garbage and prints one line on stderr:
 * `BENCH_MEM {"rss","heapUsed","heapTotal","external","elu"}` (elu: event-loop utilisation since the
 * previous report, 0..1). The service code is untouched.
 */
import { performance } from 'node:perf_hooks';

let last = performance.eventLoopUtilization();

process.on('SIGUSR2', () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  const now = performance.eventLoopUtilization();
  const elu = performance.eventLoopUtilization(now, last).utilization;
  last = now;
  if (gc) {
    gc();
    gc();
  }
  const m = process.memoryUsage();
  process.stderr.write(`BENCH_MEM ${JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, elu })}\n`);
});
