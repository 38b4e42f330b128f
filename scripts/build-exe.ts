// `npm run build:exe`: baton as one self-contained executable for Linux x64
// (build/baton-linux-x64): Node's single-executable application support
// (https://nodejs.org/api/single-executable-applications.html) with the whole
// of src/ and its dependencies bundled into one CommonJS script by esbuild.
//
//   1. esbuild: src/exe/main.ts → build/sea/baton.cjs (CommonJS: Node 24's SEA
//      runs its main script as CommonJS; no top-level await anywhere in src/)
//   2. node --experimental-sea-config → build/sea/baton.blob
//   3. a copy of the pinned Node binary + postject injects the blob (the
//      sentinel fuse string must be exactly Node's, or postject fails with
//      "Could not find the sentinel")
//
// The daemon's 4 MB young generation (bin/baton.js re-executes itself for it)
// is baked into the executable's execArgv instead: the SEA cannot be given
// Node flags on its command line.

import { build, type Plugin } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { copyFileSync, chmodSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { assetFiles, seaKey } from '../src/dashboard/assets.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const OUT_DIR = path.join(ROOT, 'build');
const WORK = path.join(OUT_DIR, 'sea');
const EXE = path.join(OUT_DIR, 'baton-linux-x64');
const FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

if (process.platform !== 'linux' || process.arch !== 'x64') {
  process.stderr.write(`build-exe: builds for Linux x64 only (this is ${process.platform}/${process.arch})\n`);
  process.exit(1);
}

const version = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** src/core/version.ts reads package.json next to it at run time; the executable has no package.json. */
const inlineVersion: Plugin = {
  name: 'inline-version',
  setup(b) {
    b.onLoad({ filter: /[\\/]src[\\/]core[\\/]version\.ts$/ }, () => ({
      contents: `export const VERSION = ${JSON.stringify(version)};\n`,
      loader: 'ts',
    }));
  },
};

rmSync(WORK, { recursive: true, force: true });
mkdirSync(WORK, { recursive: true });
const script = path.join(WORK, 'baton.cjs');
const started = Date.now();
await build({
  entryPoints: [path.join(ROOT, 'src/exe/main.ts')],
  outfile: script,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node24',
  plugins: [inlineVersion],
  // import.meta.url is only read on the paths that do not run inside the
  // executable (src/exe/self.ts decides), so its absence in CommonJS is expected.
  logOverride: { 'empty-import-meta': 'silent' },
  legalComments: 'none',
});

const blob = path.join(WORK, 'baton.blob');
/** The daemon's flags (bin/baton.js sets them by execve; here they are baked in). */
const EXEC_ARGV = ['--max-semi-space-size=4', '--expose-gc'];
const seaConfig = path.join(WORK, 'sea-config.json');
writeFileSync(
  seaConfig,
  JSON.stringify({
    main: script,
    output: blob,
    disableExperimentalSEAWarning: true,
    useCodeCache: true,
    execArgv: EXEC_ARGV,
    // The dashboard's browser files, read back with node:sea's getAsset().
    assets: Object.fromEntries(Object.entries(assetFiles()).map(([name, file]) => [seaKey(name), file])),
  }),
);
// V8 accepts a code cache only from a process whose flags hash the same: the
// blob is made under the executable's own flags, or every start would print
// "Code cache data rejected" and compile from source.
execFileSync(process.execPath, [...EXEC_ARGV, '--experimental-sea-config', seaConfig], { stdio: 'inherit' });

rmSync(EXE, { force: true });
copyFileSync(process.execPath, EXE);
chmodSync(EXE, 0o755);
execFileSync(process.execPath, [path.join(ROOT, 'node_modules/postject/dist/cli.js'), EXE, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', FUSE], { stdio: ['ignore', 'ignore', 'inherit'] });

const mb = (statSync(EXE).size / 1024 / 1024).toFixed(1);
process.stdout.write(`build-exe: ${path.relative(ROOT, EXE)} (${mb} MB, Node ${process.version}, baton ${version}) in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
