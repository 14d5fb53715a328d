import { defineConfig } from '@mikro-orm/postgresql';
import { loadConfig } from '../../config/index.js';
import { ormOptions } from './orm.js';

/** Used by the MikroORM CLI (`npm run db:migration:create`). */
export default defineConfig({ ...ormOptions(loadConfig(process.env).databaseUrl), preferTs: true });
