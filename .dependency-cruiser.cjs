/**
 * Import rules of the service, checked by `npm run lint` (dependency-cruiser). Each rule says why.
 * Type-only imports count too: a circle or a forbidden edge made of `import type` is still a design
 * dependency. `npx depcruise src config --output-type err-long` explains a violation in full.
 * @type {import('dependency-cruiser').IConfiguration}
 */
module.exports = {
  forbidden: [
    {
      name: 'domain-is-pure',
      comment:
        'src/domain holds pure decisions (state + now in, decision or typed error out): it imports only other ' +
        'src/domain modules. No ORM, Kysely, pg, BullMQ, ioredis, nodemailer, Fastify, config or application code.',
      severity: 'error',
      from: { path: '^src/domain/' },
      to: { pathNot: '^src/domain/', dependencyTypesNot: ['core'] },
    },
    {
      name: 'domain-only-pure-builtins',
      comment:
        'Node built-ins in src/domain only when they do no I/O and read no clock or randomness ' +
        '(assert, util, url, querystring, string_decoder, buffer). No fs, crypto, net, timers, process, ...',
      severity: 'error',
      from: { path: '^src/domain/' },
      to: { dependencyTypes: ['core'], pathNot: '^(node:)?(assert|assert/strict|util|url|querystring|string_decoder|buffer)$' },
    },
    {
      name: 'producers-not-workers',
      comment:
        'Producers (HTTP, client) accept and enqueue; they never reach into job processors. What both need ' +
        '(use cases, stores, job contracts) lives outside src/workers.',
      severity: 'error',
      from: { path: '^src/producers/' },
      to: { path: '^src/workers/' },
    },
    {
      name: 'no-circular',
      comment: 'No import circle anywhere in src: a circle hides which module is the lower layer.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'sql-lives-in-db',
      comment:
        'Every SQL statement has one home, a store under src/db. Only src/db imports the SQL builders and ' +
        'drivers (kysely, pg, @mikro-orm/*); elsewhere take an `Em` (type) from src/db/orm.ts and call a store.',
      severity: 'error',
      from: { path: '^(src|config)/', pathNot: '^src/db/' },
      to: { path: '^node_modules/(kysely|pg|@mikro-orm)/', dependencyTypesNot: ['type-only'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // TypeScript 7 (native) has no compiler API for dependency-cruiser yet: parse with swc (installed
    // for Jest). swc keeps type-only imports (marked `type-only`), so no `tsPreCompilationDeps`,
    // which would ask for the missing tsc.
    parser: 'swc',
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
