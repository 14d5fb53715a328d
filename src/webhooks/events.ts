/**
 * The webhook events of contract §8: their names, what their `data` holds, and the body a receiver
 * gets. An event is written in the transaction of the change it reports (`src/db/webhook-store.ts`
 * `insertEvents`); this module only names and shapes them.
 */

/** Every event a partner can subscribe to. */
export const WEBHOOK_EVENT_TYPES = [
  'access.pending',
  'access.active',
  'access.declined',
  'access.expired',
  'access.revoked',
  'access.conflict',
  'command.completed',
  'command.failed',
  'credit.recalculated',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** `data` of the access events: the pair, and the command that changed it (null: the lifecycle sweep). */
export interface AccessEventData { clientHubId: string; employeeEmail: string; commandId: string | null }

/** `data` of `command.completed` / `command.failed`: the command as its status shows it. */
export interface CommandEventData {
  commandId: string;
  commandType: string;
  state: 'completed' | 'failed';
  result?: unknown;
  error?: { code: string; message: string } | null;
}

/** An event to write: its type, its partner and its `data`. */
export interface NewEvent { type: WebhookEventType; partnerId: string; data: Record<string, unknown> }

/** An access event of one pair (`access.*`). */
export function accessEvent(
  type: Extract<WebhookEventType, `access.${string}`>,
  pair: { partnerId: string; hubId: string; email: string },
  commandId: string | null,
): NewEvent {
  const data: AccessEventData = { clientHubId: pair.hubId, employeeEmail: pair.email, commandId };
  return { type, partnerId: pair.partnerId, data: { ...data } };
}

/** The event of a pair outcome, if the outcome is one a subscriber hears about (a resend is a new pending request). */
export function accessEventOfOutcome(outcome: string): Extract<WebhookEventType, `access.${string}`> | null {
  switch (outcome) {
    case 'pending':
    case 'resent':
      return 'access.pending';
    case 'active':
      return 'access.active';
    case 'revoked':
      return 'access.revoked';
    default:
      return null;
  }
}

/** A command settled: `command.completed` or `command.failed`. */
export function commandEvent(partnerId: string, data: CommandEventData): NewEvent {
  return { type: data.state === 'completed' ? 'command.completed' : 'command.failed', partnerId, data: { ...data } };
}

/** A stored event, as the delivery worker reads it (`createdAt`: ISO-8601, UTC). */
export interface StoredEvent { id: string; type: string; partnerId: string; createdAt: string; data: unknown }

/**
 * The body a receiver gets (contract §8): `{"id","type","partnerId","createdAt","data"}`. Built from
 * the stored event, so every attempt of a delivery sends the same bytes.
 */
export function eventBody(e: StoredEvent): string {
  return JSON.stringify({ id: e.id, type: e.type, partnerId: e.partnerId, createdAt: e.createdAt, data: e.data });
}
