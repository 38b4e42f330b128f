// HTTP's tokens, as the parsers on both sides of the proxy read them. Pure.

/** Per latin1 character code: 1 for a tchar, the characters of a field name or a method (RFC 9110 5.6.2). */
export const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;

/**
 * Where the token starting at buf[at] ends (at itself when none starts there).
 * Letters and '-', nearly every byte of a field name, are compared; only the
 * other bytes are looked up in TCHAR (a table read per byte cost more).
 */
export function tokenEnd(buf: Buffer, at: number): number {
  for (;;) {
    const c = buf[at]!;
    const lower = c | 0x20;
    if ((lower >= 0x61 && lower <= 0x7a) || c === 0x2d || TCHAR[c] === 1) at++;
    else return at;
  }
}

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

/** buf[at, at + lower.length) is `lower` (lowercase letters and '-') in any case: sameName on a head's bytes. */
export function nameAt(buf: Buffer, at: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) if ((buf[at + i]! | 0x20) !== lower.charCodeAt(i)) return false;
  return true;
}

/**
 * A Connection value names a token other than close and keep-alive: a field of
 * that name is hop-by-hop too (an upgrade's too: both sides' lean paths leave
 * those to node:http or to the field-by-field rewrite).
 */
export function connectionNamesFields(value: string): boolean {
  // What browsers and servers send, without splitting.
  if ((value.length === 10 && sameName(value, 'keep-alive')) || (value.length === 5 && sameName(value, 'close'))) return false;
  for (const part of value.split(',')) {
    const t = part.trim().toLowerCase();
    if (t !== '' && t !== 'close' && t !== 'keep-alive') return true;
  }
  return false;
}

/**
 * The [name, value, ...] list of a head already checked whole: `text` is its
 * start line and its field lines, each ended by CRLF. A name ends at its line's
 * first colon; a value is trimmed of SP and HTAB. `name` maps each name as read
 * (the response side keeps them lowercase). For the parsers' lazy lists: the
 * lean path reads a head without making one.
 */
export function fieldList(text: string, name: (raw: string) => string): string[] {
  const list: string[] = [];
  let at = text.indexOf('\r\n') + 2;
  while (at < text.length) {
    const eol = text.indexOf('\r\n', at);
    const colon = text.indexOf(':', at);
    let v = colon + 1;
    let c = text.charCodeAt(v);
    while (c === 32 || c === 9) c = text.charCodeAt(++v);
    let ve = eol;
    while (ve > v && ((c = text.charCodeAt(ve - 1)) === 32 || c === 9)) ve--;
    list.push(name(text.slice(at, colon)), text.slice(v, ve));
    at = eol + 2;
  }
  return list;
}
