/**
 * A tiny HTML template tag with escaping. No template engine is installed and the web app has a
 * handful of pages, so templates are plain TypeScript functions: `html\`<p>${name}</p>\`` escapes
 * every interpolated value unless it is already `SafeHtml` (the result of another `html` call),
 * joins arrays, and drops `null`, `undefined` and `false` (for conditionals).
 */
export class SafeHtml {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

export type Html = SafeHtml;
type Value = SafeHtml | string | number | boolean | null | undefined | readonly Value[];

/** Escapes text for element content and quoted attribute values. */
export const escapeHtml = (s: string): string =>
  s.replace(/[&<>"'`]/g, (ch) => `&#${ch.charCodeAt(0)};`);

function render(v: Value): string {
  if (v === null || v === undefined || v === false) return '';
  if (v instanceof SafeHtml) return v.value;
  if (Array.isArray(v)) return (v as readonly Value[]).map(render).join('');
  return escapeHtml(String(v));
}

/** The tagged template: literal parts are trusted, interpolations escaped. */
export function html(strings: TemplateStringsArray, ...values: Value[]): SafeHtml {
  let out = strings[0] ?? '';
  for (let i = 0; i < values.length; i++) out += render(values[i]) + (strings[i + 1] ?? '');
  return new SafeHtml(out);
}

/**
 * JSON for a `<script type="application/json">` block: `<`, `>`, `&` and the line separators are
 * written as `\u` escapes, so no value can close the element or start a comment.
 */
export function jsonBlock(id: string, data: unknown): SafeHtml {
  const json = JSON.stringify(data).replace(/[<>&\u2028\u2029]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return new SafeHtml(`<script type="application/json" id="${escapeHtml(id)}">${json}</script>`);
}
