import { Batcher } from '../../src/workers/batcher.js';

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
