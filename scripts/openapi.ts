/**
 * Writes the OpenAPI document of the service to a file, exactly as a started API process serves it
 * at `GET /openapi.json` (the document is built from the routes' zod schemas; see
 * src/producers/http/openapi.ts).
 *
 *   npm run openapi:write [-- out.json]     (default: clients/typescript/openapi.json)
 *
 * It starts the API role alone on a free loopback port, against a scratch database (created, then
 * dropped) and a scratch queue prefix on the Redis of REDIS_URL (default the local one), with
 * PUBLIC_URL http://localhost:3000 so that the checked-in document does not depend on the machine.
 * Postgres and Redis must answer (as for the tests).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { loadConfig } from '../config/index.js';
import { startApp } from '../src/app.js';
import { dropDatabase } from '../src/db/orm.js';

const out = resolve(process.argv[2] ?? 'clients/typescript/openapi.json');
const scratch = `pap_openapi_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
const pgBase = new URL(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres');
pgBase.pathname = `/${scratch}`;

const config = loadConfig({
  NODE_ENV: 'development',
  DATABASE_URL: pgBase.toString(),
  REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0',
  QUEUE_PREFIX: scratch,
  ROLES: 'api',
  PORT: '0',
  HOST: '127.0.0.1',
  PUBLIC_URL: 'http://localhost:3000',
  MIGRATE_ON_START: 'false',
  RATE_LIMIT_PER_MINUTE: '0',
  LOG_LEVEL: 'error',
  GRANT_LINK_SECRET: randomBytes(24).toString('base64url'),
  API_TOKENS: JSON.stringify([{ token: randomBytes(24).toString('base64url'), name: 'openapi-writer', partners: '*', scopes: ['admin'] }]),
});

const app = await startApp(config);
try {
  const document = app.server!.swagger();
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(document, null, 2)}\n`);
  console.log(`openapi: wrote ${out} (${Object.keys((document as { paths?: object }).paths ?? {}).length} paths)`);
} finally {
  // The API role's queues wrote their `meta` keys under the scratch prefix: none is left behind.
  const q = app.ctx.queues;
  await Promise.all([q.commands, q.pairs, q.mail, q.credit, q.lifecycle, q.webhooks].map((queue) => queue.obliterate({ force: true }).catch(() => undefined)));
  await app.close();
  await dropDatabase(config.databaseUrl);
}
