import type { CpuUsage } from './procstat.js';
import type { WaitProfile } from './pgwait.js';
import { intakeCapacity, type BaselineResult, type CascadeBaselineResult, type CascadeResult, type E2eResult, type IntakeResult, type IntakeResults, type Measured, type MemoryResult, type RecalcResult, type SelectResult } from './scenarios.js';
import type { CeilingResult, StreamResult } from './stream.js';
import { fmtBytes, fmtNum } from './util.js';

export interface Results {
  meta: {
    startedAt: string;
    finishedAt?: string;
    totalS?: number;
    quick: boolean;
    only: string[] | null;
    node: string;
    cores: number;
    concurrency: number;
    gitCommit: string | null;
    database: string;
    queuePrefix: string;
    sizes: unknown;
  };
  intake?: IntakeResults;
  e2eBaseline?: Measured<BaselineResult>;
  e2e1?: Measured<E2eResult>;
  e2e2?: Measured<E2eResult>;
  cascade?: Measured<CascadeResult>;
  cascadeBaseline?: Measured<CascadeBaselineResult>;
  recalc?: Measured<RecalcResult>;
  recalcBaseline?: Measured<SelectResult>;
  memory?: Measured<MemoryResult>;
  stream1?: Measured<StreamResult>;
  stream100?: Measured<StreamResult>;
  smtpCeiling?: Measured<CeilingResult>;
  errors: { scenario: string; message: string }[];
  rows?: Row[];
}

export interface Row {
  scenario: string;
  figure: string;
  baseline: string;
  ratio: string;
  target: string;
  met: 'yes' | 'no' | 'n/a';
  ratioValue: number | null;
}

const s = (x: number) => `${x < 10 ? x.toFixed(2) : x.toFixed(1)} s`;
const r2 = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '∞');
const growth = (a: number, b: number) => (a > 0 ? ((b - a) / a) * 100 : 0);

export function buildRows(res: Results): Row[] {
  const rows: Row[] = [];
  const failed = (scenario: string) => res.errors.find((e) => e.scenario === scenario);
  const errRow = (scenario: string, target: string, key: string): Row | null => {
    const e = failed(key);
    return e ? { scenario, figure: `ERROR: ${e.message.split('\n')[0]?.slice(0, 90)}`, baseline: '', ratio: '', target, met: 'n/a', ratioValue: null } : null;
  };

  const e2e = res.e2e1?.value;
  const base = res.e2eBaseline?.value;
  if (e2e && base) {
    const ratio = e2e.pairsPerS / base.jobsPerS;
    rows.push({
      scenario: `end to end (${fmtNum(e2e.pairs)} pairs, 1 worker process)`,
      figure: `${fmtNum(e2e.pairsPerS)} pairs/s (${s(e2e.seconds)}; items done ${s(e2e.itemsDoneS)})`,
      baseline: `bare BullMQ+PG tx/job, c=${base.concurrency}: ${fmtNum(base.jobsPerS)} jobs/s`,
      ratio: r2(ratio),
      target: '≥ 0.8×',
      met: ratio >= 0.8 ? 'yes' : 'no',
      ratioValue: ratio,
    });
  } else {
    rows.push(errRow('end to end', '≥ 0.8×', failed('e2e-baseline') ? 'e2e-baseline' : 'e2e-1') ?? { scenario: 'end to end', figure: 'not run', baseline: '', ratio: '', target: '≥ 0.8×', met: 'n/a', ratioValue: null });
  }

  const ceil = res.smtpCeiling?.value;
  if (e2e && ceil) {
    const ratio = e2e.emails / e2e.seconds / ceil.perS;
    rows.push({
      scenario: `end to end vs bare SMTP (${fmtNum(e2e.emails)} emails)`,
      figure: `${fmtNum(e2e.emails / e2e.seconds)} emails/s (with their pairs applied)`,
      baseline: `nodemailer pool (${ceil.connections} connections) to the same sink, no queue, no DB: ${fmtNum(ceil.perS)} emails/s`,
      ratio: r2(ratio),
      target: 'report',
      met: 'n/a',
      ratioValue: ratio,
    });
  } else {
    rows.push(errRow('end to end vs bare SMTP', 'report', 'smtp-ceiling') ?? { scenario: 'end to end vs bare SMTP', figure: ceil ? `ceiling ${fmtNum(ceil.perS)} emails/s` : 'not run', baseline: '', ratio: '', target: 'report', met: 'n/a', ratioValue: null });
  }

  for (const [key, label, value] of [['stream-1', 'stream-1', res.stream1], ['stream-100', 'stream-100', res.stream100]] as const) {
    const st = value?.value;
    if (st && e2e) {
      const ratio = st.perS / e2e.pairsPerS;
      const how = st.extrapolated
        ? `~${fmtNum(st.perS)} commands/s (extrapolated: ${fmtNum(st.completed)} settled in ${s(st.observedS)})`
        : `${fmtNum(st.perS)} commands/s (${s(st.seconds)}; applied at ${s(st.appliedS)}; ${s(st.fromSpawnS)} from the worker's spawn)`;
      rows.push({
        scenario: `${label} (${fmtNum(st.commands)} single-pair access.assign, ${st.partners === 1 ? 'one partner' : `${st.partners} partners`}, one request each, then 1 worker)`,
        figure: how,
        baseline: `end to end: ${fmtNum(e2e.pairsPerS)} pairs/s`,
        ratio: r2(ratio),
        target: '≥ 0.5×',
        met: ratio >= 0.5 ? 'yes' : 'no',
        ratioValue: ratio,
      });
    } else {
      rows.push(errRow(label, '≥ 0.5×', key) ?? { scenario: label, figure: st ? `${fmtNum(st.perS)} commands/s` : 'not run', baseline: e2e ? '' : 'end to end: not available', ratio: '', target: '≥ 0.5×', met: 'n/a', ratioValue: null });
    }
  }

  // The single endpoint: its capacity (the best level) against the target, then each level as measured.
  const levels = res.intake?.single ?? [];
  const cap = intakeCapacity(levels)?.value;
  const tried = levels.map((l) => l.value.connections).join('/');
  const intakeRow = (label: string, it: IntakeResult | undefined, target: string, goal: number | null): Row => {
    if (!it || !e2e) {
      return errRow(label, target, 'intake') ?? { scenario: label, figure: it ? `${fmtNum(it.commandsPerS)} commands/s` : 'not run', baseline: 'end to end: not available', ratio: '', target, met: 'n/a', ratioValue: null };
    }
    const ratio = it.commandsPerS / e2e.pairsPerS;
    const extra = it.non2xx || it.errors ? `; ${it.non2xx} non-2xx, ${it.errors} errors` : '';
    return {
      scenario: label,
      figure: `${fmtNum(it.commandsPerS)} commands/s (${fmtNum(it.reqPerS)} req/s, p50 ${it.p50Ms} ms, p99 ${it.p99Ms} ms${extra})`,
      baseline: `end to end: ${fmtNum(e2e.pairsPerS)} pairs/s`,
      ratio: r2(ratio),
      target,
      met: goal === null ? 'n/a' : ratio >= goal ? 'yes' : 'no',
      ratioValue: ratio,
    };
  };
  rows.push(intakeRow(`intake, single endpoint: capacity (best of ${tried || '?'} connections${cap ? `: ${cap.connections}` : ''})`, cap, '≥ 2×', 2));
  for (const l of levels) rows.push(intakeRow(`intake, single endpoint, ${l.value.connections} connections`, l.value, 'report', null));
  const bt = res.intake?.batch.value;
  rows.push(intakeRow(`intake, :batch (${bt?.commandsPerRequest ?? 100}/request${bt ? `, ${bt.connections} connections` : ''})`, bt, '≥ 2×', 2));

  const c = res.cascade?.value;
  const cb = res.cascadeBaseline?.value;
  if (c && cb) {
    const ratio = cb.seconds / c.seconds;
    const bl = cb.extrapolated
      ? `${fmtNum(cb.commands)} access.revoke commands: ~${s(cb.seconds)} (extrapolated: ${fmtNum(cb.completed)} done in ${s(cb.observedS)})`
      : `${fmtNum(cb.commands)} access.revoke commands: ${s(cb.seconds)}`;
    rows.push({
      scenario: `cascade (employee.remove, ${fmtNum(c.accesses)} accesses)`,
      figure: `${s(c.seconds)} to all revoked`,
      baseline: bl,
      ratio: `${r2(ratio)} faster`,
      target: '≥ 20× faster',
      met: ratio >= 20 ? 'yes' : 'no',
      ratioValue: ratio,
    });
  } else {
    rows.push(errRow('cascade', '≥ 20× faster', failed('cascade') ? 'cascade' : 'cascade-baseline') ?? { scenario: 'cascade', figure: 'not run', baseline: '', ratio: '', target: '≥ 20× faster', met: 'n/a', ratioValue: null });
  }

  const rc = res.recalc?.value;
  const rb = res.recalcBaseline?.value;
  if (rc && rb) {
    const ratio = rc.seconds / rb.seconds;
    rows.push({
      scenario: `recalculation (${fmtNum(rc.partners)} partners, ${fmtNum(rc.clients)} clients, ${fmtNum(rc.sales)} sales)`,
      figure: `${s(rc.seconds)} (${fmtNum(rc.partners / rc.seconds)} partners/s)`,
      baseline: `one streaming SELECT of the facts (${fmtNum(rb.rows)} rows): ${s(rb.seconds)}`,
      ratio: r2(ratio),
      target: '≤ 1.5×',
      met: ratio <= 1.5 ? 'yes' : 'no',
      ratioValue: ratio,
    });
  } else {
    rows.push(errRow('recalculation', '≤ 1.5×', 'recalc') ?? { scenario: 'recalculation', figure: 'not run', baseline: '', ratio: '', target: '≤ 1.5×', met: 'n/a', ratioValue: null });
  }

  const m = res.memory?.value;
  if (m) {
    const jobs = `${fmtNum(m.jobs)} pair jobs after ${fmtNum(m.warmupJobs)} warm-up`;
    const g1 = growth(m.before.workerRss, m.after.workerRss);
    rows.push({
      scenario: `memory: worker RSS (${jobs})`,
      figure: `${fmtBytes(m.before.workerRss)} → ${fmtBytes(m.after.workerRss)} (heap after GC ${fmtBytes(m.before.workerHeapUsed)} → ${fmtBytes(m.after.workerHeapUsed)})`,
      baseline: 'itself, after warm-up',
      ratio: `${g1 >= 0 ? '+' : ''}${g1.toFixed(1)} %`,
      target: '< 5 %',
      met: g1 < 5 ? 'yes' : 'no',
      ratioValue: g1,
    });
    const g2 = growth(m.before.redisUsedMemory, m.after.redisUsedMemory);
    const g3 = growth(m.before.prefixBytes, m.after.prefixBytes);
    rows.push({
      scenario: 'memory: Redis used_memory (whole server)',
      figure: `${fmtBytes(m.before.redisUsedMemory)} → ${fmtBytes(m.after.redisUsedMemory)}; bench keys ${fmtNum(m.before.prefixKeys)} → ${fmtNum(m.after.prefixKeys)}, ${fmtBytes(m.before.prefixBytes)} → ${fmtBytes(m.after.prefixBytes)} (${g3 >= 0 ? '+' : ''}${g3.toFixed(1)} %)`,
      baseline: 'itself, after warm-up',
      ratio: `${g2 >= 0 ? '+' : ''}${g2.toFixed(1)} %`,
      target: '< 5 %',
      met: g2 < 5 ? 'yes' : 'no',
      ratioValue: g2,
    });
  } else {
    rows.push(errRow('memory', '< 5 %', 'memory') ?? { scenario: 'memory', figure: 'not run', baseline: '', ratio: '', target: '< 5 %', met: 'n/a', ratioValue: null });
  }
  return rows;
}

function table(header: string[], body: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

const cpuCells = (c: CpuUsage) => [
  `${c.wallS.toFixed(1)} s`,
  `${c.pct.workers.toFixed(0)} %`,
  `${c.pct.bench.toFixed(0)} %`,
  `${c.pct.postgres.toFixed(0)} %`,
  `${c.pct.redis.toFixed(0)} %`,
  `${c.machinePct.toFixed(0)} % of ${c.cores * 100} %`,
];

const waitCell = (w: WaitProfile) =>
  w.samples ? `${w.meanActive.toFixed(1)} busy: ${w.top.slice(0, 3).map((t) => `${t.what} ${(t.share * 100).toFixed(0)}%`).join(', ')}` : '';

export function render(res: Results): string {
  const rows = res.rows ?? buildRows(res);
  const out: string[] = [];
  out.push(table(['scenario', 'figure', 'baseline (same run)', 'ratio', 'target', 'met?'], rows.map((r) => [r.scenario, r.figure, r.baseline, r.ratio, r.target, r.met])));

  const e1 = res.e2e1?.value;
  const e2 = res.e2e2?.value;
  out.push('');
  if (e1 && e2) {
    out.push(`Scaling, end to end: 1 worker process ${fmtNum(e1.pairsPerS)} pairs/s → 2 worker processes ${fmtNum(e2.pairsPerS)} pairs/s (${r2(e2.pairsPerS / e1.pairsPerS)}; ${fmtNum(e2.pairs)} pairs each, concurrency ${res.meta.concurrency} per queue per process)`);
  } else {
    out.push(`Scaling, end to end: ${e1 ? `1 process ${fmtNum(e1.pairsPerS)} pairs/s` : 'not available'}, 2 processes: ${res.errors.find((e) => e.scenario === 'e2e-2')?.message.split('\n')[0] ?? 'not available'}`);
  }

  const cpuRows: string[][] = [];
  const add = (name: string, m?: Measured<unknown>) => {
    if (m) cpuRows.push([name, ...cpuCells(m.cpu), waitCell(m.waits)]);
  };
  for (const l of res.intake?.single ?? []) add(`intake single, ${l.value.connections} connections (0 workers)`, l);
  add('intake batch (0 workers)', res.intake?.batch);
  add('e2e baseline (bare worker)', res.e2eBaseline);
  add('end to end, 1 worker', res.e2e1);
  add('end to end, 2 workers', res.e2e2);
  add('SMTP ceiling (bare nodemailer pool)', res.smtpCeiling);
  add('stream-1, 1 worker', res.stream1);
  add('stream-100, 1 worker', res.stream100);
  add('cascade', res.cascade);
  add('cascade baseline', res.cascadeBaseline);
  add('recalculation', res.recalc);
  add('recalculation baseline (SELECT)', res.recalcBaseline);
  add('memory (measured part)', res.memory);
  out.push('');
  out.push('CPU per process kind (% of one core; /proc utime+stime over the scenario) and Postgres activity of the bench database (pg_stat_activity every 100 ms):');
  out.push(table(['scenario', 'wall', 'worker(s)', 'API/bench', 'postgres (all)', 'redis-server', 'machine busy', 'PG backends: mean busy, top waits'], cpuRows));
  const e1d = res.e2e1?.value;
  if (e1d) {
    out.push('');
    out.push(`End to end, where the time goes (1 worker): post ${e1d.postS.toFixed(2)} s, all pairs applied at ${e1d.itemsDoneS.toFixed(1)} s, last email sent at ${e1d.mailDoneS.toFixed(1)} s; SMTP sink: ${fmtNum(e1d.emails)} messages, ${fmtNum(e1d.distinctMessageIds)} distinct Message-IDs.`);
  }
  for (const [label, st] of [['stream-1', res.stream1?.value], ['stream-100', res.stream100?.value]] as const) {
    if (st) out.push(`${label}: posted one request each at ${fmtNum(st.postPerS)} commands/s (${st.postS.toFixed(1)} s, no worker running); ${fmtNum(st.completed)} settled, ${fmtNum(st.emails)} emails sent.`);
  }
  const m = res.memory?.value;
  if (m) {
    out.push(`Memory: ${fmtNum(m.jobs)} jobs in ${m.seconds.toFixed(1)} s (${fmtNum(m.jobsPerS)} jobs/s); worker event-loop utilisation during them ${(m.after.workerElu * 100).toFixed(0)} %.`);
  }
  if (res.errors.length) {
    out.push('');
    out.push('Errors:');
    for (const e of res.errors) out.push(`- ${e.scenario}: ${e.message}`);
  }
  out.push('');
  out.push('CPU of scenarios shorter than ~1 s is coarse (/proc counts 10 ms ticks). The memory figures are taken after a forced GC in the worker (bench/lib/worker-preload.ts).');
  out.push(`${res.meta.quick ? 'Quick run' : 'Full run'} on ${res.meta.cores} cores, Node ${res.meta.node}, total ${res.meta.totalS?.toFixed(1) ?? '?'} s. Postgres and machine CPU include anything else running on this machine.`);
  return out.join('\n');
}
