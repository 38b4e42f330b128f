// Users and groups of this host, for a service's `user:`/`group:` and the
// control socket's group. Resolved when the config is loaded (the daemon
// spawns with numeric ids). Asked through getent, so NSS sources (LDAP, sssd)
// count; without getent (a bare container, the test's empty PATH), from
// /etc/passwd and /etc/group.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

export interface UserAccount {
  name: string;
  uid: number;
  /** Primary group. */
  gid: number;
  home: string;
}

export interface GroupAccount {
  name: string;
  gid: number;
}

const GETENT = ['/usr/bin/getent', '/bin/getent'].find((p) => existsSync(p)) ?? null;

/** The colon-separated entry for `key` (a name or a number) in passwd or group, or null. */
function entry(db: 'passwd' | 'group', key: string): string[] | null {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/.test(key)) return null;
  if (GETENT) {
    try {
      const line = execFileSync(GETENT, [db, key], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0] ?? '';
      return line ? line.split(':') : null;
    } catch {
      return null; // exit 2: no such entry
    }
  }
  let text: string;
  try {
    text = readFileSync(`/etc/${db}`, 'utf8');
  } catch {
    return null;
  }
  const numeric = /^\d+$/.test(key);
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 4) continue;
    if (numeric ? f[2] === key : f[0] === key) return f;
  }
  return null;
}

export function lookupUser(key: string): UserAccount | null {
  const f = entry('passwd', key);
  if (!f || f.length < 7) return null;
  return { name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]! };
}

export function lookupGroup(key: string): GroupAccount | null {
  const f = entry('group', key);
  if (!f || f.length < 3) return null;
  return { name: f[0]!, gid: Number(f[2]) };
}
