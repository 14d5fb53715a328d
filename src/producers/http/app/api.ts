import type { FastifyInstance } from 'fastify';

/**
 * The web app talks to the service only through its public JSON API, in process
 * (`app.inject`): the same authorization and scopes, the same command log, and an audit trail
 * naming the token the person signed in with. The types below are the contract's §5 shapes, as
 * far as the pages use them; a field a given API version does not send yet is optional.
 */

export interface ApiError {
  code: string;
  message: string;
  issues?: { path: string; message: string }[];
  fields?: string[];
}

export interface ApiReply<T> {
  status: number;
  body: T;
  error?: ApiError;
}

export interface Person { name: string; email: string }

export interface Employee {
  email: string;
  name: string | null;
  tagged: boolean;
  status: string;
  clients: { hubId: string; access: string }[];
}

export interface ClientSummary {
  hubId: string;
  name: string;
  status: string;
  mrr: number | null;
  products: string[] | null;
  renewalDate: string | null;
  managed: boolean;
  managedMrr?: number;
  employees?: { email: string; access: string }[];
  employeeCount?: number;
}

export interface ClientDetail extends ClientSummary {
  contactEmail?: string | null;
  clientInfo?: {
    companyInfo?: { domain?: string; industry?: string; employees?: number; country?: string; city?: string } | null;
    subscriptions?: { product: string; tier?: string; mrr?: number }[];
    contactTier?: string | null;
    emailTier?: string | null;
  };
  renewals?: {
    renewalOwner?: Person | null;
    renewalRep?: Person | null;
    currentSubscription?: { name: string; mrr?: number; endsOn?: string } | null;
    renewalSubscription?: { name: string; mrr?: number; startsOn?: string } | null;
    renewalDate?: string | null;
  };
  portalUsage?: { products?: string[]; apps?: string[] } | null;
  platformEngagementScore?: number | null;
}

export interface Dashboard {
  alerts: { upcomingRenewals: number; pendingRequests?: number };
  managedMrr: number;
  soldTierCredit: number;
  tier: { current: string; next: string | null; creditToNext?: number | null };
  team: { channelAccountManager?: Person; channelConsultant?: Person };
  calculatedAt: string;
  locale?: string;
  partner?: { name?: string; locale?: string };
}

export interface CreditMonth { month: string; new: number; increased: number; expired: number; decreased: number; total: number }

export interface Conflict { email: string; clientHubId: string; commandId: string; at: string }

export interface AccessRequest { clientHubId: string; employeeEmail: string; state: string; requestedAt: string; expiresAt?: string | null; lastEmailAt?: string | null; reminders?: number }

export interface Renewal { hubId: string; name: string; renewalDate: string | null; renewalOwner?: Person | string | null; products?: string[] | null }

export interface CommandItem { clientHubId: string; employeeEmail: string; state: string; outcome?: string; error?: { code: string; message: string } }

export interface CommandStatus {
  commandId: string;
  type: string;
  partnerId: string;
  state: 'waiting' | 'active' | 'completed' | 'failed';
  error?: { code: string; message: string };
  items?: CommandItem[];
  result?: unknown;
}

export interface Accepted { commandId: string; type: string; state: string }

export const settled = (s: CommandStatus) => s.state === 'completed' || s.state === 'failed';

/** A client of the public API for one token, calling the Fastify instance in process. */
export class PartnerApi {
  constructor(
    private readonly app: FastifyInstance,
    private readonly token: string,
    private readonly requestId: string,
  ) {}

  private async call<T>(method: 'GET' | 'POST', url: string, payload?: Record<string, unknown>, idempotencyKey?: string): Promise<ApiReply<T>> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}`, 'x-request-id': this.requestId };
    if (idempotencyKey) headers['idempotency-key'] = idempotencyKey;
    const res = await this.app.inject({ method, url, headers, ...(payload ? { payload } : {}) });
    let body: unknown = null;
    try {
      body = res.body ? JSON.parse(res.body) : null;
    } catch {
      body = null;
    }
    if (res.statusCode < 400) return { status: res.statusCode, body: body as T };
    const error = (body as { error?: ApiError } | null)?.error ?? { code: `HTTP_${res.statusCode}`, message: res.statusMessage };
    return { status: res.statusCode, body: body as T, error };
  }

  get<T>(url: string): Promise<ApiReply<T>> {
    return this.call<T>('GET', url);
  }

  /** Posts one command; the idempotency key makes a double submit one command. */
  command(partnerId: string, command: Record<string, unknown>, idempotencyKey: string): Promise<ApiReply<Accepted>> {
    return this.call<Accepted>('POST', `/v1/partners/${encodeURIComponent(partnerId)}/commands`, command, idempotencyKey);
  }

  /**
   * The command's status once it settles, or its current status after `maxWaitMs`. Asks the API
   * to wait (`?wait=`, contract §4) and polls as well, for an API that answers at once.
   */
  async waitCommand(commandId: string, maxWaitMs: number): Promise<ApiReply<CommandStatus>> {
    const deadline = Date.now() + maxWaitMs;
    for (;;) {
      const left = deadline - Date.now();
      const wait = Math.max(0, Math.min(30, Math.floor(left / 1000)));
      const r = await this.get<CommandStatus>(`/v1/commands/${encodeURIComponent(commandId)}${wait ? `?wait=${wait}` : ''}`);
      if (r.error || settled(r.body) || Date.now() >= deadline) return r;
      await new Promise((resolve) => setTimeout(resolve, Math.min(150, Math.max(0, deadline - Date.now()))));
    }
  }
}
