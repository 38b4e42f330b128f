// Absolute-form request targets (`GET http://host/path HTTP/1.1`, RFC 9112 §3.2.2):
// the authority of the target wins over the Host header, so baton routes on it and
// forwards origin-form with Host set to it (as nginx does). The app then sees the
// very host the request was routed by. Pure, except normaliseAbsoluteForm, which
// rewrites the parsed request in place.

import type { IncomingMessage } from 'node:http';

/** An absolute-form target split into what baton routes on and what it forwards. */
export interface OriginForm {
  /** host[:port] as written in the target. */
  authority: string;
  /** The origin-form target: path and query, "/" when the target had no path. */
  path: string;
}

// scheme "://" authority, then the rest (path, query). Only http and https name an origin here.
const ABSOLUTE = /^(https?):\/\/([^/?#]*)([^#]*)$/i;
// An IP literal or a reg-name (no userinfo: RFC 9110 §4.2.4 forbids it in http URIs), then an optional port.
const AUTHORITY = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::\d{0,5})?$/;

/**
 * For a request target that is not origin-form ("/..."): its origin-form and
 * authority, or null when it is not an absolute-form target baton can forward
 * (another scheme, userinfo, an empty or malformed authority). "*" (OPTIONS *)
 * is left to the caller.
 */
export function parseAbsoluteForm(target: string): OriginForm | null {
  const m = ABSOLUTE.exec(target);
  if (m === null) return null;
  const authority = m[2]!;
  if (!AUTHORITY.test(authority)) return null;
  const rest = m[3]!;
  const path = rest === '' ? '/' : rest.charCodeAt(0) === 63 /* ? */ ? `/${rest}` : rest;
  return { authority, path };
}

/**
 * Rewrite a request whose target is absolute-form to origin-form, its Host
 * (parsed and raw) set to the target's authority. Returns false when the target
 * is neither origin-form, "*" nor a valid absolute-form (the caller answers 400).
 */
export function normaliseAbsoluteForm(req: IncomingMessage): boolean {
  const url = req.url ?? '/';
  if (url.charCodeAt(0) === 47 /* / */ || url === '*') return true;
  const form = parseAbsoluteForm(url);
  if (form === null) return false;
  req.url = form.path;
  req.headers.host = form.authority;
  const raw = req.rawHeaders;
  let found = false;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 4 && raw[i]!.toLowerCase() === 'host') {
      if (found) {
        raw.splice(i, 2);
        i -= 2;
      } else {
        raw[i + 1] = form.authority;
        found = true;
      }
    }
  }
  if (!found) raw.push('Host', form.authority);
  return true;
}
