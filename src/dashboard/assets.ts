// The dashboard's static files: its own script and style sheet, and uPlot
// (vendored from npm into dist/ by `npm run build`; read from node_modules
// when running the sources). Each is served under a name carrying a hash of
// its content, so it can be cached forever (`immutable`), and gzipped once
// here for clients behind an ssh tunnel. In the single executable they are
// the blob's own assets (scripts/build-exe.ts puts them there).

import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import sea from 'node:sea';
import { BatonError } from '../core/errors.ts';

export interface Asset {
  /** "/assets/app.3f9c2a1b7d.js" */
  url: string;
  type: string;
  body: Buffer;
  gzip: Buffer;
  etag: string;
}

/** Logical name → where it comes from (first existing path wins). */
const SOURCES: Record<string, { type: string; paths: () => string[] }> = {
  'app.js': { type: 'text/javascript; charset=utf-8', paths: () => [local('app.js')] },
  'app.css': { type: 'text/css; charset=utf-8', paths: () => [local('app.css')] },
  'uplot.js': { type: 'text/javascript; charset=utf-8', paths: () => [local('vendor/uPlot.iife.min.js'), fromNpm('uplot/dist/uPlot.iife.min.js')] },
  'uplot.css': { type: 'text/css; charset=utf-8', paths: () => [local('vendor/uPlot.min.css'), fromNpm('uplot/dist/uPlot.min.css')] },
};

export type AssetName = keyof typeof SOURCES;

function local(name: string): string {
  return fileURLToPath(new URL(`./assets/${name}`, import.meta.url));
}

function fromNpm(spec: string): string {
  try {
    return createRequire(import.meta.url).resolve(spec);
  } catch {
    return '';
  }
}

/** Where each asset is read from when running from files: for the executable's build, which embeds them. */
export function assetFiles(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, src] of Object.entries(SOURCES)) {
    const file = src.paths().find((p) => p !== '' && existsSync(p));
    if (!file) throw new BatonError('INTERNAL', `dashboard asset ${name} not found (looked in ${src.paths().filter(Boolean).join(', ')}); run \`npm run build\``);
    out[name] = file;
  }
  return out;
}

/** The key of an asset in the single executable's blob. */
export const seaKey = (name: string): string => `dashboard/${name}`;

export class Assets {
  readonly #byName = new Map<string, Asset>();
  readonly #byUrl = new Map<string, Asset>();

  /** Read and hash every asset; a missing one is a clear start-up error, not a broken page later. */
  static load(): Assets {
    const a = new Assets();
    const files = sea.isSea() ? null : assetFiles();
    for (const [name, src] of Object.entries(SOURCES)) {
      const body = files ? readFileSync(files[name]!) : Buffer.from(sea.getAsset(seaKey(name)));
      const hash = createHash('sha256').update(body).digest('hex').slice(0, 12);
      const dot = name.lastIndexOf('.');
      const asset: Asset = {
        url: `/assets/${name.slice(0, dot)}.${hash}${name.slice(dot)}`,
        type: src.type,
        body,
        gzip: gzipSync(body, { level: 9 }),
        etag: `"${hash}"`,
      };
      a.#byName.set(name, asset);
      a.#byUrl.set(asset.url, asset);
    }
    return a;
  }

  url(name: AssetName): string {
    return this.#byName.get(name)!.url;
  }

  byUrl(url: string): Asset | undefined {
    return this.#byUrl.get(url);
  }

  /** Bytes of each asset as sent (raw and gzipped), for the docs and the report. */
  sizes(): { name: string; bytes: number; gzip: number }[] {
    return [...this.#byName].map(([name, a]) => ({ name, bytes: a.body.length, gzip: a.gzip.length }));
  }
}
