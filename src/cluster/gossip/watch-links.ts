/**
 * Liveness links: each member keeps one idle TCP connection, on the gossip port, to each of
 * the `watchLinks` members that follow it on a ring ordered by a hash of the names. When a
 * watched process dies its kernel closes the connection at once; a close that came without a
 * goodbye (a Bye record) on a link we did not close ourselves is the evidence a mesh bus
 * link gives (GossipNode.linkLost): the watchers suspect the member at once and confirm each
 * other. This gives every bus (Redis, none) the detection speed of the mesh, at the cost of
 * a few sockets per member whatever the cluster size.
 *
 * Only the dialer (the watcher) takes a close as evidence, and only once the acceptor has
 * answered its hello with a sealed echo of the hello's nonce (it holds the cluster key and
 * is not a replay). The acceptor counts a link as the dialer's only once the dialer has echoed
 * the acceptor's own challenge, so a replayed hello can neither stand for a member nor push
 * its link out. Closes we start (a new plan, silence, leaving) say Bye first, so the
 * other side takes them as nothing.
 */
import { randomBytes } from 'node:crypto';
import { createConnection, type Socket } from 'node:net';
import type { GossipConfig } from './gossip-config.js';
import type { AesGcmSealer } from './security.js';
import { encodeRefusal, refusalText, StreamRefusal } from './stream-head.js';
import { encodeWatchHello, encodeWatchRecord, WATCH_NONCE_BYTES, WatchReader, WatchRecord, type WatchEvent, type WatchHello } from './watch-wire.js';

/** First redial of a target after a failure; doubles per failure (a refusing or absent peer costs one connect per backoff). */
const RETRY_BASE_MS = 500;
/** Longest wait between dials of one target. */
const RETRY_MAX_MS = 30_000;
/** A link silent for this many heartbeats is closed (not evidence): a half-open connection, a host gone silently. */
const SILENT_HEARTBEATS = 3;
/** Heartbeats, silence and due redials are checked this often at most (one timer per node). */
const SWEEP_MS = 1000;

/** What the links need from the gossip node. */
export interface WatchHost {
  readonly name: string;
  readonly sealer: AesGcmSealer;
  readonly config: GossipConfig;
  /** Live members other than us. */
  peers(): readonly { name: string; addr: string }[];
  resolve(addr: string): { host: string; port: number } | null;
  /** Fault injection: dials to `addr` fail. */
  blocked(addr: string): boolean;
  /** A watched member's link closed without a goodbye. */
  linkLost(name: string): void;
  /** We refused an inbound link (logged like a refused stream). */
  refused(addr: string, reason: string): void;
  now(): number;
}

/** Counters of the liveness links. */
export interface WatchCounters {
  /** Outbound links established now. */
  watchLinksOut: number;
  /** Inbound links held now. */
  watchLinksIn: number;
  /** Outbound links closed without a goodbye, handed to the failure detector. */
  watchLinksLost: number;
  /** Inbound links refused (busy, for another member). */
  watchLinksRefused: number;
}

interface Link {
  readonly sock: Socket;
  readonly reader: WatchReader;
  lastHeard: number;
  lastSent: number;
  /** We closed it (with a Bye): its close is nothing. */
  closing: boolean;
  /** The peer said Bye: its close is nothing. */
  byeHeard: boolean;
}

interface OutLink extends Link {
  readonly name: string;
  readonly addr: string;
  readonly nonce: Buffer;
  /** The welcome came: from now on a close without a goodbye is evidence. */
  established: boolean;
  helloDeadline: NodeJS.Timeout | null;
}

interface InLink extends Link {
  readonly from: string;
  readonly ip: string;
  /** The nonce our welcome sent; the dialer's Proof must echo it. */
  readonly challenge: Buffer;
  /** When the hello came: a link still unproven after streamHeadTimeoutMs is closed. */
  readonly since: number;
}

/** FNV-1a of a name: the ring order, the same on every member. */
function ringHash(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * The `k` members that follow `self` on the ring ordered by hash (then name), `self` left out.
 * Every member computes the same ring from the same membership, so each is watched by the
 * `k` members that precede it.
 */
export function ringSuccessors(self: string, names: readonly string[], k: number): string[] {
  const ring = [...new Set([self, ...names])].map((name) => ({ name, h: ringHash(name) }));
  ring.sort((a, b) => a.h - b.h || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const at = ring.findIndex((e) => e.name === self);
  const out: string[] = [];
  for (let i = 1; i < ring.length && out.length < k; i++) out.push((ring[(at + i) % ring.length] as { name: string }).name);
  return out;
}

export class WatchLinks {
  readonly #host: WatchHost;
  readonly #out = new Map<string, OutLink>();
  /** Proven inbound links, one per dialer name. */
  readonly #in = new Map<string, InLink>();
  /** Inbound links whose dialer has not answered our challenge yet. */
  readonly #unproven = new Set<InLink>();
  readonly #inByIp = new Map<string, number>();
  /** Backoff per target: failures in a row and when the next dial may go. */
  readonly #retry = new Map<string, { failures: number; at: number }>();
  readonly #counters = { watchLinksLost: 0, watchLinksRefused: 0 };
  #timer: NodeJS.Timeout | null = null;
  #planQueued = false;
  /** Leaving or stopped: no dial, no evidence. */
  #quiet = false;

  constructor(host: WatchHost) {
    this.#host = host;
  }

  get counters(): WatchCounters {
    let out = 0;
    for (const l of this.#out.values()) if (l.established) out++;
    return { watchLinksOut: out, watchLinksIn: this.#in.size, ...this.#counters };
  }

  start(): void {
    this.#timer = setInterval(() => this.#sweep(), Math.min(SWEEP_MS, this.#host.config.watchHeartbeatMs));
    this.#timer.unref();
    this.plan();
  }

  /** Re-plan soon (membership changed); many changes in one turn make one plan. */
  schedulePlan(): void {
    if (this.#planQueued || this.#quiet) return;
    this.#planQueued = true;
    setImmediate(() => {
      this.#planQueued = false;
      this.plan();
    });
  }

  /** Link to the current targets, close links to former ones (with a goodbye). */
  plan(): void {
    if (this.#quiet) return;
    const host = this.#host;
    const peers = host.peers();
    const addrOf = new Map(peers.map((p) => [p.name, p.addr]));
    const targets = ringSuccessors(host.name, [...addrOf.keys()], host.config.watchLinks);
    const wanted = new Set(targets);
    for (const [name, link] of this.#out) {
      if (!wanted.has(name) || addrOf.get(name) !== link.addr) this.#close(link);
    }
    for (const name of this.#retry.keys()) if (!wanted.has(name)) this.#retry.delete(name);
    const now = host.now();
    for (const name of targets) {
      if (this.#out.has(name) || (this.#retry.get(name)?.at ?? 0) > now) continue;
      this.#dial(name, addrOf.get(name) as string);
    }
  }

  /** Leaving: say goodbye on every link and close it; nothing is dialled or taken as evidence any more. */
  goodbye(): void {
    this.#quiet = true;
    for (const link of this.#links()) this.#close(link);
  }

  #links(): (OutLink | InLink)[] {
    return [...this.#out.values(), ...this.#in.values(), ...this.#unproven];
  }

  /** Stop at once: sockets destroyed without a word (to peers this looks like a crash). */
  stop(): void {
    this.#quiet = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    for (const link of this.#links()) {
      link.closing = true;
      link.sock.destroy();
    }
  }

  /**
   * An inbound connection whose hello authenticated (GossipNode's stream listener read it):
   * answer it with the welcome and a challenge, or refuse it (meant for another member; over
   * `maxWatchLinksIn` in all or `maxWatchLinksInPerAddress` from its IP, proven or not). A
   * member links to us once: a new link from the same member, once proven, replaces its old one.
   */
  accept(sock: Socket, hello: WatchHello, rest: Buffer, ip: string, addr: string): void {
    const host = this.#host;
    const c = host.config;
    if (this.#quiet) {
      sock.destroy();
      return;
    }
    let why: StreamRefusal | null = null;
    if (hello.to !== host.name) why = StreamRefusal.Stranger;
    else if (this.#in.size + this.#unproven.size >= c.maxWatchLinksIn || (this.#inByIp.get(ip) ?? 0) >= c.maxWatchLinksInPerAddress) why = StreamRefusal.Busy;
    if (why !== null) {
      this.#counters.watchLinksRefused++;
      host.refused(addr, refusalText(why));
      sock.on('error', () => {});
      sock.end(encodeRefusal(why));
      sock.destroySoon();
      return;
    }
    const now = host.now();
    const link: InLink = { sock, reader: new WatchReader(host.sealer), from: hello.from, ip, challenge: randomBytes(WATCH_NONCE_BYTES), since: now, lastHeard: now, lastSent: now, closing: false, byeHeard: false };
    this.#unproven.add(link);
    this.#inByIp.set(ip, (this.#inByIp.get(ip) ?? 0) + 1);
    sock.setNoDelay(true);
    sock.on('error', () => {});
    sock.on('close', () => this.#forget(link));
    sock.on('data', (chunk: Buffer) => this.#onRecords(link, link.reader.push(chunk)));
    sock.write(encodeWatchRecord(host.sealer, WatchRecord.Welcome, hello.nonce, link.challenge));
    if (rest.length > 0) this.#onRecords(link, link.reader.push(rest));
  }

  #dial(name: string, addr: string): void {
    const host = this.#host;
    const a = host.resolve(addr);
    if (a === null || host.blocked(addr)) {
      this.#failed(name);
      return;
    }
    const sock = createConnection({ host: a.host, port: a.port });
    const now = host.now();
    const link: OutLink = { sock, reader: new WatchReader(host.sealer), name, addr, nonce: randomBytes(WATCH_NONCE_BYTES), established: false, helloDeadline: null, lastHeard: now, lastSent: now, closing: false, byeHeard: false };
    this.#out.set(name, link);
    // The welcome is one round trip away; a peer that does not send it in time holds nothing.
    link.helloDeadline = setTimeout(() => this.#close(link), host.config.streamHeadTimeoutMs);
    sock.setNoDelay(true);
    sock.on('connect', () => sock.write(encodeWatchHello(host.sealer, { from: host.name, to: name, nonce: link.nonce })));
    sock.on('error', () => {});
    sock.on('close', () => this.#outClosed(link));
    sock.on('data', (chunk: Buffer) => this.#onRecords(link, link.reader.push(chunk)));
  }

  #onRecords(link: OutLink | InLink, events: readonly WatchEvent[]): void {
    for (const e of events) {
      if (link.closing) return;
      // A refusal (busy, another member) or broken bytes: closed, never evidence; a dial not
      // welcomed backs off.
      if (e.kind === 'refused') return this.#close(link, false);
      if (e.kind === 'fail') return this.#close(link);
      link.lastHeard = this.#host.now();
      if (e.type === WatchRecord.Bye) {
        link.byeHeard = true;
        return this.#close(link, false);
      }
      if (e.type === WatchRecord.Ping) continue;
      if (!('name' in link ? this.#welcomed(link, e.nonce, e.nonce2) : this.#proven(link, e.type, e.nonce))) return this.#close(link);
    }
  }

  /** Only the acceptor welcomes, once, echoing our nonce; we answer its challenge. */
  #welcomed(link: OutLink, echo: Buffer, challenge: Buffer): boolean {
    if (link.established || !echo.equals(link.nonce)) return false;
    link.established = true;
    if (link.helloDeadline !== null) clearTimeout(link.helloDeadline);
    link.helloDeadline = null;
    this.#retry.delete(link.name);
    link.sock.write(encodeWatchRecord(this.#host.sealer, WatchRecord.Proof, challenge));
    return true;
  }

  /** Only the dialer proves, once, echoing our challenge: the link is now its, replacing an older one. */
  #proven(link: InLink, type: WatchRecord, echo: Buffer): boolean {
    if (type !== WatchRecord.Proof || !this.#unproven.has(link) || !echo.equals(link.challenge)) return false;
    this.#unproven.delete(link);
    const old = this.#in.get(link.from);
    if (old !== undefined) this.#close(old); // frees its slot first
    this.#in.set(link.from, link);
    return true;
  }

  /** Close a link ourselves: a Bye first (unless the peer spoke last), so its close is no evidence on either side. */
  #close(link: OutLink | InLink, bye = true): void {
    if (link.closing) return;
    link.closing = true;
    if ('name' in link) {
      if (this.#out.get(link.name) === link) this.#out.delete(link.name);
    } else this.#forget(link);
    if (bye && link.sock.writable) link.sock.write(encodeWatchRecord(this.#host.sealer, WatchRecord.Bye));
    link.sock.destroySoon();
  }

  /** An inbound link stops counting against the caps (once). */
  #forget(link: InLink): void {
    const held = this.#unproven.delete(link) || (this.#in.get(link.from) === link && this.#in.delete(link.from));
    if (!held) return;
    const left = (this.#inByIp.get(link.ip) ?? 1) - 1;
    if (left <= 0) this.#inByIp.delete(link.ip);
    else this.#inByIp.set(link.ip, left);
  }

  #outClosed(link: OutLink): void {
    if (link.helloDeadline !== null) clearTimeout(link.helloDeadline);
    link.helloDeadline = null;
    if (this.#out.get(link.name) === link) this.#out.delete(link.name);
    if (!link.established) return this.#failed(link.name);
    // Closed under us without a goodbye: the watched process most likely died (its kernel
    // closed the connection). Evidence for the failure detector, never a verdict. Redial
    // after the base delay: a dead one refuses, a live one (a flap) is linked again.
    if (!link.closing && !link.byeHeard && !this.#quiet) {
      this.#counters.watchLinksLost++;
      this.#host.linkLost(link.name);
    }
    this.#retry.set(link.name, { failures: 0, at: this.#host.now() + RETRY_BASE_MS * (0.5 + Math.random()) });
  }

  /** A dial of `name` failed (refused, unreachable, no welcome): wait longer before the next. */
  #failed(name: string): void {
    const failures = (this.#retry.get(name)?.failures ?? 0) + 1;
    const delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (failures - 1));
    this.#retry.set(name, { failures, at: this.#host.now() + delay * (0.5 + Math.random()) });
  }

  /** Heartbeats out, silent links closed (no evidence: we close them), due redials made. */
  #sweep(): void {
    if (this.#quiet) return;
    const now = this.#host.now();
    const hb = this.#host.config.watchHeartbeatMs;
    for (const link of this.#unproven) if (now - link.since >= this.#host.config.streamHeadTimeoutMs) this.#close(link);
    for (const link of [...this.#out.values(), ...this.#in.values()]) {
      if ('established' in link && !link.established) continue;
      if (now - link.lastHeard >= SILENT_HEARTBEATS * hb) this.#close(link);
      else if (now - link.lastSent >= hb) {
        link.lastSent = now;
        link.sock.write(encodeWatchRecord(this.#host.sealer, WatchRecord.Ping));
      }
    }
    // Membership changes re-plan on their own; here only a target still unlinked (a redial due).
    if (this.#out.size < this.#host.config.watchLinks) this.plan();
  }
}
