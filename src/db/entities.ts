import { defineEntity, p } from '@mikro-orm/core';

/** A partner account. */
export const Partner = defineEntity({
  name: 'Partner',
  tableName: 'partner',
  properties: {
    id: p.string().primary(),
    name: p.string(),
    emailDomains: p.json<string[]>(),
    team: p.json<Record<string, { name: string; email: string }>>(),
    createdAt: p.datetime().onCreate(() => new Date()),
    updatedAt: p.datetime().onCreate(() => new Date()).onUpdate(() => new Date()),
  },
});

/** A user of a partner account; `tagged` marks a partner employee. */
export const Employee = defineEntity({
  name: 'Employee',
  tableName: 'employee',
  properties: {
    partnerId: p.string().primary(),
    email: p.string().primary(),
    name: p.string().nullable(),
    tagged: p.boolean(),
    status: p.string(),
    updatedAt: p.datetime(),
  },
});

/** A client in a partner's client list. */
export const Client = defineEntity({
  name: 'Client',
  tableName: 'client',
  properties: {
    partnerId: p.string().primary(),
    hubId: p.string().primary(),
    name: p.string(),
    contactEmail: p.string(),
    locale: p.string(),
    mrr: p.decimal('number'),
    products: p.json<string[]>(),
    renewalDate: p.string().columnType('date').nullable(),
    info: p.json<Record<string, unknown>>(),
    status: p.string(),
    updatedAt: p.datetime(),
  },
});

/** The command log: every accepted command, the source of truth for its status. */
export const CommandRecord = defineEntity({
  name: 'CommandRecord',
  tableName: 'command',
  properties: {
    id: p.string().primary(),
    partnerId: p.string(),
    type: p.string(),
    payload: p.json<Record<string, unknown>>(),
    bodyHash: p.string(),
    issuedAt: p.datetime().nullable(),
    tokenName: p.string().nullable(),
    state: p.string(),
    attempts: p.integer(),
    result: p.json<unknown>().nullable(),
    error: p.json<{ code: string; message: string }>().nullable(),
    itemsTotal: p.integer(),
    createdAt: p.datetime(),
    startedAt: p.datetime().nullable(),
    finishedAt: p.datetime().nullable(),
    enqueuedAt: p.datetime().nullable(),
  },
});

export const entities = [Partner, Employee, Client, CommandRecord];
