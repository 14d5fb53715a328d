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
