import { loadConfig, type Config, type Scope } from '../../config/index.js';
import { acceptCommands, getCommandStatus, type Accepted, type CommandStatus } from '../commands/log.js';
import { asHttpErrors, HttpError } from './errors.js';
import type { z } from 'zod';
import { commandsRefusal, parseCommand, parseCommands, type commandSchemas, type CommandType, type Issue } from '../commands/schemas.js';
import { openOrm, type Orm } from '../db/orm.js';
import { createQueues, type Queues } from '../jobs/queues.js';

/**
 * One command as a caller writes it: the input of its zod schema (contract §4), before validation
 * normalises it (emails lower-cased, text trimmed). The same union the HTTP document's `Command` is.
 */
export type CommandInput = { [K in CommandType]: z.input<(typeof commandSchemas)[K]> }[CommandType];

export interface Producer {
  /** Validates and accepts one command, exactly as `POST /v1/partners/{id}/commands` does. */
  send(partnerId: string, command: CommandInput): Promise<Accepted>;
  /** Validates and accepts up to 1000 commands, all or nothing. */
  sendBatch(partnerId: string, commands: CommandInput[]): Promise<Accepted[]>;
  status(commandId: string): Promise<CommandStatus | null>;
  close(): Promise<void>;
}

/**
 * The TypeScript producer: for upstream services in the same trust zone that would rather not go
 * through HTTP. Same validation, same command log, same guarantees (a resolved promise means the
 * command is in Postgres and its job in Redis). Errors are HttpError with the contract's codes.
 * `scopes` are what an API token of this caller would hold (contract §3, the same `commandPolicy`
 * as over HTTP): by default every scope (`admin`); a partner-side sync passes `['commands:write']`.
 */
export async function createProducer(opts: { config?: Config; name?: string; scopes?: readonly Scope[] } = {}): Promise<Producer> {
  const config = opts.config ?? loadConfig(process.env);
  const orm: Orm = await openOrm(config.databaseUrl, { migrate: false, poolMax: 4 });
  const queues: Queues = await createQueues({ url: config.redisUrl, cluster: config.redisCluster }, config.queuePrefix);
  const tokenName = opts.name ?? 'producer';
  const scopes: readonly Scope[] = opts.scopes ?? ['admin'];
  const authorize = (raws: readonly unknown[], batch: boolean) => {
    const refusal = commandsRefusal(scopes, raws, { batch });
    if (refusal) throw new HttpError(403, 'FORBIDDEN', refusal.message, refusal.details);
  };
  const invalid = (issues: Issue[]) => new HttpError(400, 'VALIDATION_FAILED', 'The command is not valid.', { issues });
  return {
    async send(partnerId, command) {
      authorize([command], false);
      const r = parseCommand(command);
      if (!r.ok) throw invalid(r.issues);
      const [accepted] = await asHttpErrors(() => acceptCommands(orm, queues, { partnerId, tokenName, commands: [r.command] }));
      return accepted!;
    },
    async sendBatch(partnerId, commands) {
      if (commands.length < 1 || commands.length > 1000) throw new HttpError(400, 'VALIDATION_FAILED', 'A batch holds 1 to 1000 commands.', { issues: [{ path: 'commands', message: 'must hold 1 to 1000 commands' }] });
      authorize(commands, true);
      const r = parseCommands(commands);
      if (!r.ok) throw invalid(r.issues);
      return asHttpErrors(() => acceptCommands(orm, queues, { partnerId, tokenName, commands: r.commands, batch: true }));
    },
    status: (commandId) => getCommandStatus(orm.em.fork(), commandId),
    async close() {
      await queues.close();
      await orm.close();
    },
  };
}
