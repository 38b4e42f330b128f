// Which parts of the node binary a process has resident: its file-backed pages
// (the largest share of an idle daemon's RSS) by what they hold. Each resident
// page of the binary's mappings (/proc/PID/pagemap, bit 63) is given to the
// symbol that covers most of it (`nm -S -C` of the binary), and symbols are put
// in groups by name: V8's optimizing compilers, its builtins, ICU's data, the
// JavaScript sources of Node's own modules, OpenSSL, SQLite...
//
//   node bench/node-pages.ts PID [PID...]     (a table, one column per process)

import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { mdTable } from './lib.ts';

const PAGE = 4096;

interface Sym {
  start: number;
  size: number;
  name: string;
}

const symCache = new Map<string, Sym[]>();

/** The binary's sized symbols, by address (nm: defined, demangled). */
function symbols(binary: string): Sym[] {
  let syms = symCache.get(binary);
  if (syms !== undefined) return syms;
  syms = [];
  const out = execFileSync('nm', ['-S', '-C', '--defined-only', binary], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  for (const line of out.split('\n')) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) \S (.*)$/.exec(line);
    if (m === null) continue;
    const size = parseInt(m[2]!, 16);
    if (size > 0) syms.push({ start: parseInt(m[1]!, 16), size, name: m[3]! });
  }
  syms.sort((a, b) => a.start - b.start);
  symCache.set(binary, syms);
  return syms;
}

/** The group a symbol's bytes are counted in. */
function group(name: string): string {
  if (/^icudt\d+_dat$/.test(name)) return 'ICU data';
  if (name.startsWith('Builtins_') || name.includes('embedded_blob')) return "V8's builtins (interpreter, built-in functions)";
  if (name.includes('v8::internal::compiler') || name.includes('v8::internal::maglev')) return "V8's optimizing compilers (TurboFan, Turboshaft, Maglev)";
  if (name.includes('v8::internal::wasm')) return "V8's WebAssembly";
  if (/v8::internal::(Heap|MarkCompact|Scavenge|Marking|Minor|Sweeper|Concurrent)|cppgc/.test(name)) return "V8's garbage collector";
  if (name.startsWith('v8_inspector::')) return "V8's inspector (set up at every start)";
  if (name.startsWith('v8::') || name.includes('v8::internal')) return 'V8, other';
  if (name.startsWith('__static_initialization')) return 'C++ static initializers (run once at start)';
  if (name.includes('icu_') || /^u[a-z]+_\w+_\d+$/.test(name)) return 'ICU code';
  if (name.includes('node::') || name.startsWith('node_')) return 'Node C++';
  if (/sqlite/i.test(name)) return 'SQLite';
  if (name.startsWith('uv_') || name.startsWith('uv__')) return 'libuv';
  if (/^(ossl_|OSSL|EVP_|SSL_|ssl|tls1|X509|x509|OPENSSL|CRYPTO_|ERR_|BIO_|BN_|bn_|EC_|ec_|RSA_|ASN1|asn1|OBJ_|PEM_|sha\d|aesni|x25519|DH_|DSA_|PKCS|CONF_|RAND_|HMAC|EVP|sk_|lh_|ChaCha|Poly1305|aes_|gcm_|rsaz|ecp_nistz)/.test(name)) return 'OpenSSL';
  if (name.includes('simdjson') || name.includes('simdutf') || name.startsWith('ada::')) return 'simdjson, simdutf, ada';
  return 'other';
}

/** kB of the binary resident in the process, by group; unsymbolled read-only spans are named by what Node keeps there. */
export function nodePages(pid: number): Map<string, number> {
  const exe = execFileSync('readlink', ['-f', `/proc/${pid}/exe`], { encoding: 'utf8' }).trim();
  const syms = symbols(exe);
  const loadBias = linkBase(exe);
  const out = new Map<string, number>();
  const add = (k: string, kb: number): void => void out.set(k, (out.get(k) ?? 0) + kb);
  const fd = openSync(`/proc/${pid}/pagemap`, 'r');
  try {
    for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) ([0-9a-f]+) \S+ \S+\s+(.*)$/.exec(line);
      if (m === null || m[5] !== exe) continue;
      const from = parseInt(m[1]!, 16);
      const pages = (parseInt(m[2]!, 16) - from) / PAGE;
      const offset = parseInt(m[4]!, 16);
      const buf = Buffer.alloc(pages * 8);
      readSync(fd, buf, 0, buf.length, (from / PAGE) * 8);
      let j = 0;
      for (let i = 0; i < pages; i++) {
        if (buf.readBigUInt64LE(i * 8) >> 63n === 0n) continue;
        // The link-time address of this page (a mapping can be a second view of
        // the same file bytes, as V8 remaps its builtins next to its code).
        const va = loadBias + offset + i * PAGE;
        while (j < syms.length && syms[j]!.start <= va) j++;
        let best: Sym | null = null;
        let bestBytes = 0;
        for (let k = Math.max(0, j - 64); k < syms.length && syms[k]!.start < va + PAGE; k++) {
          const s = syms[k]!;
          const bytes = Math.min(s.start + s.size, va + PAGE) - Math.max(s.start, va);
          if (bytes > bestBytes) {
            bestBytes = bytes;
            best = s;
          }
        }
        if (best !== null) add(group(best.name), 4);
        else if (!m[3]!.includes('x') && offset === 0) add('symbol tables for the dynamic linker', 4);
        else add(m[3]!.includes('x') ? 'code without a symbol' : "read-only data without a symbol (Node's JS sources, V8's snapshot)", 4);
      }
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/** Link address minus file offset of the binary's first loadable segment (node is not position-independent: 0x400000). */
function linkBase(exe: string): number {
  const out = execFileSync('readelf', ['-lW', exe], { encoding: 'utf8' });
  const m = /LOAD\s+0x([0-9a-f]+) 0x([0-9a-f]+)/.exec(out);
  return m === null ? 0 : parseInt(m[2]!, 16) - parseInt(m[1]!, 16);
}

/** A table of several processes' node pages (MB), largest groups first. */
export function nodePagesTable(columns: { name: string; pid: number }[]): string {
  const maps = columns.map((c) => nodePages(c.pid));
  const keys = [...new Set(maps.flatMap((m) => [...m.keys()]))].sort((a, b) => Math.max(...maps.map((m) => m.get(b) ?? 0)) - Math.max(...maps.map((m) => m.get(a) ?? 0)));
  const mbs = (kb: number): string => (kb / 1024).toFixed(1);
  const rows = keys.map((k) => [k, ...maps.map((m) => mbs(m.get(k) ?? 0))]);
  rows.push(['**total**', ...maps.map((m) => `**${mbs([...m.values()].reduce((a, b) => a + b, 0))}**`)]);
  return mdTable([['node binary pages resident, MB', ...columns.map((c) => c.name)], ...rows]);
}

if (import.meta.main) {
  const pids = process.argv.slice(2).map(Number);
  if (pids.length === 0 || pids.some((p) => !Number.isInteger(p))) {
    process.stderr.write('usage: node bench/node-pages.ts PID [PID...]\n');
    process.exit(2);
  }
  console.log(nodePagesTable(pids.map((pid) => ({ name: `pid ${pid}`, pid }))));
}
