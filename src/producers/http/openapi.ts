import { z } from 'zod';
import { commandSchemas, commandTypes } from '../../commands/schemas.js';

const errorBody = {
  type: 'object',
  properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' }, issues: { type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, message: { type: 'string' } } } } }, required: ['code', 'message'] } },
};
const errors = (...codes: number[]) => Object.fromEntries(codes.map((c) => [String(c), { description: String(c), content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } }]));
const json = (schema: object, description = 'OK') => ({ description, content: { 'application/json': { schema } } });
const partnerParam = { name: 'partnerId', in: 'path', required: true, schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' } };
const read = (summary: string, scope = 'read', extra: object[] = []) => ({
  summary,
  security: [{ bearer: [scope] }],
  parameters: [partnerParam, ...extra],
  responses: { '200': json({ type: 'object' }), ...errors(401, 403, 404) },
});

/** The OpenAPI 3.1 document, generated from the same zod schemas that validate the commands. */
export function openApiDocument(): Record<string, unknown> {
  const commandComponents = Object.fromEntries(commandTypes.map((t) => [t, z.toJSONSchema(commandSchemas[t], { io: 'input', unrepresentable: 'any' })]));
  const anyCommand = { oneOf: commandTypes.map((t) => ({ $ref: `#/components/schemas/${t}` })), discriminator: { propertyName: 'type' } };
  const accepted = { type: 'object', properties: { commandId: { type: 'string' }, type: { type: 'string' }, state: { type: 'string' }, statusUrl: { type: 'string' } } };
  return {
    openapi: '3.1.0',
    info: { title: 'Partner access pipeline', version: '1.0.0', description: 'Commands are written to a durable command log and applied by workers. See the README for the contract.' },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' }, basic: { type: 'http', scheme: 'basic' } },
      schemas: { Error: errorBody, Accepted: accepted, Command: anyCommand, ...commandComponents },
    },
    paths: {
      '/v1/partners/{partnerId}/commands': {
        post: {
          summary: 'Post one command',
          security: [{ bearer: ['commands:write'] }],
          parameters: [partnerParam, { name: 'Idempotency-Key', in: 'header', required: false, schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' } }],
          requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/Command' } } } },
          responses: { '202': json({ $ref: '#/components/schemas/Accepted' }, 'Accepted'), '200': json({ $ref: '#/components/schemas/Accepted' }, 'Known commandId, same body'), ...errors(400, 401, 403, 409, 413, 415, 429, 503) },
        },
      },
      '/v1/partners/{partnerId}/commands:batch': {
        post: {
          summary: 'Post up to 1000 commands, all or nothing',
          security: [{ bearer: ['commands:write'] }],
          parameters: [partnerParam],
          requestBody: { required: true, content: { 'application/json': { schema: { type: 'object', properties: { commands: { type: 'array', maxItems: 1000, items: { $ref: '#/components/schemas/Command' } } }, required: ['commands'] } } } },
          responses: { '202': json({ type: 'object', properties: { commands: { type: 'array', items: { $ref: '#/components/schemas/Accepted' } } } }), ...errors(400, 401, 403, 409, 413, 415, 429, 503) },
        },
      },
      '/v1/commands/{commandId}': { get: { summary: 'Command status from the command log', security: [{ bearer: ['read'] }], parameters: [{ name: 'commandId', in: 'path', required: true, schema: { type: 'string' } }], responses: { '200': json({ type: 'object' }), ...errors(401, 403, 404) } } },
      '/v1/partners/{partnerId}/employees': { get: read('Partner employees and their accesses', 'employees:read') },
      '/v1/partners/{partnerId}/clients': { get: read('Client list with access states') },
      '/v1/partners/{partnerId}/clients/{hubId}': { get: read('One client with its client info', 'read', [{ name: 'hubId', in: 'path', required: true, schema: { type: 'string' } }]) },
      '/v1/partners/{partnerId}/dashboard': { get: read('Managed MRR, sold tier credit, tier, renewal alerts') },
      '/v1/partners/{partnerId}/credit': { get: read('Sold tier credit per month', 'read', [{ name: 'from', in: 'query', schema: { type: 'string', pattern: '^\\d{4}-\\d{2}$' } }, { name: 'to', in: 'query', schema: { type: 'string', pattern: '^\\d{4}-\\d{2}$' } }]) },
      '/v1/partners/{partnerId}/conflicts': { get: read('Duplicate-email conflicts this partner ran into') },
      '/v1/partners/{partnerId}/requests': { get: read('Access requests waiting for a client, oldest first, with their age', 'employees:read', ['state', 'olderThanDays', 'limit', 'cursor'].map((name) => ({ name, in: 'query', schema: { type: 'string' } }))) },
      '/v1/partners/{partnerId}/renewals': { get: read('The clients behind alerts.upcomingRenewals, soonest first') },
      '/v1/partners/{partnerId}/audit': { get: read('Audit trail (JSON, or CSV with Accept: text/csv)', 'read', ['from', 'to', 'type', 'email', 'limit', 'cursor'].map((name) => ({ name, in: 'query', schema: { type: 'string' } }))) },
      '/v1/grants/{token}': {
        get: { summary: 'Confirmation page of a grant link (Grant and Decline), in the client\'s locale', parameters: [{ name: 'token', in: 'path', required: true, schema: { type: 'string' } }], responses: { '200': { description: 'HTML page' }, '404': { description: 'Unknown or tampered' }, '410': { description: 'Already used, expired or withdrawn' } } },
        post: {
          summary: 'Answer the request: decision=grant (the default) or decline',
          parameters: [{ name: 'token', in: 'path', required: true, schema: { type: 'string' } }],
          requestBody: { required: false, content: { 'application/x-www-form-urlencoded': { schema: { type: 'object', properties: { decision: { type: 'string', enum: ['grant', 'decline'] } } } } } },
          responses: { '200': { description: 'Granted or declined (HTML page)' }, '400': { description: 'Not an answer the page offers' }, '404': { description: 'Unknown or tampered' }, '410': { description: 'Already used, expired or withdrawn' } },
        },
      },
      '/healthz': { get: { summary: 'Liveness', responses: { '200': { description: 'alive' } } } },
      '/readyz': { get: { summary: 'Readiness: Postgres, Redis, workers consuming', responses: { '200': { description: 'ready' }, '503': { description: 'not ready' } } } },
      '/metrics': { get: { summary: 'Prometheus metrics', responses: { '200': { description: 'text/plain exposition' } } } },
    },
  };
}
