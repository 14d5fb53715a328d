import { ConfigError, loadConfig } from '../config/index.js';
import { createLogger, startApp, StartupError } from './app.js';
import { SERVICE_VERSION } from './metrics.js';

/** Time allowed, beyond SHUTDOWN_TIMEOUT_MS, for closing the HTTP server, Redis and Postgres. */
const CLOSE_MARGIN_MS = 5000;

/**
 * `npm start` (which execs `node --import tsx src/main.ts`, so this process is npm's child and gets
 * the SIGTERM npm forwards): API + workers + scheduler (per ROLES), migrations applied first.
 * Exit codes: 0 after a clean drain, 1 when the drain failed or overran its bound, 2 a bad
 * environment, 3 Postgres or Redis does not answer, 4 a port cannot be bound.
 */
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
  const logger = createLogger(config.logLevel, { pretty: config.logPretty || process.stdout.isTTY === true });
  let app;
  try {
    app = await startApp(config, { logger });
  } catch (err) {
    if (err instanceof StartupError) {
      console.error(err.message);
      process.exit(err.exitCode);
    }
    throw err;
  }
  logger.info({ roles: [...config.roles], url: app.url, metricsUrl: app.metricsUrl, node: process.version, version: SERVICE_VERSION }, 'partner access pipeline started');
  if (app.devToken) {
    // Printed once so a newcomer can try the API; set API_TOKENS for anything real.
    console.log(`\nNo API_TOKENS set: a development admin token was generated for this run:\n\n  export TOKEN=${app.devToken}\n  curl -H "Authorization: Bearer $TOKEN" ${config.publicUrl}/readyz\n`);
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      // A second signal (Ctrl-C twice): stop waiting for the drain.
      logger.warn({ signal }, 'second signal during the drain; exiting now');
      process.exit(1);
    }
    stopping = true;
    const started = Date.now();
    logger.info({ signal, drainTimeoutMs: config.shutdownTimeoutMs }, 'shutting down: no new requests, draining workers');
    const bound = setTimeout(() => {
      logger.error({ afterMs: Date.now() - started }, 'shutdown did not finish in time; exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs + CLOSE_MARGIN_MS);
    bound.unref();
    app.close().then(
      () => {
        logger.info({ tookMs: Date.now() - started }, 'shut down cleanly');
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

await main();
