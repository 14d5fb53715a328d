import { defineConfig } from '@mikro-orm/postgresql';
import { loadConfig } from '../../config/index.js';
import { ormOptions } from './orm.js';

/**
 * The MikroORM CLI's configuration (found through `mikro-orm.configPaths` in package.json, loaded
 * with the `tsx` loader set there). DATABASE_URL chooses the database, as for the service:
 *
 * - `npm run db:migration:create -- --name what_changed`: writes the diff between the entities
 *   (src/db/entities.ts) and the database as a new migration in src/db/migrations; `npm run
 *   db:migrate` applies it (migrations are discovered from that folder).
 * - `npm run db:migration:check`: exits 1 when the entities and the database differ.
 * - `npx mikro-orm schema:update --dump`: prints that diff as SQL (nothing when they agree).
 */
export default defineConfig({ ...ormOptions(loadConfig(process.env).databaseUrl), preferTs: true });
