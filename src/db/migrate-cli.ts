import { loadConfig } from '../../config/index.js';
import { openOrm } from './orm.js';

/** `npm run db:migrate`: creates the database when missing and applies pending migrations. */
const config = loadConfig(process.env);
const orm = await openOrm(config.databaseUrl, { migrate: false });
const applied = await orm.migrator.up();
console.log(applied.length ? `applied: ${applied.map((m) => m.name).join(', ')}` : 'no pending migrations');
await orm.close();
