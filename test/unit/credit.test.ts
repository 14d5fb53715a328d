import fc from 'fast-check';
import {
  addMonths,
  computeManagedMrr,
  computeSoldCredit,
  computeTier,
  countUpcomingRenewals,
  firstMonthAffectingTotal,
  monthRange,
  soldTierCreditAt,
  type Churn,
  type ManagedClient,
  type RenewableClient,
  type Sale,
  type SoldCreditMonth,
  type SoldCreditReport,
} from '../../src/domain/credit.js';
import { defaultTierThresholds } from '../../config/tiers.js';

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

let saleSeq = 0;
function sale(clientHubId: string, closedOn: string, mrr: number, saleId?: string): Sale {
  saleSeq++;
  return { saleId: saleId ?? `s${String(saleSeq).padStart(4, '0')}`, clientHubId, closedOn, mrr };
}
function churn(clientHubId: string, on: string): Churn {
  return { clientHubId, on };
}
type Flows = Partial<Omit<SoldCreditMonth, 'month'>>;
function row(month: string, flows: Flows = {}): SoldCreditMonth {
  return { month, new: 0, increased: 0, expired: 0, decreased: 0, total: 0, ...flows };
}
function rowOf(report: SoldCreditReport, month: string): SoldCreditMonth {
  const r = report.months.find((m) => m.month === month);
  if (!r) throw new Error(`no row for ${month}`);
  return r;
}
const cents = (x: number): number => Math.round(x * 100);

// ---------------------------------------------------------------------------
// months
// ---------------------------------------------------------------------------

describe('addMonths / monthRange', () => {
  it.each([
    ['2025-11', 3, '2026-02'],
    ['2025-01', -1, '2024-12'],
    ['2025-06', 0, '2025-06'],
    ['2025-01', 12, '2026-01'],
    ['2025-03', -27, '2022-12'],
  ])('when adding to %s %i months, then the month is %s', (month, n, expected) => {
    expect(addMonths(month, n)).toBe(expected);
  });

  it('when the range spans a year boundary, then every month is listed inclusive', () => {
    expect(monthRange('2025-11', '2026-02')).toEqual(['2025-11', '2025-12', '2026-01', '2026-02']);
  });

  it('when from equals to, then the range is that single month', () => {
    expect(monthRange('2025-05', '2025-05')).toEqual(['2025-05']);
  });

  it('when from is after to, then the range is empty', () => {
    expect(monthRange('2025-06', '2025-05')).toEqual([]);
  });

  it.each(['2025-13', '2025-00', '2025-1', '25-01', '2025-01-01', ''])(
    'when the month is malformed (%p), then it throws a RangeError',
    (bad) => {
      expect(() => monthRange(bad, '2025-01')).toThrow(RangeError);
      expect(() => addMonths(bad, 1)).toThrow(RangeError);
    },
  );

  it('when n is not an integer, then addMonths throws', () => {
    expect(() => addMonths('2025-01', 1.5)).toThrow(RangeError);
  });

  it('when adding n then -n months, then the month is unchanged and the range has |n|+1 months', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2000, max: 2100 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: -300, max: 300 }), (y, m, n) => {
        const month = `${y}-${String(m).padStart(2, '0')}`;
        const other = addMonths(month, n);
        expect(addMonths(other, -n)).toBe(month);
        const range = n >= 0 ? monthRange(month, other) : monthRange(other, month);
        expect(range).toHaveLength(Math.abs(n) + 1);
        range.forEach((mm, i) => expect(mm).toBe(addMonths(range[0]!, i)));
      }),
    );
  });
});

// ---------------------------------------------------------------------------
// managed MRR
// ---------------------------------------------------------------------------

describe('computeManagedMrr', () => {
  const c = (hubId: string, status: ManagedClient['status'], mrr: number, hasTaggedActiveAccess: boolean): ManagedClient => ({
    hubId,
    status,
    mrr,
    hasTaggedActiveAccess,
  });

  it.each<[string, ManagedClient[], number]>([
    ['there are no clients', [], 0],
    ['one active client has a tagged active access', [c('h1', 'active', 100, true)], 100],
    ['the client is terminated although tagged', [c('h1', 'terminated', 100, true)], 0],
    ['the active client has no tagged active access', [c('h1', 'active', 100, false)], 0],
    [
      'clients are mixed',
      [c('h1', 'active', 100, true), c('h2', 'active', 250.5, true), c('h3', 'terminated', 999, true), c('h4', 'active', 777, false)],
      350.5,
    ],
    ['amounts are fractional', [c('h1', 'active', 0.1, true), c('h2', 'active', 0.2, true)], 0.3],
    ['the same hubId appears twice', [c('h1', 'active', 100, true), c('h1', 'active', 100, true)], 100],
  ])('when %s, then managed MRR is %p', (_label, clients, expected) => {
    expect(computeManagedMrr(clients)).toBe(expected);
  });

  it('when any client set is given, then the result is the sum over qualifying clients only', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(
          fc.record({
            hubId: fc.string({ minLength: 1, maxLength: 6 }),
            status: fc.constantFrom<ManagedClient['status']>('active', 'terminated'),
            mrr: fc.integer({ min: 0, max: 10_000_00 }).map((x) => x / 100),
            hasTaggedActiveAccess: fc.boolean(),
          }),
          { selector: (x) => x.hubId, maxLength: 30 },
        ),
        (clients) => {
          const expected = clients
            .filter((x) => x.status === 'active' && x.hasTaggedActiveAccess)
            .reduce((sum, x) => sum + cents(x.mrr), 0);
          expect(cents(computeManagedMrr(clients))).toBe(expected);
        },
      ),
    );
  });
});

// ---------------------------------------------------------------------------
// sold tier credit: hand-worked examples
// ---------------------------------------------------------------------------

describe('computeSoldCredit — hand-worked examples', () => {
  it('when a client buys for the first time and then again, then the first sale is new and the later one increased', () => {
    const report = computeSoldCredit(
      [sale('c1', '2025-01-10', 100), sale('c1', '2025-03-05', 50)],
      [],
      { from: '2025-01', to: '2025-03' },
    );
    expect(report.months).toEqual([
      row('2025-01', { new: 100, total: 100 }),
      row('2025-02', { total: 100 }),
      row('2025-03', { increased: 50, total: 150 }),
    ]);
  });

  it('when each client makes its first sale, then each first sale is new', () => {
    const report = computeSoldCredit(
      [sale('c1', '2025-01-10', 100), sale('c2', '2025-01-20', 40), sale('c1', '2025-01-25', 10)],
      [],
      { from: '2025-01', to: '2025-01' },
    );
    expect(report.months).toEqual([row('2025-01', { new: 140, increased: 10, total: 150 })]);
  });

  it('when a downgrade happens, then it eats the newest live credit first and the partly eaten lot ages out with its remainder', () => {
    const report = computeSoldCredit(
      [sale('c1', '2025-01-10', 100), sale('c1', '2025-02-10', 50), sale('c1', '2025-03-10', -80)],
      [],
      { from: '2025-01', to: '2026-02' },
    );
    expect(rowOf(report, '2025-03')).toEqual(row('2025-03', { decreased: 80, total: 70 }));
    // Jan lot (100 - 30 = 70 left) ages out in 2026-01; Feb lot was fully eaten, nothing ages out in 2026-02.
    expect(rowOf(report, '2026-01')).toEqual(row('2026-01', { expired: 70, total: 0 }));
    expect(rowOf(report, '2026-02')).toEqual(row('2026-02', { total: 0 }));
  });

  it('when the newest lot is eaten by a downgrade, then the older lot keeps its own expiry', () => {
    const report = computeSoldCredit(
      [sale('c1', '2025-01-10', 100), sale('c1', '2025-02-10', 50), sale('c1', '2025-03-10', -30)],
      [],
      { from: '2026-01', to: '2026-02' },
    );
    // Feb lot is left with 20, Jan lot untouched.
    expect(report.months).toEqual([row('2026-01', { expired: 100, total: 20 }), row('2026-02', { expired: 20, total: 0 })]);
  });

  it.each<[string, Sale[], Flows]>([
    ['the downgrade exceeds the live credit', [sale('c1', '2025-01-10', 100), sale('c1', '2025-02-10', -250)], { decreased: 100, total: 0 }],
    ['the client has no live credit', [sale('c1', '2025-02-10', -250)], { decreased: 0, total: 0 }],
    [
      'another client has live credit',
      [sale('c2', '2025-01-10', 100), sale('c1', '2025-02-10', -250)],
      { decreased: 0, total: 100 },
    ],
  ])('when %s, then the decrease is capped at what is actually removed', (_label, sales, flows) => {
    const report = computeSoldCredit(sales, [], { from: '2025-02', to: '2025-02' });
    expect(report.months).toEqual([row('2025-02', flows)]);
  });

  it('when a sale and a downgrade share a day, then the lower saleId is applied first', () => {
    const upFirst = computeSoldCredit(
      [sale('c1', '2025-01-10', -30, 'b'), sale('c1', '2025-01-10', 100, 'a')],
      [],
      { from: '2025-01', to: '2025-01' },
    );
    expect(upFirst.months).toEqual([row('2025-01', { new: 100, decreased: 30, total: 70 })]);

    const downFirst = computeSoldCredit(
      [sale('c1', '2025-01-10', 100, 'b'), sale('c1', '2025-01-10', -30, 'a')],
      [],
      { from: '2025-01', to: '2025-01' },
    );
    expect(downFirst.months).toEqual([row('2025-01', { new: 100, decreased: 0, total: 100 })]);
  });

  it('when two positive sales share a day, then the lower saleId is the new one', () => {
    const report = computeSoldCredit(
      [sale('c1', '2025-01-10', 30, 'b'), sale('c1', '2025-01-10', 100, 'a')],
      [],
      { from: '2025-01', to: '2025-01' },
    );
    expect(report.months).toEqual([row('2025-01', { new: 100, increased: 30, total: 130 })]);
  });

  it('when a sale closed 2025-01-15, then it is live Jan..Dec 2025 and expires in 2026-01', () => {
    const report = computeSoldCredit([sale('c1', '2025-01-15', 100)], [], { from: '2025-01', to: '2026-02' });
    expect(report.months).toHaveLength(14);
    for (const m of monthRange('2025-01', '2025-12')) expect(rowOf(report, m).total).toBe(100);
    expect(rowOf(report, '2025-12')).toEqual(row('2025-12', { total: 100 }));
    expect(rowOf(report, '2026-01')).toEqual(row('2026-01', { expired: 100, total: 0 }));
    expect(rowOf(report, '2026-02')).toEqual(row('2026-02'));
  });

  it('when a new sale closes in the month an older lot ages out, then ageing-out is applied first', () => {
    const report = computeSoldCredit(
      [sale('c1', '2025-01-15', 100), sale('c1', '2026-01-01', 40), sale('c1', '2026-01-02', -500)],
      [],
      { from: '2026-01', to: '2026-01' },
    );
    // 100 ages out first; the downgrade only finds the 40 from 2026-01-01.
    expect(report.months).toEqual([row('2026-01', { increased: 40, expired: 100, decreased: 40, total: 0 })]);
  });

  it('when a client churns, then all its live credit expires in the churn month and other clients keep theirs', () => {
    const report = computeSoldCredit(
      [sale('c1', '2025-01-10', 100), sale('c1', '2025-02-10', 50), sale('c2', '2025-02-01', 30)],
      [churn('c1', '2025-03-01')],
      { from: '2025-02', to: '2025-04' },
    );
    expect(report.months).toEqual([
      row('2025-02', { increased: 50, new: 30, total: 180 }),
      row('2025-03', { expired: 150, total: 30 }),
      row('2025-04', { total: 30 }),
    ]);
    // churned lots do not age out a second time
    expect(rowOf(computeSoldCredit([sale('c1', '2025-01-10', 100)], [churn('c1', '2025-03-01')], { from: '2026-01', to: '2026-01' }), '2026-01')).toEqual(
      row('2026-01'),
    );
  });

  it('when a client buys again after a churn, then that sale is new and the next one increased', () => {
    const report = computeSoldCredit(
      [sale('c1', '2025-01-10', 100), sale('c1', '2025-05-10', 40), sale('c1', '2025-06-10', 10)],
      [churn('c1', '2025-03-01')],
      { from: '2025-05', to: '2025-06' },
    );
    expect(report.months).toEqual([row('2025-05', { new: 40, total: 40 }), row('2025-06', { increased: 10, total: 50 })]);
  });

  it('when a sale closes in the churn month after the churn day, then it is processed before the churn and rejected by it', () => {
    const report = computeSoldCredit(
      [sale('c1', '2025-01-10', 100), sale('c1', '2025-03-20', 10), sale('c1', '2025-04-10', 5)],
      [churn('c1', '2025-03-05')],
      { from: '2025-03', to: '2025-04' },
    );
    expect(report.months).toEqual([row('2025-03', { increased: 10, expired: 110, total: 0 }), row('2025-04', { new: 5, total: 5 })]);
  });

  it('when a client churns with no live credit, then it expires 0 but its next sale is still new', () => {
    const report = computeSoldCredit(
      [sale('c1', '2024-01-10', 100), sale('c1', '2025-04-10', 50)],
      [churn('c1', '2025-03-01')],
      { from: '2025-03', to: '2025-04' },
    );
    expect(report.months).toEqual([row('2025-03'), row('2025-04', { new: 50, total: 50 })]);
  });

  it('when the earlier credit merely aged out (no churn), then the next sale is increased, not new', () => {
    const report = computeSoldCredit([sale('c1', '2024-01-10', 100), sale('c1', '2025-04-10', 50)], [], {
      from: '2025-04',
      to: '2025-04',
    });
    expect(report.months).toEqual([row('2025-04', { increased: 50, total: 50 })]);
  });

  it('when a sale has mrr 0 (or under half a cent), then it does nothing, not even make the next sale increased', () => {
    const report = computeSoldCredit(
      [sale('c1', '2025-01-10', 0), sale('c1', '2025-01-11', 0.004), sale('c1', '2025-02-10', 70)],
      [],
      { from: '2025-01', to: '2025-02' },
    );
    expect(report.months).toEqual([row('2025-01'), row('2025-02', { new: 70, total: 70 })]);
  });

  it('when months have no activity, then they still appear with zero flows', () => {
    const report = computeSoldCredit([sale('c1', '2025-01-10', 100)], [], { from: '2025-01', to: '2025-06' });
    expect(report.months.map((m) => m.month)).toEqual(monthRange('2025-01', '2025-06'));
    expect(report.months.slice(1)).toEqual(monthRange('2025-02', '2025-06').map((m) => row(m, { total: 100 })));
  });

  it('when there are no facts at all, then every month of the range is present with zeros', () => {
    expect(computeSoldCredit([], [], { from: '2025-11', to: '2026-01' }).months).toEqual([row('2025-11'), row('2025-12'), row('2026-01')]);
  });

  it('when sales closed before from, then their live credit is carried into the first month', () => {
    const report = computeSoldCredit(
      [sale('c1', '2024-06-10', 100), sale('c1', '2024-09-10', -20), sale('c2', '2023-01-01', 999)],
      [],
      { from: '2025-01', to: '2025-06' },
    );
    expect(rowOf(report, '2025-01')).toEqual(row('2025-01', { total: 80 }));
    expect(rowOf(report, '2025-06')).toEqual(row('2025-06', { expired: 80, total: 0 }));
  });

  it('when facts are after to, then they are ignored', () => {
    const report = computeSoldCredit([sale('c1', '2025-01-10', 100), sale('c1', '2025-03-10', -100)], [churn('c1', '2025-04-01')], {
      from: '2025-01',
      to: '2025-02',
    });
    expect(report.months).toEqual([row('2025-01', { new: 100, total: 100 }), row('2025-02', { total: 100 })]);
  });

  it('when from is after to, then the report is empty', () => {
    expect(computeSoldCredit([sale('c1', '2025-01-10', 100)], [], { from: '2025-03', to: '2025-02' }).months).toEqual([]);
  });

  it('when amounts are fractional, then they are summed in cents and rounded to 2 decimals', () => {
    const report = computeSoldCredit([sale('c1', '2025-01-10', 0.1), sale('c1', '2025-01-11', 0.2), sale('c1', '2025-01-12', 10.006)], [], {
      from: '2025-01',
      to: '2025-01',
    });
    expect(report.months).toEqual([row('2025-01', { new: 0.1, increased: 10.21, total: 10.31 })]);
  });

  it.each<[string, () => unknown]>([
    ['a closedOn is not a calendar date', () => computeSoldCredit([sale('c1', '2025-02-30', 1)], [], { from: '2025-01', to: '2025-02' })],
    ['a churn date is malformed', () => computeSoldCredit([], [churn('c1', '2025/02/01')], { from: '2025-01', to: '2025-02' })],
    ['an mrr is not finite', () => computeSoldCredit([sale('c1', '2025-02-01', Number.NaN)], [], { from: '2025-01', to: '2025-02' })],
    ['the range is malformed', () => computeSoldCredit([], [], { from: '2025-1', to: '2025-02' })],
  ])('when %s, then it throws a RangeError', (_label, run) => {
    expect(run).toThrow(RangeError);
  });
});

describe('soldTierCreditAt', () => {
  const report = computeSoldCredit([sale('c1', '2025-01-10', 100), sale('c1', '2025-02-10', 25)], [], { from: '2025-01', to: '2025-03' });

  it('when the month is in the report, then it returns that month total', () => {
    expect(soldTierCreditAt(report, '2025-01')).toBe(100);
    expect(soldTierCreditAt(report, '2025-03')).toBe(125);
  });

  it('when the month is outside the report, then it throws a RangeError', () => {
    expect(() => soldTierCreditAt(report, '2025-04')).toThrow(RangeError);
    expect(() => soldTierCreditAt(report, '2024-12')).toThrow(RangeError);
  });
});

// ---------------------------------------------------------------------------
// sold tier credit: properties
// ---------------------------------------------------------------------------

const DAY_MS = 86_400_000;
const BASE = Date.UTC(2023, 0, 1);
const dateArb = fc.integer({ min: 0, max: 4 * 365 }).map((d) => new Date(BASE + d * DAY_MS).toISOString().slice(0, 10));
const clientArb = fc.constantFrom('c1', 'c2', 'c3');
const mrrArb = fc.oneof(
  { weight: 1, arbitrary: fc.constant(0) },
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 5_000_00 }).map((c) => c / 100) },
  { weight: 3, arbitrary: fc.integer({ min: -3_000_00, max: -1 }).map((c) => c / 100) },
);
const saleArb: fc.Arbitrary<Sale> = fc.record({
  saleId: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f'), // few ids: plenty of same-day ties
  clientHubId: clientArb,
  closedOn: dateArb,
  mrr: mrrArb,
});
const positiveSaleArb: fc.Arbitrary<Sale> = fc.record({
  saleId: fc.constantFrom('a', 'b', 'c', 'd'),
  clientHubId: clientArb,
  closedOn: dateArb,
  mrr: fc.integer({ min: 1, max: 5_000_00 }).map((c) => c / 100),
});
const churnArb: fc.Arbitrary<Churn> = fc.record({ clientHubId: clientArb, on: dateArb });
const rangeArb = fc
  .tuple(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 30 }))
  .map(([start, len]) => ({ from: addMonths('2022-07', start), to: addMonths('2022-07', start + len) }));
const factsArb = fc.record({
  sales: fc.array(saleArb, { maxLength: 40 }),
  churns: fc.array(churnArb, { maxLength: 6 }),
  range: rangeArb,
});

const FLOW_KEYS = ['new', 'increased', 'expired', 'decreased', 'total'] as const;

describe('computeSoldCredit — properties', () => {
  it('when facts are random, then every month satisfies total = previous + new + increased − decreased − expired', () => {
    fc.assert(
      fc.property(factsArb, ({ sales, churns, range }) => {
        const report = computeSoldCredit(sales, churns, range);
        const before = computeSoldCredit(sales, churns, { from: addMonths(range.from, -1), to: range.from });
        let previous = cents(before.months[0]!.total);
        for (const m of report.months) {
          expect(cents(m.total)).toBe(previous + cents(m.new) + cents(m.increased) - cents(m.decreased) - cents(m.expired));
          previous = cents(m.total);
        }
      }),
    );
  });

  it('when facts are random, then the report lists exactly the range months and nothing is negative or beyond cents', () => {
    fc.assert(
      fc.property(factsArb, ({ sales, churns, range }) => {
        const report = computeSoldCredit(sales, churns, range);
        expect(report.months.map((m) => m.month)).toEqual(monthRange(range.from, range.to));
        for (const m of report.months) {
          for (const k of FLOW_KEYS) {
            expect(m[k]).toBeGreaterThanOrEqual(0);
            expect(Math.round(m[k] * 100) / 100).toBe(m[k]);
          }
        }
      }),
    );
  });

  it('when the facts are shuffled, then the report is identical', () => {
    fc.assert(
      fc.property(
        factsArb.chain((f) =>
          fc.tuple(
            fc.constant(f),
            fc.shuffledSubarray(f.sales, { minLength: f.sales.length, maxLength: f.sales.length }),
            fc.shuffledSubarray(f.churns, { minLength: f.churns.length, maxLength: f.churns.length }),
          ),
        ),
        ([{ sales, churns, range }, shuffledSales, shuffledChurns]) => {
          expect(computeSoldCredit(shuffledSales, shuffledChurns, range)).toEqual(computeSoldCredit(sales, churns, range));
        },
      ),
    );
  });

  it('when the range is widened, then the months in common are identical', () => {
    fc.assert(
      fc.property(factsArb, fc.integer({ min: 0, max: 24 }), fc.integer({ min: 0, max: 24 }), ({ sales, churns, range }, before, after) => {
        const narrow = computeSoldCredit(sales, churns, range);
        const wide = computeSoldCredit(sales, churns, { from: addMonths(range.from, -before), to: addMonths(range.to, after) });
        expect(wide.months.slice(before, before + narrow.months.length)).toEqual(narrow.months);
      }),
    );
  });

  it('when facts are split per client, then the per-client reports add up to the whole report', () => {
    fc.assert(
      fc.property(factsArb, ({ sales, churns, range }) => {
        const whole = computeSoldCredit(sales, churns, range);
        const parts = ['c1', 'c2', 'c3'].map((c) =>
          computeSoldCredit(
            sales.filter((s) => s.clientHubId === c),
            churns.filter((x) => x.clientHubId === c),
            range,
          ),
        );
        whole.months.forEach((m, i) => {
          for (const k of FLOW_KEYS) {
            expect(cents(m[k])).toBe(parts.reduce((sum, p) => sum + cents(p.months[i]![k]), 0));
          }
        });
      }),
    );
  });

  it('when a client churns, then its own live credit is zero at the end of the churn month', () => {
    fc.assert(
      fc.property(factsArb, ({ sales, churns }) => {
        for (const c of churns) {
          const month = c.on.slice(0, 7);
          const own = computeSoldCredit(
            sales.filter((s) => s.clientHubId === c.clientHubId),
            churns.filter((x) => x.clientHubId === c.clientHubId),
            { from: month, to: month },
          );
          expect(own.months[0]!.total).toBe(0);
        }
      }),
    );
  });

  it('when there are only positive sales and no churn, then total is the sum of sales closed in the last 12 months', () => {
    fc.assert(
      fc.property(fc.array(positiveSaleArb, { maxLength: 40 }), rangeArb, (sales, range) => {
        const report = computeSoldCredit(sales, [], range);
        for (const m of report.months) {
          const window = new Set(monthRange(addMonths(m.month, -11), m.month));
          const expected = sales.filter((s) => window.has(s.closedOn.slice(0, 7))).reduce((sum, s) => sum + cents(s.mrr), 0);
          const closedThisMonth = sales.filter((s) => s.closedOn.startsWith(m.month)).reduce((sum, s) => sum + cents(s.mrr), 0);
          const agedOut = sales.filter((s) => s.closedOn.startsWith(addMonths(m.month, -12))).reduce((sum, s) => sum + cents(s.mrr), 0);
          expect(cents(m.total)).toBe(expected);
          expect(cents(m.new) + cents(m.increased)).toBe(closedThisMonth);
          expect(cents(m.expired)).toBe(agedOut);
          expect(m.decreased).toBe(0);
        }
      }),
    );
  });
});

describe('firstMonthAffectingTotal (the facts a recalculation reads)', () => {
  it('when the sales and churns before it are left out, then every month\'s total is unchanged', () => {
    fc.assert(
      fc.property(factsArb, ({ sales, churns, range }) => {
        const whole = computeSoldCredit(sales, churns, range);
        for (const m of whole.months) {
          const first = firstMonthAffectingTotal(m.month);
          const recent = computeSoldCredit(
            sales.filter((s) => s.closedOn.slice(0, 7) >= first),
            churns.filter((c) => c.on.slice(0, 7) >= first),
            { from: m.month, to: m.month },
          );
          expect(cents(recent.months[0]!.total)).toBe(cents(m.total));
        }
      }),
    );
  });

  it('when given a month, then it answers the month eleven months before, never before year 0000', () => {
    expect(firstMonthAffectingTotal('2026-11')).toBe('2025-12');
    expect(firstMonthAffectingTotal('2026-01')).toBe('2025-02');
    expect(firstMonthAffectingTotal('0000-05')).toBe('0000-01');
  });

  it('when a sale date is not a real calendar day, then the calculation refuses it', () => {
    for (const bad of ['2026-02-29', '2026-13-01', '2026-00-10', '2026-04-31', '2026-4-01', '20260401', '2026-04-0x']) {
      expect(() => computeSoldCredit([sale('c1', bad, 10)], [], { from: '2026-01', to: '2026-01' })).toThrow(RangeError);
    }
    expect(computeSoldCredit([sale('c1', '2024-02-29', 10)], [], { from: '2024-02', to: '2024-02' }).months[0]!.total).toBe(10);
  });
});

// ---------------------------------------------------------------------------
// tier
// ---------------------------------------------------------------------------

describe('computeTier', () => {
  it.each<[number, string, string | null]>([
    [-1, 'Starter', 'Gold'],
    [0, 'Starter', 'Gold'],
    [4999.99, 'Starter', 'Gold'],
    [5000, 'Gold', 'Platinum'],
    [19999.99, 'Gold', 'Platinum'],
    [20000, 'Platinum', 'Diamond'],
    [49999.99, 'Platinum', 'Diamond'],
    [50000, 'Diamond', 'Elite'],
    [99999.99, 'Diamond', 'Elite'],
    [100000, 'Elite', null],
    [1e9, 'Elite', null],
  ])('when sold tier credit is %p, then the tier is %s and the next is %p', (credit, current, next) => {
    expect(computeTier(credit, defaultTierThresholds)).toEqual({ current, next });
  });

  it('when there is a single threshold, then it is current and there is no next', () => {
    expect(computeTier(10, [{ name: 'Only', minCredit: 0 }])).toEqual({ current: 'Only', next: null });
  });

  it.each<[string, { name: string; minCredit: number }[]]>([
    ['thresholds are empty', []],
    ['thresholds are not ascending', [{ name: 'A', minCredit: 10 }, { name: 'B', minCredit: 5 }]],
    ['thresholds have equal minCredit', [{ name: 'A', minCredit: 0 }, { name: 'B', minCredit: 0 }]],
  ])('when %s, then it throws a RangeError', (_label, thresholds) => {
    expect(() => computeTier(0, thresholds)).toThrow(RangeError);
  });

  it('when credit grows, then the tier never goes down and next is the tier right after current', () => {
    const names = defaultTierThresholds.map((t) => t.name as string);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 200_000_00 }), fc.integer({ min: 0, max: 200_000_00 }), (a, b) => {
        const [lo, hi] = a <= b ? [a / 100, b / 100] : [b / 100, a / 100];
        const tLo = computeTier(lo, defaultTierThresholds);
        const tHi = computeTier(hi, defaultTierThresholds);
        expect(names.indexOf(tLo.current)).toBeLessThanOrEqual(names.indexOf(tHi.current));
        expect(tLo.next).toBe(names[names.indexOf(tLo.current) + 1] ?? null);
      }),
    );
  });
});

// ---------------------------------------------------------------------------
// upcoming renewals
// ---------------------------------------------------------------------------

describe('countUpcomingRenewals', () => {
  const active = (renewalDate: string | null): RenewableClient => ({ status: 'active', renewalDate });

  it.each<[string, RenewableClient[], string, number, number]>([
    ['renewal was yesterday', [active('2025-01-30')], '2025-01-31', 30, 0],
    ['renewal is today', [active('2025-01-31')], '2025-01-31', 30, 1],
    ['renewal is exactly today + window (across February)', [active('2025-03-02')], '2025-01-31', 30, 1],
    ['renewal is one day past the window', [active('2025-03-03')], '2025-01-31', 30, 0],
    ['renewal date is unknown', [active(null)], '2025-01-31', 30, 0],
    ['client is terminated', [{ status: 'terminated', renewalDate: '2025-02-01' }], '2025-01-31', 30, 0],
    ['window is 0 and renewal is today', [active('2025-01-31'), active('2025-02-01')], '2025-01-31', 0, 1],
    ['leap day is inside a 1-day window', [active('2024-02-29'), active('2024-03-01')], '2024-02-28', 1, 1],
    ['window crosses the year end', [active('2025-12-31'), active('2026-01-05'), active('2026-01-06')], '2025-12-27', 9, 2],
    [
      'clients are mixed',
      [active('2025-02-10'), active('2025-02-15'), active(null), { status: 'terminated', renewalDate: '2025-02-10' }, active('2025-06-01')],
      '2025-02-01',
      30,
      2,
    ],
  ])('when %s, then the count is as expected', (_label, clients, today, windowDays, expected) => {
    expect(countUpcomingRenewals(clients, today, windowDays)).toBe(expected);
  });

  it.each<[string, () => unknown]>([
    ['windowDays is negative', () => countUpcomingRenewals([], '2025-01-01', -1)],
    ['windowDays is not an integer', () => countUpcomingRenewals([], '2025-01-01', 1.5)],
    ['today is not a calendar date', () => countUpcomingRenewals([], '2025-02-29', 30)],
    ['a renewal date is malformed', () => countUpcomingRenewals([active('2025-2-01')], '2025-01-01', 30)],
  ])('when %s, then it throws a RangeError', (_label, run) => {
    expect(run).toThrow(RangeError);
  });

  it('when the window grows, then the count never decreases', () => {
    fc.assert(
      fc.property(fc.array(fc.option(dateArb, { nil: null }).map(active), { maxLength: 20 }), dateArb, fc.nat(400), fc.nat(400), (clients, today, a, b) => {
        const [lo, hi] = a <= b ? [a, b] : [b, a];
        expect(countUpcomingRenewals(clients, today, lo)).toBeLessThanOrEqual(countUpcomingRenewals(clients, today, hi));
      }),
    );
  });
});
