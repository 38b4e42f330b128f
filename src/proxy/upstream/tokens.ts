// HTTP's tokens, as the parsers on both sides of the proxy read them. Pure.

/** Per latin1 character code: 1 for a tchar, the characters of a field name or a method (RFC 9110 5.6.2). */
export const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;

/**
 * `name` starts with `lower` (lowercase letters and '-') in any case, compared
 * without allocating a lowercase copy: setting bit 5 lowercases an ASCII letter
 * and keeps '-'. `name` is a token or a checked field value: the only other
 * byte that bit 5 turns into one of those, CR into '-', is in neither.
 */
export function sameName(name: string, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) if ((name.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false;
  return true;
}
