/**
 * `npm run lint` part: every SQL statement lives in a store under src/db, and none binds a
 * positional `?` placeholder.
 *
 * 1. SQL home: a file in src/ outside src/db/ that contains `.execute(`, `getKysely` or a Kysely
 *    `sql` template (the acceptance grep of issue 10:
 *    grep -rln "\.execute(\|getKysely\|sql\`" src | grep -v "^src/db/").
 * 2. No positional `?`: in every string and template literal in src/ that looks like SQL (has a
 *    word such as select, insert, update, delete, from, where, values, returning, join or limit; the
 *    literal text only, not the `${…}` values of a template), a `?` that stands where a value goes: after `=`, `<`, `>`,
 *    `(`, `,`, `=>` or a keyword such as `limit`, `and`, `in`, `then`, and followed by the end, a
 *    space, `)`, `,`, `;` or a `::cast`. Postgres' jsonb `?` operator (`payload ? 'key'`) follows an
 *    operand, so it does not match; nor does a question in prose ("sure?").
 *
 * Prints one line per finding (`file:line: what`) and exits 1 when there is any.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const srcDir = join(root, 'src');

/** @param {string} dir @returns {string[]} */
function sourceFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return /\.(ts|mts|cts|js|mjs)$/.test(e.name) && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/**
 * Whether the `/` at `i` starts a regular expression literal: it follows an operator, a bracket or a
 * keyword (a division follows an operand).
 * @param {string} src @param {number} i
 */
function startsRegex(src, i) {
  const before = src.slice(Math.max(0, i - 40), i).trimEnd();
  return before === '' || /[(,=:[!&|?{};+\-*%<>~^]$/.test(before) || /\b(?:return|typeof|case|in|of|void|yield|await)$/.test(before);
}

/**
 * The literal text of every string and template literal in a source, with its offset.
 * Comments are skipped; a template's `${…}` parts are skipped (nested templates inside them are scanned).
 * @param {string} src
 * @returns {{ text: string, at: number }[]}
 */
function literals(src) {
  /** @type {{ text: string, at: number }[]} */
  const out = [];
  /** brace depth at which each open template's `${` began */
  const templates = [];
  let depth = 0;
  let i = 0;
  const readTemplate = () => {
    // at the first character after '`' or after the '}' that closes a `${`
    let start = i;
    while (i < src.length) {
      const c = src[i];
      if (c === '\\') { i += 2; continue; }
      if (c === '`') { out.push({ text: src.slice(start, i), at: start }); i++; return; }
      if (c === '$' && src[i + 1] === '{') {
        out.push({ text: src.slice(start, i), at: start });
        i += 2;
        templates.push(depth);
        depth++;
        return;
      }
      i++;
    }
  };
  while (i < src.length) {
    const c = src[i];
    if (c === '/' && src[i + 1] === '/') { while (i < src.length && src[i] !== '\n') i++; continue; }
    if (c === '/' && src[i + 1] === '*') { const end = src.indexOf('*/', i + 2); i = end < 0 ? src.length : end + 2; continue; }
    if (c === '/' && startsRegex(src, i)) {
      // a regular expression literal: skip it (it may hold quotes or backticks)
      i++;
      let inClass = false;
      while (i < src.length && src[i] !== '\n') {
        if (src[i] === '\\') { i += 2; continue; }
        if (src[i] === '[') inClass = true;
        else if (src[i] === ']') inClass = false;
        else if (src[i] === '/' && !inClass) break;
        i++;
      }
      i++;
      continue;
    }
    if (c === "'" || c === '"') {
      const start = ++i;
      while (i < src.length && src[i] !== c && src[i] !== '\n') i += src[i] === '\\' ? 2 : 1;
      out.push({ text: src.slice(start, i), at: start });
      i++;
      continue;
    }
    if (c === '`') { i++; readTemplate(); continue; }
    if (c === '{') { depth++; i++; continue; }
    if (c === '}') {
      depth--;
      i++;
      if (templates.length && templates[templates.length - 1] === depth) { templates.pop(); readTemplate(); }
      continue;
    }
    i++;
  }
  return out;
}

const sqlOutsideDb = /\.execute\(|getKysely|sql`/;
const looksLikeSql = /\b(?:select|insert|update|delete|from|where|values|returning|join|limit)\b/i;
const positional = /(?:[=<>(,]|=>|\b(?:limit|offset|and|or|not|in|is|like|ilike|between|then|else|when|values|by|select|return)\b)\s*\?(?=$|[\s),;]|::)/i;

/** @param {string} src @param {number} at */
const lineOf = (src, at) => src.slice(0, at).split('\n').length;

const findings = [];
for (const file of sourceFiles(srcDir)) {
  const rel = relative(root, file).split('\\').join('/');
  const src = readFileSync(file, 'utf8');
  if (!rel.startsWith('src/db/')) {
    src.split('\n').forEach((line, n) => {
      const m = sqlOutsideDb.exec(line);
      if (m) findings.push(`${rel}:${n + 1}: SQL outside src/db (${m[0]}); move the statement into a store under src/db`);
    });
  }
  for (const { text, at } of literals(src)) {
    const m = looksLikeSql.test(text) ? positional.exec(text) : null;
    if (m) {
      const pos = at + (m.index ?? 0);
      const excerpt = text.slice(Math.max(0, (m.index ?? 0) - 20), (m.index ?? 0) + m[0].length + 10).replace(/\s+/g, ' ').trim();
      findings.push(`${rel}:${lineOf(src, pos)}: positional ? placeholder in SQL text ("${excerpt}"); use Kysely's builder or a sql template with named values`);
    }
  }
}

if (findings.length) {
  console.error(findings.join('\n'));
  console.error(`check-sql-home: ${findings.length} finding(s)`);
  process.exit(1);
}
console.log('check-sql-home: every statement lives in src/db, no positional ? placeholder');
