// Part of `npm run build`: puts the dashboard's browser files into dist/ next
// to the compiled code (its own script and style sheet, and uPlot vendored from
// node_modules), so an installed baton serves them with no network and no
// node_modules. The daemon hashes them at start for cache-busting URLs.

import { copyFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const out = path.join(root, 'dist/dashboard/assets');
const require = createRequire(import.meta.url);

mkdirSync(path.join(out, 'vendor'), { recursive: true });
for (const f of ['app.js', 'app.css']) copyFileSync(path.join(root, 'src/dashboard/assets', f), path.join(out, f));
for (const f of ['uPlot.iife.min.js', 'uPlot.min.css']) copyFileSync(require.resolve(`uplot/dist/${f}`), path.join(out, 'vendor', f));
