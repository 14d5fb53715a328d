/**
 * The typed HTTP client of the partner access pipeline, for other repositories: `paths` and
 * `components` are generated from the service's OpenAPI document (`npm run client:generate` writes
 * `openapi.json` and `schema.d.ts` beside this file; CI checks both are up to date), and
 * `openapi-fetch` turns them into typed calls:
 *
 * ```ts
 * const api = createApiClient({ baseUrl: 'https://pap.example', token: process.env.PAP_TOKEN! });
 * const { data } = await api.GET('/v1/partners/{partnerId}/clients', { params: { path: { partnerId: 'p-100' }, query: { limit: 100 } } });
 * const status = await postCommandAndWait(api, 'p-100', { type: 'employee.tag', email: 'ann@acme.test' }, { idempotencyKey: 'crm-1', waitSeconds: 10 });
 * ```
 */
import createClient, { type Client, type ClientOptions } from 'openapi-fetch';
import type { components, paths } from './schema.js';

export type { components, paths } from './schema.js';

/** A client of the API. */
export type ApiClient = Client<paths>;
/** One command, as the API takes it (contract §4). */
export type Command = components['schemas']['Command'];
/** A command's status (contract §4). */
export type CommandStatus = components['schemas']['CommandStatus'];
/** The contract's error body. */
export type ApiErrorBody = components['schemas']['Error'];

/** A client with the bearer token on every request. `fetch` may be replaced (tests, proxies). */
export function createApiClient(opts: { baseUrl: string; token: string } & Omit<ClientOptions, 'baseUrl'>): ApiClient {
  const { token, headers, ...rest } = opts;
  return createClient<paths>({ ...rest, headers: { ...(headers as Record<string, string> | undefined), authorization: `Bearer ${token}` } });
}

/** A refusal of the API: its HTTP status and the contract's error body. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(readonly status: number, readonly body: ApiErrorBody | undefined) {
    super(body ? `${status} ${body.error.code}: ${body.error.message}` : `HTTP ${status}`);
  }
}

/** The longest single wait the API takes (`GET /v1/commands/{id}?wait=N`, N ≤ 30). */
const MAX_WAIT_SECONDS = 30;

const settled = (s: CommandStatus) => s.state === 'completed' || s.state === 'failed';

/**
 * Posts one command with an idempotency key and waits (up to `waitSeconds`, default 30) until the
 * command log says it is completed or failed, without polling: the status read asks the API to
 * answer when the command settles (`?wait=`), again while time is left. Returns the last status
 * (still `waiting`/`active` when the time ran out). Retrying with the same key after a failure to
 * get an answer is safe: the API answers a known key and body with the existing command.
 * Throws ApiError on a refusal (400, 401, 403, 409, 503, …).
 */
export async function postCommandAndWait(client: ApiClient, partnerId: string, command: Command, opts: { idempotencyKey: string; waitSeconds?: number }): Promise<CommandStatus> {
  const posted = await client.POST('/v1/partners/{partnerId}/commands', {
    params: { path: { partnerId }, header: { 'idempotency-key': opts.idempotencyKey } },
    body: command,
  });
  if (!posted.data) throw new ApiError(posted.response.status, posted.error);
  const deadline = Date.now() + (opts.waitSeconds ?? MAX_WAIT_SECONDS) * 1000;
  for (;;) {
    const wait = Math.min(MAX_WAIT_SECONDS, Math.max(0, Math.ceil((deadline - Date.now()) / 1000)));
    const read = await client.GET('/v1/commands/{commandId}', { params: { path: { commandId: posted.data.commandId }, query: { wait } } });
    if (!read.data) throw new ApiError(read.response.status, read.error);
    if (settled(read.data) || wait === 0 || Date.now() >= deadline) return read.data;
  }
}
