/**
 * Byte classes of the HTTP/1.1 grammar (RFC 7230 3.2, 3.2.6) as lookup tables, shared by the
 * head parser, the upgrade checks and the response writers. Internal to src/http.
 */
import { parseTokenList } from '../protocol/handshake.js';

/** tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA */
export const TCHAR = new Uint8Array(256);
/** field-vchar / SP / HTAB: what a header value may contain (obs-text 0x80-0xFF included, CTLs and DEL excluded). */
export const FIELD_CHAR = new Uint8Array(256);

for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;
for (const ch of "!#$%&'*+-.^_`|~") TCHAR[ch.charCodeAt(0)] = 1;

FIELD_CHAR[0x09] = 1;
for (let c = 0x20; c <= 0x7e; c++) FIELD_CHAR[c] = 1;
for (let c = 0x80; c <= 0xff; c++) FIELD_CHAR[c] = 1;

export const SP = 0x20;
export const HTAB = 0x09;
export const CR = 0x0d;
export const LF = 0x0a;
export const COLON = 0x3a;

/** True if `s` is a non-empty RFC 7230 token. */
export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || TCHAR[c] !== 1) return false;
  }
  return true;
}

/** True if `s` may be sent as a header value: field-vchar, SP and HTAB only, so no CR/LF/NUL (no response splitting). */
export function isFieldValue(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || FIELD_CHAR[c] !== 1) return false;
  }
  return true;
}

/** True if the comma-separated list `value` has an element equal to `lowerToken`, ASCII case-insensitively. */
export function listHasToken(value: string, lowerToken: string): boolean {
  for (const el of parseTokenList(value)) {
    if (el.length === lowerToken.length && el.toLowerCase() === lowerToken) return true;
  }
  return false;
}
