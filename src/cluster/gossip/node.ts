/**
 * The UDP runtime of the gossip layer: one node:dgram socket for probes and gossip, one
 * node:net listener on the same port number for push-pull streams, and one timer that
 * drives the SwimNode state machine. Everything protocol lives in state.ts; this file only
 * moves bytes and time.
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { EventEmitter, once } from 'node:events';
import { createConnection, createServer, isIPv6, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { GossipConfig } from './config.js';
import type { FaultInjector } from './faults.js';
import { AesGcmSealer, Keyring } from './security.js';
import { SwimNode } from './state.js';
import type { GossipCounters, GossipDelegate, GossipTransport, MemberInfo, MembershipEvent } from './transport.js';

export interface GossipNodeOptions {
  /** Unique node name in the cluster. */
  name: string;
  /** Interface to bind (default 127.0.0.1). */
  bindHost?: string;
  /** UDP and TCP port (one number for both, as memberlist); 0 picks a free one (default). */
  port?: number;
  /** Host peers reach us at (default: bindHost). Required when binding a wildcard address. */
  advertiseHost?: string;
  /** Cluster keys, primary first (32 bytes each), or a Keyring to rotate later. */
  keys: readonly Uint8Array[] | Keyring;
  /** Cluster label bound into every packet's authentication; nodes of different labels never mix. */
  label?: string;
  meta?: Uint8Array;
  config?: Partial<GossipConfig>;
  delegate?: GossipDelegate;
  /** Starting incarnation; default Date.now(), so a restarted node out-bids its previous life. */
  incarnation?: number;
  /** Testing only: drop packets or streams on purpose. */
  faults?: FaultInjector;
}

/** Thrown by `join` when no seed could be reached. */
export class GossipJoinError extends Error {
  readonly code = 'GOSSIP_ERR_JOIN';
  constructor(message: string) {
    super(message);
    this.name = 'GossipJoinError';
  }
}

/** Counters of the runtime on top of the state machine's. */
export interface RuntimeCounters extends GossipCounters {
  /** Stream exchanges that failed (refused, timed out, too large, closed early). */
  streamErrors: number;
  /** UDP send errors reported by the kernel. */
  sendErrors: number;
  /** Packets dropped by a fault injector. */
  faultDrops: number;
}

/** Streams in flight per direction; a flood of push-pulls cannot pile up state copies (memberlist caps inbound at 128). */
const MAX_INBOUND_STREAMS = 128;
const MAX_OUTBOUND_STREAMS = 32;

function formatAddr(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

/** "host:port" or "[v6]:port" → parts, or null. */
export function parseAddr(addr: string): { host: string; port: number } | null {
  const i = addr.lastIndexOf(':');
  if (i <= 0) return null;
  let host = addr.slice(0, i);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const port = Number(addr.slice(i + 1));
  if (!Number.isInteger(port) || port <= 0 || port > 65535 || host.length === 0) return null;
  return { host, port };
}

/**
 * Length-prefixed frame reader for one stream: `[u32 length][bytes]`. The length is checked
 * against the limit before any payload is buffered.
 */
class FrameReader {
  #chunks: Buffer[] = [];
  #have = 0;
  #want = -1;
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  /** Returns the frame when complete, null when more is needed, 'too-big' when over the limit. */
  push(chunk: Buffer): Buffer | null | 'too-big' {
    this.#chunks.push(chunk);
    this.#have += chunk.length;
    if (this.#want < 0) {
      if (this.#have < 4) return null;
      const all = Buffer.concat(this.#chunks, this.#have);
      this.#want = all.readUInt32BE(0);
      if (this.#want > this.#max) return 'too-big';
      this.#chunks = [all.subarray(4)];
      this.#have -= 4;
    }
    if (this.#have > this.#want) return 'too-big'; // a single frame per direction
    if (this.#have < this.#want) return null;
    return Buffer.concat(this.#chunks, this.#have);
  }
}

function frameOf(payload: Uint8Array): [Buffer, Buffer] {
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(payload.length, 0);
  return [len, Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)];
}

/**
 * A cluster member over UDP/TCP.
 *
 * ```ts
 * const node = new GossipNode({ name: 'a', port: 7946, keys: [key], label: 'prod' });
 * node.on('join', (m) => ...); node.on('dead', (m) => ...);
 * await node.start();
 * await node.join(['10.0.0.2:7946']);
 * // ... later
 * await node.leave();
 * ```
 *
 * Events: 'join' | 'suspect' | 'alive' | 'dead' | 'leave' | 'update', each with
 * (member: MemberInfo, event: MembershipEvent).
 */
export class GossipNode extends EventEmitter {
  readonly name: string;
  readonly keyring: Keyring;
  readonly #options: GossipNodeOptions;
  #machine: SwimNode | null = null;
  #udp: UdpSocket | null = null;
  #tcp: Server | null = null;
  readonly #sockets = new Set<Socket>();
  #inbound = 0;
  #outbound = 0;
  #timer: NodeJS.Timeout | null = null;
  #timerAt = Infinity;
  #addr = '';
  #closed = false;
  readonly #addrCache = new Map<string, { host: string; port: number } | null>();
  readonly #runtime = { streamErrors: 0, sendErrors: 0, faultDrops: 0 };
  #joinWait: Map<string, 'pending' | 'ok' | 'failed'> | null = null;
  #joinSettle: (() => void) | null = null;

  /** @throws KeyringError for a bad key, RangeError for a bad name. */
  constructor(options: GossipNodeOptions) {
    super();
    this.name = options.name;
    this.keyring = options.keys instanceof Keyring ? options.keys : new Keyring(options.keys);
    this.#options = options;
  }

  /** "host:port" peers reach us at (after start). */
  get address(): string {
    return this.#addr;
  }

  /** The state machine (after start), for inspection. */
  get machine(): SwimNode {
    if (this.#machine === null) throw new Error('GossipNode not started');
    return this.#machine;
  }

  /** Bind the UDP socket and the TCP listener, then start the protocol. Returns our address. */
  async start(): Promise<string> {
    if (this.#machine !== null) return this.#addr;
    const o = this.#options;
    const host = o.bindHost ?? '127.0.0.1';
    const type = isIPv6(host) ? 'udp6' : 'udp4';
    let lastErr: unknown = null;
    for (let attempt = 0; attempt < 20; attempt++) {
      const udp = createSocket({ type });
      try {
        udp.bind(o.port ?? 0, host);
        await once(udp, 'listening');
      } catch (err) {
        udp.close();
        throw err;
      }
      const port = udp.address().port;
      const tcp = createServer();
      try {
        tcp.listen(port, host);
        await once(tcp, 'listening');
        this.#udp = udp;
        this.#tcp = tcp;
        break;
      } catch (err) {
        lastErr = err;
        udp.close();
        tcp.close();
        // A free UDP port may have its TCP twin taken; with an ephemeral port, try another.
        if ((o.port ?? 0) !== 0) throw err;
      }
    }
    if (this.#udp === null || this.#tcp === null) throw lastErr ?? new Error('could not bind gossip sockets');
    const udp = this.#udp;
    const tcp = this.#tcp;
    this.#addr = formatAddr(o.advertiseHost ?? host, udp.address().port);
    const transport: GossipTransport = {
      sendPacket: (to, packet) => this.#sendPacket(to, packet),
      sendStream: (to, frame) => this.#sendStream(to, frame),
    };
    this.#machine = new SwimNode({
      name: o.name,
      addr: this.#addr,
      meta: o.meta,
      incarnation: o.incarnation ?? Date.now(),
      config: o.config,
      transport,
      sealer: new AesGcmSealer(this.keyring, o.label ?? ''),
      delegate: o.delegate,
      onEvent: (e) => this.emit(e.type, e.member, e),
    });
    udp.on('message', (msg: Buffer, rinfo: RemoteInfo) => this.#onPacket(msg, rinfo));
    udp.on('error', () => {
      this.#runtime.sendErrors++;
    });
    tcp.on('connection', (sock) => this.#serveStream(sock));
    tcp.on('error', () => {
      this.#runtime.streamErrors++;
    });
    this.#machine.start(performance.now());
    this.#arm();
    return this.#addr;
  }

  /**
   * Join through seed addresses ("host:port"). Resolves with the number of seeds that
   * answered the push-pull within `timeoutMs` (default: the stream timeout).
   * @throws GossipJoinError when none answered.
   */
  async join(seeds: readonly string[], timeoutMs?: number): Promise<number> {
    const m = this.machine;
    const targets = seeds.filter((s) => s !== this.#addr);
    if (targets.length === 0) return 0;
    const wait = new Map<string, 'pending' | 'ok' | 'failed'>(targets.map((s) => [s, 'pending']));
    this.#joinWait = wait;
    const done = new Promise<void>((resolve) => {
      this.#joinSettle = resolve;
    });
    m.join(targets, performance.now());
    this.#arm();
    const limit = timeoutMs ?? m.config.streamTimeoutMs;
    let timer: NodeJS.Timeout | null = null;
    await Promise.race([done, new Promise<void>((r) => (timer = setTimeout(r, limit)))]);
    if (timer) clearTimeout(timer);
    this.#joinWait = null;
    this.#joinSettle = null;
    let ok = 0;
    for (const v of wait.values()) if (v === 'ok') ok++;
    if (ok === 0) throw new GossipJoinError(`no seed answered: ${targets.join(', ')}`);
    return ok;
  }

  /**
   * Leave gracefully: announce it, wait until the announcement went out (at most
   * `timeoutMs`, default 5 gossip intervals + 1 s), then stop.
   */
  async leave(timeoutMs?: number): Promise<void> {
    const m = this.#machine;
    if (m === null || this.#closed) return;
    const limit = timeoutMs ?? 5 * m.config.gossipIntervalMs + 1000;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, limit);
      m.leave(performance.now(), () => {
        clearTimeout(t);
        resolve();
      });
      this.#arm();
    });
    await this.stop();
  }

  /** Stop at once, without announcing anything (to peers this looks like a crash). */
  async stop(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#machine?.stop();
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    const udp = this.#udp;
    const tcp = this.#tcp;
    this.#udp = null;
    this.#tcp = null;
    const closing: Promise<unknown>[] = [];
    if (udp) closing.push(new Promise<void>((r) => udp.close(() => r())));
    if (tcp) closing.push(new Promise<void>((r) => tcp.close(() => r())));
    this.#joinSettle?.();
    await Promise.all(closing);
    this.emit('close');
  }

  /** Every member known, ourselves and tombstones included. */
  members(): MemberInfo[] {
    return this.#machine?.members() ?? [];
  }

  /** Members alive or suspect, ourselves included. */
  liveMembers(): MemberInfo[] {
    return this.members().filter((m) => m.state === 'alive' || m.state === 'suspect');
  }

  member(name: string): MemberInfo | undefined {
    return this.#machine?.member(name);
  }

  /** See SwimNode.broadcast. */
  broadcast(payload: Uint8Array, key?: string): void {
    this.machine.broadcast(payload, key);
    this.#arm();
  }

  /** See SwimNode.maxBroadcastBytes. */
  get maxBroadcastBytes(): number {
    return this.machine.maxBroadcastBytes;
  }

  /**
   * Push-pull with the live member `name` now (see SwimNode.syncWith). False when it is not
   * a live member or the exchange could not start.
   */
  syncWith(name: string): boolean {
    const m = this.#machine?.member(name);
    if (m === undefined || (m.state !== 'alive' && m.state !== 'suspect')) return false;
    const ok = this.machine.syncWith(m.addr);
    this.#arm();
    return ok;
  }

  setMeta(meta: Uint8Array): void {
    this.machine.setMeta(meta);
    this.#arm();
  }

  get counters(): RuntimeCounters {
    const base = this.#machine?.counters;
    return { ...(base as GossipCounters), ...this.#runtime };
  }

  // ---------------------------------------------------------------- time

  #now(): number {
    return performance.now();
  }

  /** One timer for the whole node, set to the state machine's next deadline. */
  #arm(): void {
    const m = this.#machine;
    if (m === null || this.#closed) return;
    const d = m.nextDeadline();
    if (d === Infinity) return;
    if (this.#timer !== null && this.#timerAt <= d) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timerAt = d;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, Math.ceil(d - this.#now())));
  }

  #fire(): void {
    this.#timer = null;
    this.#timerAt = Infinity;
    // Timers run before I/O in each event-loop turn. After a stall, an ack may already sit in
    // the socket buffer while the probe deadline is overdue: tick after the poll phase
    // (setImmediate) so pending datagrams are read first and a late timer cannot outrun them.
    setImmediate(() => {
      if (this.#closed || this.#machine === null) return;
      this.#machine.tick(this.#now());
      this.#arm();
    });
  }

  // ---------------------------------------------------------------- datagrams

  #onPacket(msg: Buffer, rinfo: RemoteInfo): void {
    const m = this.#machine;
    if (m === null || this.#closed) return;
    const from = formatAddr(rinfo.address, rinfo.port);
    if (this.#options.faults?.dropInbound?.(from)) {
      this.#runtime.faultDrops++;
      return;
    }
    m.receivePacket(msg, from, this.#now());
    this.#arm();
  }

  #resolve(addr: string): { host: string; port: number } | null {
    let r = this.#addrCache.get(addr);
    if (r === undefined) {
      if (this.#addrCache.size > 10_000) this.#addrCache.clear();
      r = parseAddr(addr);
      this.#addrCache.set(addr, r);
    }
    return r;
  }

  #sendPacket(to: string, packet: Uint8Array): void {
    const udp = this.#udp;
    if (udp === null) return;
    if (this.#options.faults?.dropOutbound?.(to)) {
      this.#runtime.faultDrops++;
      return;
    }
    const a = this.#resolve(to);
    if (a === null) {
      this.#runtime.sendErrors++;
      return;
    }
    udp.send(packet, a.port, a.host, (err) => {
      if (err) this.#runtime.sendErrors++;
    });
  }

  // ---------------------------------------------------------------- streams

  #settleJoin(to: string, ok: boolean): void {
    const w = this.#joinWait;
    if (w === null || w.get(to) !== 'pending') return;
    w.set(to, ok ? 'ok' : 'failed');
    for (const v of w.values()) if (v === 'pending') return;
    this.#joinSettle?.();
  }

  #sendStream(to: string, frame: Uint8Array): void {
    const m = this.#machine;
    const a = this.#resolve(to);
    if (m === null || this.#closed || a === null || this.#options.faults?.blockStream?.(to) || this.#outbound >= MAX_OUTBOUND_STREAMS) {
      this.#runtime.streamErrors++;
      this.#settleJoin(to, false);
      return;
    }
    this.#outbound++;
    const sock = createConnection({ host: a.host, port: a.port });
    this.#sockets.add(sock);
    const reader = new FrameReader(m.config.maxStreamBytes);
    let finished = false;
    const finish = (ok: boolean) => {
      if (finished) return;
      finished = true;
      this.#outbound--;
      this.#sockets.delete(sock);
      if (!ok) this.#runtime.streamErrors++;
      this.#settleJoin(to, ok);
      sock.destroy();
    };
    sock.setTimeout(m.config.streamTimeoutMs, () => finish(false));
    sock.on('error', () => finish(false));
    sock.on('close', () => finish(false));
    sock.on('connect', () => {
      for (const b of frameOf(frame)) sock.write(b);
    });
    sock.on('data', (chunk: Buffer) => {
      const r = reader.push(chunk);
      if (r === null) return;
      if (r === 'too-big') return finish(false);
      const res = m.receiveStream(r, to, this.#now());
      this.#arm();
      finish(res.ok);
    });
  }

  #serveStream(sock: Socket): void {
    const m = this.#machine;
    if (m === null || this.#closed || this.#inbound >= MAX_INBOUND_STREAMS) {
      this.#runtime.streamErrors++;
      sock.destroy();
      return;
    }
    this.#inbound++;
    this.#sockets.add(sock);
    const reader = new FrameReader(m.config.maxStreamBytes);
    let finished = false;
    const finish = (ok: boolean) => {
      if (finished) return;
      finished = true;
      this.#inbound--;
      this.#sockets.delete(sock);
      if (!ok) {
        this.#runtime.streamErrors++;
        sock.destroy();
      }
    };
    sock.setTimeout(m.config.streamTimeoutMs, () => finish(false));
    sock.on('error', () => finish(false));
    sock.on('close', () => finish(false));
    sock.on('data', (chunk: Buffer) => {
      if (finished) return;
      const r = reader.push(chunk);
      if (r === null) return;
      if (r === 'too-big') return finish(false);
      const res = m.receiveStream(r, formatAddr(sock.remoteAddress ?? '?', sock.remotePort ?? 0), this.#now());
      this.#arm();
      if (!res.ok || res.reply === null) return finish(false);
      finish(true);
      const [len, body] = frameOf(res.reply);
      sock.write(len);
      sock.end(body);
    });
  }
}
