import { loadConfig } from '../config/index.js';
import { startApp } from './app.js';
import { startSmtp } from '../test/helpers/smtp.js';
import { dropDatabase } from './db/orm.js';
import { dropQueues } from '../test/helpers/harness.js';
const smtp = await startSmtp();
const env: Record<string, string> = { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/pap_prof', REDIS_URL: 'redis://127.0.0.1:6379/0', QUEUE_PREFIX: 'papprof', SMTP_URL: smtp.url, PORT: '0', HOST: '127.0.0.1', API_TOKENS: JSON.stringify([{ token: 'tok-admin-0000000000', name: 'a', partners: '*', scopes: ['admin'] }]), LOG_LEVEL: 'warn', RATE_LIMIT_PER_MINUTE: '0', RECONCILE_GRACE_MS: '600000', ROLES: 'api,worker' };
const app = await startApp(loadConfig(env));
const em = app.ctx.orm.em.fork();
const N = 3000;
await em.execute(`insert into partner (id, name) select 'p' || i, 'P' || i from generate_series(1,3) i`);
await em.execute(`insert into employee (partner_id, email, name, tagged, status) select 'p' || i, 'e' || i || '@x.test', 'E', true, 'active' from generate_series(1,3) i`);
await em.execute(`insert into client (partner_id, hub_id, name, contact_email) select 'p' || i, 'h' || i || '-' || j, 'C', 'c' || j || '@c.test' from generate_series(1,3) i, generate_series(1,1000) j`);
const t0 = Date.now();
for (let i = 1; i <= 3; i++) {
  const hubs = Array.from({ length: 1000 }, (_, j) => `h${i}-${j + 1}`);
  const r = await fetch(`${app.url}/v1/partners/p${i}/commands`, { method: 'POST', headers: { authorization: 'Bearer tok-admin-0000000000', 'content-type': 'application/json' }, body: JSON.stringify({ type: 'access.assign', clientHubIds: hubs, employeeEmails: [`e${i}@x.test`] }) });
  console.log(r.status);
}
let tItems = 0;
for (let k = 0; k < 600; k++) {
  const [r] = await em.execute<{ n: string; i: string }[]>(`select (select count(*) from outbox where state = 'sent') as n, (select count(*) from command_item where state = 'completed') as i`);
  if (!tItems && Number(r!.i) >= N) tItems = Date.now();
  if (Number(r!.n) >= N) break;
  await new Promise((res) => setTimeout(res, 100));
}
const s = (Date.now() - t0) / 1000;
console.log(`pairs/s ${(N / s).toFixed(0)} in ${s}s; items at ${(tItems - t0) / 1000}s; smtp ${smtp.messages.length}`);
await app.close(); await smtp.close();
await dropQueues(env.REDIS_URL!, env.QUEUE_PREFIX!); await dropDatabase(env.DATABASE_URL!);
