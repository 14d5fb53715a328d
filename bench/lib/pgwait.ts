import type pg from 'pg';

/**
 * Samples pg_stat_activity of the bench database every `intervalMs` while a scenario runs and
 * counts what the non-idle backends are doing: "CPU (statement…)" (running, no wait event: the first
 * characters of the statement), "Lock:transactionid"
 * (row lock waits), "IO:WALSync" (commit flush), "Client:ClientRead" (idle in transaction: waiting
 * for the Node process), ... Shares are of backend-samples.
 */
export interface WaitProfile {
  samples: number;
  /** Mean non-idle backends of the bench database per sample. */
  meanActive: number;
  top: { what: string; share: number }[];
}

export function startWaitSampler(pool: pg.Pool, dbName: string, intervalMs = 100): { stop(): Promise<WaitProfile> } {
  const counts = new Map<string, number>();
  let samples = 0;
  let backendSamples = 0;
  let stopped = false;
  let running: Promise<void> | null = null;
  const tick = () => {
    if (running || stopped) return;
    running = pool
      .query<{ what: string; n: string }>(
        `select case when state = 'idle in transaction' then 'Client:idle in transaction'
                     when wait_event_type = 'Lock' then 'Lock:' || wait_event || ' (' || left(regexp_replace(query, '[[:space:]]+', ' ', 'g'), 40) || '…)'
                     when wait_event_type is null then 'CPU (' || left(regexp_replace(query, '[[:space:]]+', ' ', 'g'), 60) || '…)'
                     else wait_event_type || ':' || wait_event end as what, count(*) as n
           from pg_stat_activity
          where datname = $1 and pid <> pg_backend_pid() and state is not null and state <> 'idle'
            and query not like '%pg_stat_activity%'
          group by 1`,
        [dbName],
      )
      .then((r) => {
        samples++;
        for (const row of r.rows) {
          const n = Number(row.n);
          backendSamples += n;
          counts.set(row.what, (counts.get(row.what) ?? 0) + n);
        }
      })
      .catch(() => undefined)
      .finally(() => {
        running = null;
      });
  };
  const timer = setInterval(tick, intervalMs);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
      const top = [...counts.entries()]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 5)
        .map(([what, n]) => ({ what, share: backendSamples ? n / backendSamples : 0 }));
      return { samples, meanActive: samples ? backendSamples / samples : 0, top };
    },
  };
}
