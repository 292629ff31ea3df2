/**
 * Authenticated encryption of every packet and stream with a shared cluster key.
 *
 * Sealed layout: `[version u8][channel u8][labelLen u8][label][nonce 12][ciphertext][tag 16]`.
 * The header (version, channel, label) is the AES-256-GCM additional authenticated data:
 * it travels in the clear, so a packet of another cluster label is told apart cheaply and
 * counted, yet cannot be altered (a packet re-labelled or moved from a stream to a datagram
 * fails authentication). Replays are possible within the key's life; the protocol tolerates
 * them because every state change is ordered by incarnation and stale ones are ignored.
 */
import { createCipheriv, createDecipheriv, randomBytes, timingSafeEqual } from 'node:crypto';
import { WIRE_VERSION } from './gossip-wire.js';

export const KEY_BYTES = 32;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const MAX_LABEL_BYTES = 255;

/**
 * Which channel a sealed payload belongs to; part of the authenticated header. Append-only.
 * `StreamHead` seals the fixed-size record that opens every stream (the length of the frame
 * that follows), so a stream is authenticated before anything large is read; `Refusal` is
 * the clear `[version][Refusal][reason]` a node answers a refused stream with. `WatchHello`
 * seals the record that opens a liveness link on the gossip port, `Watch` every record after
 * it (watch-wire.ts).
 */
export const Channel = { Packet: 1, Stream: 2, StreamHead: 3, Refusal: 4, WatchHello: 5, Watch: 6 } as const;
export type Channel = (typeof Channel)[keyof typeof Channel];

/** Why `open` refused its input. Each reason has its own counter. */
export const OpenFailure = {
  /** Too short or wrong channel. */
  Malformed: 'malformed',
  /** Another cluster label. */
  Label: 'label',
  /** No key of the keyring authenticates it (another key, or tampered bytes). */
  Auth: 'auth',
  /** Another wire version. */
  Version: 'version',
} as const;
export type OpenFailure = (typeof OpenFailure)[keyof typeof OpenFailure];

export type OpenResult = { ok: true; plain: Uint8Array } | { ok: false; reason: OpenFailure };

/** What the state machine needs from the security layer. The simulator may swap in a cheaper one with the same sizes. */
export interface PacketSealer {
  /** Bytes seal() adds to a plaintext. */
  readonly overhead: number;
  seal(plain: Uint8Array, channel: Channel): Uint8Array;
  open(sealed: Uint8Array, channel: Channel): OpenResult;
}

/** Error thrown for an unusable key or keyring operation. */
export class KeyringError extends Error {
  readonly code = 'GOSSIP_ERR_KEYRING';
  constructor(message: string) {
    super(message);
    this.name = 'KeyringError';
  }
}

function checkKey(key: Uint8Array): Buffer {
  if (!(key instanceof Uint8Array) || key.length !== KEY_BYTES) throw new KeyringError(`a cluster key is ${KEY_BYTES} bytes (AES-256)`);
  return Buffer.from(key); // own copy: the caller may reuse its buffer
}

/**
 * The cluster keys. The primary key seals everything sent; every key is tried to open what
 * is received, primary first. Rotation without downtime: `add(new)` on every node, then
 * `use(new)` on every node, then `remove(old)` on every node.
 */
export class Keyring {
  #keys: Buffer[];

  /** @param keys the primary first. @throws KeyringError on an empty list or a key that is not 32 bytes. */
  constructor(keys: readonly Uint8Array[]) {
    if (keys.length === 0) throw new KeyringError('a keyring needs at least one key');
    this.#keys = keys.map(checkKey);
  }

  get primary(): Buffer {
    return this.#keys[0] as Buffer;
  }

  /** Copies of the keys, primary first. */
  keys(): Buffer[] {
    return this.#keys.map((k) => Buffer.from(k));
  }

  #index(key: Uint8Array): number {
    const k = checkKey(key);
    return this.#keys.findIndex((x) => timingSafeEqual(x, k));
  }

  /** Accept `key` for receiving (no effect if present). */
  add(key: Uint8Array): void {
    if (this.#index(key) < 0) this.#keys.push(checkKey(key));
  }

  /** Make `key` (already added) the primary, used for sending. */
  use(key: Uint8Array): void {
    const i = this.#index(key);
    if (i < 0) throw new KeyringError('use(): the key is not in the keyring; add() it first');
    const [k] = this.#keys.splice(i, 1);
    this.#keys.unshift(k as Buffer);
  }

  /** Stop accepting `key`. @throws KeyringError for the primary key. */
  remove(key: Uint8Array): void {
    const i = this.#index(key);
    if (i === 0) throw new KeyringError('remove(): cannot remove the primary key; use() another first');
    if (i > 0) this.#keys.splice(i, 1);
  }

  /** All keys, primary first (internal: no copies). */
  get list(): readonly Buffer[] {
    return this.#keys;
  }
}

/** Header bytes of a sealed payload; shared by the real and the simulated sealer. */
export function sealedHeader(channel: Channel, label: Buffer): Buffer {
  const h = Buffer.allocUnsafe(3 + label.length);
  h[0] = WIRE_VERSION;
  h[1] = channel;
  h[2] = label.length;
  label.copy(h, 3);
  return h;
}

/** Check a sealed payload's header; returns the header length or a failure. */
export function checkHeader(sealed: Uint8Array, channel: Channel, label: Buffer): number | OpenFailure {
  if (sealed.length < 3) return OpenFailure.Malformed;
  if (sealed[0] !== WIRE_VERSION) return OpenFailure.Version;
  if (sealed[1] !== channel) return OpenFailure.Malformed;
  const len = sealed[2] as number;
  const headerLen = 3 + len;
  if (sealed.length < headerLen + NONCE_BYTES + TAG_BYTES) return OpenFailure.Malformed;
  if (len !== label.length) return OpenFailure.Label;
  for (let i = 0; i < len; i++) if (sealed[3 + i] !== label[i]) return OpenFailure.Label;
  return headerLen;
}

export function labelBytes(label: string): Buffer {
  const b = Buffer.from(label, 'utf8');
  if (b.length > MAX_LABEL_BYTES) throw new KeyringError(`a cluster label is at most ${MAX_LABEL_BYTES} bytes`);
  return b;
}

/** AES-256-GCM sealer over a Keyring, with the cluster label bound into the authentication. */
export class AesGcmSealer implements PacketSealer {
  readonly keyring: Keyring;
  readonly overhead: number;
  readonly #label: Buffer;
  readonly #headers: Buffer[];
  // Nonce = 8 random bytes per sealer + a 32-bit counter: unique per (key, message) without
  // a random draw per packet; the random part is redrawn before the counter wraps.
  readonly #nonce = Buffer.alloc(NONCE_BYTES);
  #counter = 0;

  constructor(keyring: Keyring, label = '') {
    this.keyring = keyring;
    this.#label = labelBytes(label);
    this.overhead = 3 + this.#label.length + NONCE_BYTES + TAG_BYTES;
    // Indexed by channel - 1; the clear Refusal's slot is never used.
    this.#headers = Object.values(Channel).map((c) => sealedHeader(c, this.#label));
    randomBytes(8).copy(this.#nonce, 0);
  }

  /** The cluster label's bytes (sent in the clear in every header). */
  get label(): Buffer {
    return this.#label;
  }

  seal(plain: Uint8Array, channel: Channel): Uint8Array {
    const header = this.#headers[channel - 1] as Buffer;
    if (this.#counter === 0xffffffff) {
      randomBytes(8).copy(this.#nonce, 0);
      this.#counter = 0;
    }
    this.#nonce.writeUInt32BE(this.#counter++, 8);
    const out = Buffer.allocUnsafe(header.length + NONCE_BYTES + plain.length + TAG_BYTES);
    header.copy(out, 0);
    this.#nonce.copy(out, header.length);
    const cipher = createCipheriv('aes-256-gcm', this.keyring.primary, this.#nonce);
    cipher.setAAD(header);
    const body = cipher.update(plain);
    cipher.final(); // GCM is a stream mode: final() outputs nothing
    body.copy(out, header.length + NONCE_BYTES);
    cipher.getAuthTag().copy(out, out.length - TAG_BYTES);
    return out;
  }

  open(sealed: Uint8Array, channel: Channel): OpenResult {
    const h = checkHeader(sealed, channel, this.#label);
    if (typeof h !== 'number') return { ok: false, reason: h };
    const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
    const header = buf.subarray(0, h);
    const nonce = buf.subarray(h, h + NONCE_BYTES);
    const body = buf.subarray(h + NONCE_BYTES, buf.length - TAG_BYTES);
    const tag = buf.subarray(buf.length - TAG_BYTES);
    for (const key of this.keyring.list) {
      try {
        const d = createDecipheriv('aes-256-gcm', key, nonce);
        d.setAAD(header);
        d.setAuthTag(tag);
        const plain = d.update(body);
        d.final(); // throws when the tag does not match
        return { ok: true, plain };
      } catch {
        // next key
      }
    }
    return { ok: false, reason: OpenFailure.Auth };
  }
}

/** A fresh random 32-byte cluster key. */
export function generateKey(): Buffer {
  return randomBytes(KEY_BYTES);
}
