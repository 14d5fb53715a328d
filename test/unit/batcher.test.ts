import { Batcher, Coalescer } from '../../src/lib/batcher.js';

describe('Batcher', () => {
  it('when calls arrive together, then one run serves them and each gets its own result in order', async () => {
    const runs: number[][] = [];
    const b = new Batcher<number, number>(async (xs) => {
      runs.push(xs);
      return xs.map((x) => x * 10);
    }, 10);
    const results = await Promise.all([1, 2, 3].map((x) => b.submit(x)));
    expect(results).toEqual([10, 20, 30]);
    expect(runs).toEqual([[1, 2, 3]]);
  });

  it('when more calls than the maximum arrive, then they are split into runs of at most that size', async () => {
    const runs: number[][] = [];
    const b = new Batcher<number, number>(async (xs) => {
      runs.push(xs);
      return xs;
    }, 2);
    await Promise.all([1, 2, 3, 4, 5].map((x) => b.submit(x)));
    expect(runs).toEqual([[1, 2], [3, 4], [5]]);
  });

  it('when a run fails, then every call of that run fails and later calls still run', async () => {
    let fail = true;
    const b = new Batcher<number, number>(async (xs) => {
      if (fail) throw new Error('boom');
      return xs;
    }, 5);
    await expect(Promise.all([b.submit(1), b.submit(2)])).rejects.toThrow('boom');
    fail = false;
    await expect(b.submit(3)).resolves.toBe(3);
  });
});

describe('Coalescer (group commit)', () => {
  it('when a call finds a free slot, then it runs at once; calls arriving meanwhile are served together by the next run', async () => {
    const runs: number[][] = [];
    const gates: (() => void)[] = [];
    const c = new Coalescer<number, number>(async (xs) => {
      runs.push(xs);
      await new Promise<void>((r) => gates.push(r));
      return xs.map((x) => x + 100);
    }, { concurrency: 1, maxWeight: 10 });
    const first = c.submit(1);
    const rest = [2, 3, 4].map((x) => c.submit(x));
    expect(runs).toEqual([[1]]);
    gates.shift()!();
    expect(await first).toBe(101);
    await new Promise((r) => setImmediate(r));
    expect(runs).toEqual([[1], [2, 3, 4]]);
    gates.shift()!();
    expect(await Promise.all(rest)).toEqual([102, 103, 104]);
  });

  it('when results hold an Error, then only that call is rejected; when the run throws, every call of it is', async () => {
    const c = new Coalescer<number, number>(async (xs) => {
      if (xs.includes(0)) throw new Error('run failed');
      return xs.map((x) => (x < 0 ? new Error(`bad ${x}`) : x));
    }, { concurrency: 1, maxWeight: 10 });
    const [a, b, d] = await Promise.allSettled([c.submit(5), c.submit(-1), c.submit(6)]);
    expect(a).toEqual({ status: 'fulfilled', value: 5 });
    expect(b).toMatchObject({ status: 'rejected', reason: new Error('bad -1') });
    expect(d).toMatchObject({ status: 'fulfilled' });
    // A run of several calls that throws rejects each of them.
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => { release = r; });
    const blocking = new Coalescer<number, number>(async (xs) => {
      if (xs.includes(1)) {
        await gate;
        return xs;
      }
      throw new Error('run failed');
    }, { concurrency: 1, maxWeight: 10 });
    const first = blocking.submit(1);
    const together = [7, 8, 9].map((x) => blocking.submit(x));
    release();
    expect(await first).toBe(1);
    expect(await Promise.allSettled(together)).toEqual([7, 8, 9].map(() => ({ status: 'rejected', reason: new Error('run failed') })));
    await expect(c.submit(0)).rejects.toThrow('run failed');
  });

  it('when waiting calls weigh more than the maximum, then they are split into runs within it (a heavy call still runs alone)', async () => {
    const runs: number[][] = [];
    let release: () => void = () => undefined;
    const blocker = new Promise<void>((r) => { release = r; });
    const c = new Coalescer<number, number>(async (xs) => {
      runs.push(xs);
      if (runs.length === 1) await blocker;
      return xs;
    }, { concurrency: 1, maxWeight: 5, weigh: (x) => x });
    const all = [1, 2, 2, 3, 9, 1].map((x) => c.submit(x));
    release();
    await Promise.all(all);
    expect(runs).toEqual([[1], [2, 2], [3], [9], [1]]);
  });
});
