import { ConfigError, loadConfig } from '../config/index.js';
import { createLogger, startApp, StartupError } from './app.js';

/** `npm start`: API + workers + scheduler (per ROLES), migrations applied first, clean exit on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  let app;
  try {
    app = await startApp(config, { logger });
  } catch (err) {
    if (err instanceof StartupError) {
      console.error(err.message);
      process.exit(3);
    }
    throw err;
  }
  logger.info({ roles: [...config.roles], url: app.url }, 'partner access pipeline started');
  if (app.devToken) {
    // Printed once so a newcomer can try the API; set API_TOKENS for anything real.
    console.log(`\nNo API_TOKENS set: a development admin token was generated for this run:\n\n  export TOKEN=${app.devToken}\n  curl -H "Authorization: Bearer $TOKEN" ${config.publicUrl}/readyz\n`);
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    app.close().then(
      () => process.exit(0),
      (err) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

await main();
