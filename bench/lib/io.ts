import type { Redis } from 'ioredis';
import type { Bench } from './context.js';

/** POSTs JSON to the in-process API with the bench's admin token; throws unless 2xx. */
export async function postJson<T = unknown>(b: Bench, path: string, body: unknown): Promise<T> {
  const res = await fetch(`${b.baseUrl}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${b.token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status < 200 || res.status >= 300) throw new Error(`POST ${path} answered ${res.status}: ${text.slice(0, 500)}`);
  return JSON.parse(text) as T;
}

export interface Accepted { commandId: string; type: string; state: string }

export async function postBatch(b: Bench, partnerId: string, commands: unknown[]): Promise<Accepted[]> {
  const r = await postJson<{ commands: Accepted[] }>(b, `/v1/partners/${encodeURIComponent(partnerId)}/commands:batch`, { commands });
  return r.commands;
}

export async function postCommand(b: Bench, partnerId: string, command: unknown): Promise<Accepted> {
  return postJson<Accepted>(b, `/v1/partners/${encodeURIComponent(partnerId)}/commands`, command);
}

/** Every key under `prefix:` (SCAN, never KEYS). */
export async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    out.push(...keys);
  } while (cursor !== '0');
  return out;
}

export async function deleteKeys(redis: Redis, pattern: string): Promise<number> {
  const keys = await scanKeys(redis, pattern);
  for (let i = 0; i < keys.length; i += 500) await redis.unlink(...keys.slice(i, i + 500));
  return keys.length;
}

/** Redis INFO memory used_memory (the whole server: shared with anybody else on it). */
export async function usedMemory(redis: Redis): Promise<number> {
  const info = String(await redis.info('memory'));
  const m = /used_memory:(\d+)/.exec(info);
  if (!m?.[1]) throw new Error('Redis INFO memory has no used_memory');
  return Number(m[1]);
}

/** Bytes held by the keys under the bench's prefix (MEMORY USAGE per key, pipelined). */
export async function prefixMemory(redis: Redis, prefix: string): Promise<{ keys: number; bytes: number }> {
  const keys = await scanKeys(redis, `${prefix}:*`);
  let bytes = 0;
  for (let i = 0; i < keys.length; i += 1000) {
    const p = redis.pipeline();
    for (const k of keys.slice(i, i + 1000)) p.call('MEMORY', 'USAGE', k, 'SAMPLES', '0');
    for (const [, v] of (await p.exec()) ?? []) bytes += Number(v ?? 0);
  }
  return { keys: keys.length, bytes };
}
