import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** One static file of the web app, read once at start and served from memory. */
export interface Asset { body: Buffer; type: string; version: string }

const own = (name: string) => fileURLToPath(new URL(`./assets/${name}`, import.meta.url));
// uPlot is a dependency, served by the service itself: no CDN, so the pages work on a closed network.
const uplotDist = dirname(createRequire(import.meta.url).resolve('uplot'));

function load(path: string, type: string): Asset {
  const body = readFileSync(path);
  return { body, type, version: createHash('sha256').update(body).digest('hex').slice(0, 12) };
}

export const assets: ReadonlyMap<string, Asset> = new Map([
  ['app.js', load(own('app.js'), 'text/javascript; charset=utf-8')],
  ['app.css', load(own('app.css'), 'text/css; charset=utf-8')],
  ['uplot.iife.min.js', load(join(uplotDist, 'uPlot.iife.min.js'), 'text/javascript; charset=utf-8')],
  ['uplot.min.css', load(join(uplotDist, 'uPlot.min.css'), 'text/css; charset=utf-8')],
]);

/** The URL of an asset, with its content hash so that a new version is never read from a cache. */
export function assetUrl(name: string): string {
  const a = assets.get(name);
  return `/app/assets/${name}${a ? `?v=${a.version}` : ''}`;
}
