import { Cluster } from 'ioredis';
import type { RedisClient } from './queues.js';

/**
 * "A command settled" over Redis pub/sub, so that `GET /v1/commands/{id}?wait=N` answers the moment
 * a command is completed or failed, without polling Postgres. A worker publishes the commandId on
 * the channel of its queue prefix right after the command's final state is committed; each API
 * process holds one subscription to that channel (opened at the first wait) and wakes the requests
 * waiting for that command.
 *
 * A message carries only the commandId; the waiter reads the state from the command log (Postgres
 * is the truth). Pub/sub is at most once: a message lost to a Redis outage only means the waiter
 * answers at its timeout with the command's current status, as the contract allows.
 */

/** The channel of a queue prefix (QUEUE_PREFIX). */
export const settledChannel = (prefix: string) => `${prefix}:command-settled`;

/** Tells the API processes that a command settled (after its final state is committed). Best effort. */
export async function publishSettled(queues: { connection: RedisClient; prefix: string }, commandId: string): Promise<void> {
  try {
    await queues.connection.publish(settledChannel(queues.prefix), commandId);
  } catch {
    /* Redis unreachable: a waiter answers at its timeout */
  }
}

/** One wait for a command: `settled` resolves when its message arrives (or the listener closes). */
export interface SettledWait {
  settled: Promise<void>;
  stop(): void;
}

/**
 * The API process's subscription to the channel of settled commands, shared by every waiting
 * request. Opened at the first wait, on a connection of its own (a subscribed connection can do
 * nothing else); ioredis subscribes again after a reconnect.
 */
export class SettledListener {
  private subscriber: RedisClient | null = null;
  private opening: Promise<void> | null = null;
  private readonly waiters = new Map<string, Set<() => void>>();
  private closed = false;

  constructor(private readonly queues: { connection: RedisClient; prefix: string }) {}

  /**
   * Starts waiting for `commandId`. The subscription is live when the returned promise resolves, so
   * a state read after it cannot miss a message sent after that read. Rejects when Redis cannot be
   * subscribed to (the caller then waits out its timeout).
   */
  async listen(commandId: string): Promise<SettledWait> {
    let wake!: () => void;
    const settled = new Promise<void>((resolve) => { wake = resolve; });
    if (this.closed) {
      wake();
      return { settled, stop: () => undefined };
    }
    const set = this.waiters.get(commandId) ?? new Set();
    set.add(wake);
    this.waiters.set(commandId, set);
    const stop = () => {
      set.delete(wake);
      if (set.size === 0 && this.waiters.get(commandId) === set) this.waiters.delete(commandId);
    };
    try {
      await this.open();
    } catch (err) {
      stop();
      throw err;
    }
    return { settled, stop };
  }

  /** How many requests wait now (tests, metrics). */
  get waiting(): number {
    let n = 0;
    for (const s of this.waiters.values()) n += s.size;
    return n;
  }

  private wake(commandId: string): void {
    const set = this.waiters.get(commandId);
    if (!set) return;
    this.waiters.delete(commandId);
    for (const w of set) w();
  }

  private open(): Promise<void> {
    this.opening ??= (async () => {
      const main = this.queues.connection;
      const sub: RedisClient = main instanceof Cluster ? main.duplicate() : main.duplicate();
      sub.on('error', () => undefined); // reconnects by itself; waiters answer at their timeout meanwhile
      sub.on('message', (_channel: string, commandId: string) => this.wake(commandId));
      this.subscriber = sub;
      if (sub.status === 'wait') await sub.connect();
      await sub.subscribe(settledChannel(this.queues.prefix));
    })().catch((err: unknown) => {
      const sub = this.subscriber;
      this.subscriber = null;
      this.opening = null;
      sub?.disconnect();
      throw err;
    });
    return this.opening;
  }

  /** Ends every wait at once (they answer the current status) and drops the subscription. */
  async close(): Promise<void> {
    this.closed = true;
    for (const id of [...this.waiters.keys()]) this.wake(id);
    const sub = this.subscriber;
    this.subscriber = null;
    this.opening = null;
    if (sub && sub.status !== 'end') sub.disconnect();
  }
}
