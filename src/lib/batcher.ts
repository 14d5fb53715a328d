/**
 * Gathers the calls that arrive together (up to `max`, or within `windowMs`) and serves them with one
 * call of `run`, which returns one result per item in order. A failure of `run` fails every call of
 * that batch. Used so that concurrent jobs share a transaction or a query.
 */
export class Batcher<T, R> {
  private pending: { item: T; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly run: (items: T[]) => Promise<R[]>, private readonly max: number, private readonly windowMs = 2) {}

  submit(item: T): Promise<R> {
    return new Promise((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      if (this.pending.length >= this.max) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.windowMs);
    });
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.pending.splice(0, this.pending.length);
    if (!batch.length) return;
    this.run(batch.map((b) => b.item)).then(
      (results) => batch.forEach((b, i) => b.resolve(results[i]!)),
      (err) => batch.forEach((b) => b.reject(err)),
    );
  }
}

/**
 * Group commit: calls that arrive while `concurrency` runs are in flight wait and are served
 * together by the next run (at most `maxWeight` in all, by `weigh`); a call that finds a free slot
 * runs at once, so nothing waits for a timer. `run` returns one result per item, in order (a result
 * may be an Error, which rejects that call only); a throw rejects every call of the run.
 */
export class Coalescer<T, R> {
  private pending: { item: T; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
  private running = 0;

  constructor(
    private readonly run: (items: T[]) => Promise<(R | Error)[]>,
    private readonly opts: { concurrency: number; maxWeight: number; weigh?: (item: T) => number },
  ) {}

  submit(item: T): Promise<R> {
    return new Promise((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < this.opts.concurrency && this.pending.length) {
      let weight = 0;
      let n = 0;
      while (n < this.pending.length) {
        const w = this.opts.weigh?.(this.pending[n]!.item) ?? 1;
        if (n > 0 && weight + w > this.opts.maxWeight) break;
        weight += w;
        n++;
      }
      const batch = this.pending.splice(0, n);
      this.running++;
      this.run(batch.map((b) => b.item))
        .then(
          (results) => batch.forEach((b, i) => (results[i] instanceof Error ? b.reject(results[i]) : b.resolve(results[i] as R))),
          (err) => batch.forEach((b) => b.reject(err)),
        )
        .finally(() => {
          this.running--;
          this.pump();
        });
    }
  }
}
