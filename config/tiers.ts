import type { TierThreshold } from '../src/domain/credit.js';

/**
 * Default partner tiers, ascending by `minCredit` (sold tier credit, same
 * currency unit as `mrr`). A tier applies from its `minCredit` inclusive.
 */
export const defaultTierThresholds = [
  { name: 'Starter', minCredit: 0 },
  { name: 'Gold', minCredit: 5000 },
  { name: 'Platinum', minCredit: 20000 },
  { name: 'Diamond', minCredit: 50000 },
  { name: 'Elite', minCredit: 100000 },
] as const satisfies readonly TierThreshold[];

export type DefaultTierName = (typeof defaultTierThresholds)[number]['name'];
