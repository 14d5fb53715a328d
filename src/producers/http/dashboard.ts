import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyInstance } from 'fastify';
import type { AppContext } from '../../context.js';
import { statusUrl } from '../../commands/log.js';
import { QUEUE_INFO, QUEUES, type QueueName } from '../../jobs/queues.js';
import type { TokenRegistry } from './auth.js';

/** Queues whose jobs each belong to one command (their data holds its commandId). */
const commandQueues = new Set<string>([QUEUES.commands, QUEUES.pairs]);

type JobLink = NonNullable<ConstructorParameters<typeof BullMQAdapter>[1]>['externalJobUrl'];

/** The link of a job to its command's status (`GET /v1/commands/{commandId}`), for the jobs of the command queues. */
const commandLink: NonNullable<JobLink> = (job) => {
  const commandId = (job.data as { commandId?: unknown } | null)?.commandId;
  // A job without a commandId (forged) gets no link: Bull Board shows none for an undefined one.
  return (typeof commandId === 'string' ? { href: statusUrl(commandId), displayText: `command ${commandId}` } : undefined) as ReturnType<NonNullable<JobLink>>;
};

/**
 * The queue dashboard (Bull Board) at /admin/queues, behind HTTP Basic auth whose password is a
 * token with the `admin` scope (any user name). Jobs carry ids only, so it shows no emails or
 * tokens. Each queue has a display name and a description; each job of a command links to the
 * command's status; a refused job shows its `CODE: message` alone (no stack: see toUnrecoverable).
 */
export async function registerQueueDashboard(app: FastifyInstance, ctx: AppContext, registry: TokenRegistry): Promise<void> {
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath('/admin/queues');
  const adapters = ctx.queues.all().map((q) => new BullMQAdapter(q, {
    ...QUEUE_INFO[q.name as QueueName],
    ...(commandQueues.has(q.name) ? { externalJobUrl: commandLink } : {}),
  }));
  createBullBoard({ queues: adapters, serverAdapter, options: { uiConfig: { boardTitle: 'Partner access' } } });
  await app.register(async (scope) => {
    scope.addHook('onRequest', async (req, reply) => {
      const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(req.headers.authorization ?? '');
      const password = m?.[1] ? Buffer.from(m[1], 'base64').toString('utf8').replace(/^[^:]*:/, '') : '';
      const token = password ? registry.find(password) : undefined;
      if (!token?.scopes.includes('admin')) {
        return reply.code(401).header('www-authenticate', 'Basic realm="queues", charset="UTF-8"').send({ error: { code: 'UNAUTHENTICATED', message: 'The queue dashboard needs an admin token as the Basic auth password.' } });
      }
    });
    await scope.register(serverAdapter.registerPlugin() as never, { prefix: '/admin/queues' });
  });
}
