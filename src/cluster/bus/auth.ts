/**
 * Authentication of mesh links with the cluster key.
 *
 * The dialer's upgrade request carries, in the `Murmur-Bus-Auth` header,
 * `1.<from>.<to>.<ts>.<nonce>.<mac>`: its node id and the acceptor's (base64url of UTF-8),
 * its clock in ms, 16 random bytes (base64url) and an HMAC-SHA256 (base64url) over all of it
 * and the cluster label. The acceptor checks, in this order: the shape (401), that the
 * request is addressed to itself (403), the timestamp within the replay window (403), the
 * MAC against every key of the keyring in constant time (403), and that the nonce was not
 * seen within the window (403): a captured request cannot be replayed, nor sent to another
 * node. The acceptor then proves it holds the key too: the first message on the link is an
 * HMAC over the dialer's nonce and both ids, which the dialer checks before trusting any
 * interest the acceptor sends.
 *
 * The MAC key is not the cluster key itself but one derived from it for this purpose
 * (HMAC(clusterKey, "murmur bus link v1")), so the bus and the gossip layer's AES-GCM never
 * use the same key bytes. A keyring (gossip's) rotates keys without downtime: the primary
 * signs, every key verifies.
 */
import { isUtf8 } from 'node:buffer';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { Keyring } from '../gossip/security.js';
import { MESH_DEFAULTS } from './bus-config.js';

/** Why a link request was refused; each has its own counter and HTTP status. */
export const AuthFailure = {
  /** No credentials header: 401. */
  Missing: 'missing',
  /** The header does not parse: 401. */
  Malformed: 'malformed',
  /** Addressed to another node (or from ourselves): 403. */
  WrongNode: 'wrong-node',
  /** Timestamp outside the replay window: 403. */
  Stale: 'stale',
  /** No key of the keyring gives that MAC: 403. */
  Invalid: 'invalid',
  /** The nonce was already used within the window: 403. */
  Replay: 'replay',
  /** Too many nonces remembered: 503, retry later. */
  Busy: 'busy',
} as const;
export type AuthFailure = (typeof AuthFailure)[keyof typeof AuthFailure];

export const AUTH_STATUS: Readonly<Record<AuthFailure, number>> = {
  missing: 401,
  malformed: 401,
  'wrong-node': 403,
  stale: 403,
  invalid: 403,
  replay: 403,
  busy: 503,
};

export type VerifyResult = { ok: true; from: string; nonce: Buffer; keyIndex: number } | { ok: false; reason: AuthFailure };

const NONCE_BYTES = 16;
const MAC_BYTES = 32;
/** Node ids are gossip names; 255 bytes bounds the header whatever a peer sends. */
export const MAX_NODE_ID_BYTES = 255;
const DERIVE_LABEL = 'murmur bus link v1';
const REQUEST_TAG = 'murmur-bus-request.1';
const ACCEPT_TAG = 'murmur-bus-accept.1';

export interface LinkAuthOptions {
  /** Cluster label bound into every MAC: nodes of different labels never link. */
  label?: string;
  replayWindowMs?: number;
  maxNonces?: number;
  /** The clock, ms since the epoch (tests move it). */
  now?: () => number;
}

export class LinkAuth {
  readonly keyring: Keyring;
  readonly #label: Buffer;
  readonly #window: number;
  readonly #maxNonces: number;
  readonly #now: () => number;
  /** nonce (base64url) -> time it may be forgotten; insertion order is roughly time order. */
  readonly #nonces = new Map<string, number>();
  /** Derived link keys per cluster key, so rotation needs no restart. */
  readonly #derived = new WeakMap<Buffer, Buffer>();

  /** @throws KeyringError for a bad key. */
  constructor(keys: Keyring | readonly Uint8Array[], options: LinkAuthOptions = {}) {
    this.keyring = keys instanceof Keyring ? keys : new Keyring(keys);
    this.#label = Buffer.from(options.label ?? '', 'utf8');
    this.#window = options.replayWindowMs ?? MESH_DEFAULTS.replayWindowMs;
    this.#maxNonces = options.maxNonces ?? MESH_DEFAULTS.maxNonces;
    this.#now = options.now ?? Date.now;
  }

  #linkKey(clusterKey: Buffer): Buffer {
    let k = this.#derived.get(clusterKey);
    if (k === undefined) {
      k = createHmac('sha256', clusterKey).update(DERIVE_LABEL).digest();
      this.#derived.set(clusterKey, k);
    }
    return k;
  }

  /** Length-prefixed fields: no two different inputs give the same bytes. */
  #mac(key: Buffer, tag: string, fields: Array<Buffer | string>): Buffer {
    const h = createHmac('sha256', this.#linkKey(key));
    h.update(tag);
    const len = Buffer.allocUnsafe(2);
    for (const f of [this.#label, ...fields]) {
      const b = typeof f === 'string' ? Buffer.from(f, 'utf8') : f;
      len.writeUInt16BE(b.length, 0);
      h.update(len);
      h.update(b);
    }
    return h.digest();
  }

  /** The credentials header a dialer `from` sends to acceptor `to`, and its nonce. */
  sign(from: string, to: string): { header: string; nonce: Buffer } {
    const nonce = randomBytes(NONCE_BYTES);
    const ts = String(Math.floor(this.#now()));
    const mac = this.#mac(this.keyring.primary, REQUEST_TAG, [from, to, ts, nonce]);
    const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64url');
    return { header: `1.${b64(from)}.${b64(to)}.${ts}.${nonce.toString('base64url')}.${mac.toString('base64url')}`, nonce };
  }

  /** Checks a link request addressed to `self`. Never throws. */
  verify(header: string | undefined, self: string): VerifyResult {
    if (header === undefined || header === '') return { ok: false, reason: AuthFailure.Missing };
    const parts = header.split('.');
    if (parts.length !== 6 || parts[0] !== '1') return { ok: false, reason: AuthFailure.Malformed };
    const from = decodeId(parts[1]!);
    const to = decodeId(parts[2]!);
    const tsText = parts[3]!;
    const nonce = decodeFixed(parts[4]!, NONCE_BYTES);
    const mac = decodeFixed(parts[5]!, MAC_BYTES);
    if (from === null || to === null || nonce === null || mac === null || !/^[0-9]{1,15}$/.test(tsText)) {
      return { ok: false, reason: AuthFailure.Malformed };
    }
    if (to !== self || from === self) return { ok: false, reason: AuthFailure.WrongNode };
    const now = this.#now();
    const ts = Number(tsText);
    if (Math.abs(now - ts) > this.#window) return { ok: false, reason: AuthFailure.Stale };
    // Every key is tried, whichever matches: the time taken says nothing about which did.
    let keyIndex = -1;
    const keys = this.keyring.list;
    for (let i = 0; i < keys.length; i++) {
      const expected = this.#mac(keys[i]!, REQUEST_TAG, [from, to, tsText, nonce]);
      if (timingSafeEqual(expected, mac) && keyIndex < 0) keyIndex = i;
    }
    if (keyIndex < 0) return { ok: false, reason: AuthFailure.Invalid };
    // Only authenticated requests reach the nonce cache, so nobody without the key can fill it.
    this.#expireNonces(now);
    const id = parts[4]!;
    if (this.#nonces.has(id)) return { ok: false, reason: AuthFailure.Replay };
    if (this.#nonces.size >= this.#maxNonces) return { ok: false, reason: AuthFailure.Busy };
    // Remembered until the timestamp can no longer pass the window check.
    this.#nonces.set(id, ts + this.#window);
    return { ok: true, from, nonce, keyIndex };
  }

  #expireNonces(now: number): void {
    for (const [id, until] of this.#nonces) {
      if (until >= now) break;
      this.#nonces.delete(id);
    }
  }

  /** The acceptor's proof for a link verified with key `keyIndex`. */
  acceptProof(keyIndex: number, acceptor: string, dialer: string, nonce: Buffer): Buffer {
    const key = this.keyring.list[keyIndex] ?? this.keyring.primary;
    return this.#mac(key, ACCEPT_TAG, [acceptor, dialer, nonce]);
  }

  /** Whether `proof` shows that `acceptor` holds one of our keys (constant time per key). */
  checkAcceptProof(proof: Uint8Array, acceptor: string, dialer: string, nonce: Buffer): boolean {
    if (proof.length !== MAC_BYTES) return false;
    let ok = false;
    for (const key of this.keyring.list) {
      if (timingSafeEqual(this.#mac(key, ACCEPT_TAG, [acceptor, dialer, nonce]), proof)) ok = true;
    }
    return ok;
  }
}

export const ACCEPT_PROOF_BYTES = MAC_BYTES;

/** base64url of a UTF-8 node id, canonical and bounded, or null. */
function decodeId(text: string): string | null {
  if (text.length === 0 || text.length > Math.ceil((MAX_NODE_ID_BYTES * 4) / 3) || !/^[A-Za-z0-9_-]+$/.test(text)) return null;
  const b = Buffer.from(text, 'base64url');
  if (b.length === 0 || b.toString('base64url') !== text || !isUtf8(b)) return null;
  return b.toString('utf8');
}

function decodeFixed(text: string, bytes: number): Buffer | null {
  if (!/^[A-Za-z0-9_-]+$/.test(text)) return null;
  const b = Buffer.from(text, 'base64url');
  return b.length === bytes && b.toString('base64url') === text ? b : null;
}
