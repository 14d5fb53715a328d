import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyInstance } from 'fastify';
import type { AppContext } from '../../context.js';
import type { TokenRegistry } from './auth.js';

/**
 * The queue dashboard (Bull Board) at /admin/queues, behind HTTP Basic auth whose password is a
 * token with the `admin` scope (any user name). Jobs carry ids only, so it shows no emails or tokens.
 */
export async function registerQueueDashboard(app: FastifyInstance, ctx: AppContext, registry: TokenRegistry): Promise<void> {
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath('/admin/queues');
  createBullBoard({ queues: ctx.queues.all().map((q) => new BullMQAdapter(q)), serverAdapter, options: { uiConfig: { boardTitle: 'Partner access' } } });
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
