/**
 * Access tokens: `m1.<payload>.<signature>`, where payload is base64url(JSON claims) and
 * signature is base64url(HMAC-SHA256(secret, "m1.<payload>")). Compact, URL-safe (it fits a
 * `?token=` query parameter), and checked without a library:
 *
 * 1. shape (three parts, prefix `m1`, base64url alphabet, at most MAX_TOKEN_LENGTH chars);
 * 2. signature, compared in constant time (crypto.timingSafeEqual) BEFORE the payload is parsed,
 *    so unauthenticated bytes never reach JSON.parse. The signature and the payload must be the canonical base64url of their bytes (no spare
 *    bits set), so one token has exactly one spelling;
 * 3. claims (types and bounds; the user id and patterns well-formed Unicode), then expiry.
 *
 * Claims: `user` (id), `exp` and `iat` (Unix seconds), and three lists of topic patterns
 * (see glob.ts): `sub` (may subscribe and read history), `pub` (may publish), `presence`
 * (may see who is in a topic and get its join/leave events).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { checkPattern } from './glob.js';
import { MAX_USER_LENGTH, userProblem, wellFormed } from './validate.js';

export { MAX_USER_LENGTH };

export const TOKEN_VERSION = 'm1';
/** Longest token accepted: it travels in a URL or header, and 4 KiB holds 3 x 32 patterns. */
export const MAX_TOKEN_LENGTH = 4096;
/** Patterns per list in a token or an anonymous permission set. */
export const MAX_PATTERNS = 32;

/** What a connection may do, as lists of topic patterns. */
export interface Permissions {
  subscribe: readonly string[];
  publish: readonly string[];
  presence: readonly string[];
}

export interface TokenClaims {
  user: string;
  /** Expiry, Unix seconds. */
  exp: number;
  /** Issued at, Unix seconds. */
  iat: number;
  permissions: Permissions;
}

/** Why a token was refused: a stable code (also the upgrade's rejection reason in metrics). */
export const TokenErrorCode = {
  TOKEN_MISSING: 'no token was presented and the server requires one',
  TOKEN_MALFORMED: 'not a murmur token (m1.<payload>.<signature>)',
  TOKEN_BAD_SIGNATURE: 'the signature does not match (wrong secret or altered token)',
  TOKEN_INVALID_CLAIMS: 'signed, but the claims are not valid',
  TOKEN_EXPIRED: 'the token has expired',
  TOKEN_NO_SECRET: 'a token was presented but the server has no secret to verify it',
} as const;
export type TokenErrorCode = keyof typeof TokenErrorCode;

export type TokenCheck = { ok: true; claims: TokenClaims } | { ok: false; code: TokenErrorCode; message: string };

export interface MintOptions {
  user: string;
  subscribe?: readonly string[];
  publish?: readonly string[];
  presence?: readonly string[];
  /** Lifetime in seconds. */
  ttlSeconds: number;
  /** Clock, ms since the epoch (tests). */
  now?: number;
}

/**
 * Mints a token.
 * @throws TypeError for an empty secret, a bad user id, a pattern that is not valid, more than
 *   MAX_PATTERNS per list, or a ttl that is not a positive number.
 */
export function mintToken(secret: string, o: MintOptions): string {
  if (typeof secret !== 'string' || secret.length === 0) throw new TypeError('a token secret must be a non-empty string');
  checkUser(o.user);
  if (!Number.isFinite(o.ttlSeconds) || o.ttlSeconds <= 0) throw new TypeError(`ttl must be a positive number of seconds, got ${o.ttlSeconds}`);
  const iat = Math.floor((o.now ?? Date.now()) / 1000);
  const claims = {
    user: o.user,
    iat,
    exp: iat + Math.ceil(o.ttlSeconds),
    sub: checkPatterns(o.subscribe ?? [], 'subscribe'),
    pub: checkPatterns(o.publish ?? [], 'publish'),
    presence: checkPatterns(o.presence ?? [], 'presence'),
  };
  const signed = `${TOKEN_VERSION}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  const token = `${signed}.${sign(secret, signed).toString('base64url')}`;
  if (token.length > MAX_TOKEN_LENGTH) throw new TypeError(`the token would be ${token.length} characters, over ${MAX_TOKEN_LENGTH}`);
  return token;
}

const B64URL = /^[A-Za-z0-9_-]+$/;
const SIG_CHARS = 43; // base64url of 32 bytes, unpadded

/** Verifies a token. Never throws. */
export function verifyToken(token: string, secret: string | undefined, nowMs: number = Date.now()): TokenCheck {
  if (secret === undefined || secret === '') return fail('TOKEN_NO_SECRET');
  if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH) return fail('TOKEN_MALFORMED');
  const first = token.indexOf('.');
  const last = token.lastIndexOf('.');
  if (first === -1 || first === last || token.slice(0, first) !== TOKEN_VERSION) return fail('TOKEN_MALFORMED');
  const payload = token.slice(first + 1, last);
  const sig = token.slice(last + 1);
  if (!B64URL.test(payload) || sig.length !== SIG_CHARS || !B64URL.test(sig)) return fail('TOKEN_MALFORMED');
  // The text is compared, not the decoded bytes: the 43rd character carries 2 bits beyond
  // the 32 bytes that decoding drops, so four spellings of one signature would all pass.
  const expected = Buffer.from(sign(secret, token.slice(0, last)).toString('base64url'), 'latin1');
  const given = Buffer.from(sig, 'latin1');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return fail('TOKEN_BAD_SIGNATURE');
  // The payload, too, has one spelling: its last character's spare bits must be zero.
  const claimBytes = Buffer.from(payload, 'base64url');
  if (claimBytes.toString('base64url') !== payload) return fail('TOKEN_MALFORMED');
  let raw: unknown;
  try {
    raw = JSON.parse(claimBytes.toString('utf8'));
  } catch {
    return fail('TOKEN_INVALID_CLAIMS');
  }
  const claims = readClaims(raw);
  if (claims === undefined) return fail('TOKEN_INVALID_CLAIMS');
  if (claims.exp * 1000 <= nowMs) return fail('TOKEN_EXPIRED');
  return { ok: true, claims };
}

function sign(secret: string, data: string): Buffer {
  return createHmac('sha256', secret).update(data).digest();
}

function fail(code: TokenErrorCode): TokenCheck {
  return { ok: false, code, message: TokenErrorCode[code] };
}

function readClaims(raw: unknown): TokenClaims | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const r = raw as Record<string, unknown>;
  if (userProblem(r.user, 'user') !== null) return undefined;
  if (typeof r.exp !== 'number' || !Number.isFinite(r.exp)) return undefined;
  const iat = typeof r.iat === 'number' && Number.isFinite(r.iat) ? r.iat : 0;
  const sub = patternList(r.sub);
  const pub = patternList(r.pub);
  const presence = patternList(r.presence);
  if (sub === undefined || pub === undefined || presence === undefined) return undefined;
  return { user: r.user as string, exp: r.exp, iat, permissions: { subscribe: sub, publish: pub, presence } };
}

function patternList(v: unknown): string[] | undefined {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.length > MAX_PATTERNS) return undefined;
  for (const p of v) {
    if (typeof p !== 'string' || !wellFormed(p)) return undefined;
    try {
      checkPattern(p as string);
    } catch {
      return undefined;
    }
  }
  return v as string[];
}

function checkUser(u: string): void {
  const problem = userProblem(u, 'a user id');
  if (problem !== null) throw new TypeError(`${problem.message}: ${JSON.stringify(u)}`);
}

/** Validates a list of patterns (for tokens and for the anonymous permission set). */
export function checkPatterns(list: readonly string[], what: string): string[] {
  if (list.length > MAX_PATTERNS) throw new TypeError(`at most ${MAX_PATTERNS} ${what} patterns, got ${list.length}`);
  for (const p of list) {
    if (typeof p === 'string' && !wellFormed(p)) throw new TypeError(`a ${what} pattern holds a lone UTF-16 surrogate: ${JSON.stringify(p)}`);
    checkPattern(p);
  }
  return [...list];
}
