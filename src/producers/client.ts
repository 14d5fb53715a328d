import { loadConfig, type Config } from '../../config/index.js';
import { acceptCommands, getCommandStatus, type Accepted, type CommandStatus } from '../commands/log.js';
import { HttpError } from '../commands/errors.js';
import { parseCommand, parseCommands, type Issue } from '../commands/schemas.js';
import { openOrm, type Orm } from '../db/orm.js';
import { createQueues, type Queues } from '../queues/index.js';

export interface Producer {
  /** Validates and accepts one command, exactly as `POST /v1/partners/{id}/commands` does. */
  send(partnerId: string, command: unknown): Promise<Accepted>;
  /** Validates and accepts up to 1000 commands, all or nothing. */
  sendBatch(partnerId: string, commands: unknown[]): Promise<Accepted[]>;
  status(commandId: string): Promise<CommandStatus | null>;
  close(): Promise<void>;
}

/**
 * The TypeScript producer: for upstream services in the same trust zone that would rather not go
 * through HTTP. Same validation, same command log, same guarantees (a resolved promise means the
 * command is in Postgres and its job in Redis). Errors are HttpError with the contract's codes.
 */
export async function createProducer(opts: { config?: Config; name?: string } = {}): Promise<Producer> {
  const config = opts.config ?? loadConfig(process.env);
  const orm: Orm = await openOrm(config.databaseUrl, { migrate: false, poolMax: 4 });
  const queues: Queues = await createQueues(config.redisUrl, config.queuePrefix);
  const tokenName = opts.name ?? 'producer';
  const invalid = (issues: Issue[]) => new HttpError(400, 'VALIDATION_FAILED', 'The command is not valid.', { issues });
  return {
    async send(partnerId, command) {
      const r = parseCommand(command);
      if (!r.ok) throw invalid(r.issues);
      const [accepted] = await acceptCommands(orm, queues, { partnerId, tokenName, commands: [r.command] });
      return accepted!;
    },
    async sendBatch(partnerId, commands) {
      if (commands.length < 1 || commands.length > 1000) throw new HttpError(400, 'VALIDATION_FAILED', 'A batch holds 1 to 1000 commands.', { issues: [{ path: 'commands', message: 'must hold 1 to 1000 commands' }] });
      const r = parseCommands(commands);
      if (!r.ok) throw invalid(r.issues);
      return acceptCommands(orm, queues, { partnerId, tokenName, commands: r.commands });
    },
    status: (commandId) => getCommandStatus(orm.em.fork(), commandId),
    async close() {
      await queues.close();
      await orm.close();
    },
  };
}
