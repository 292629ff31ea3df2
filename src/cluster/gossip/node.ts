/**
 * The UDP runtime of the gossip layer: one node:dgram socket for probes and gossip, one
 * node:net listener on the same port number for push-pull streams and liveness links
 * (watch-links.ts), and one timer that drives the SwimNode state machine. Everything protocol lives in state.ts; this file only
 * moves bytes and time.
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { EventEmitter, once } from 'node:events';
import { createConnection, createServer, isIPv6, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { GossipConfig } from './gossip-config.js';
import type { FaultInjector } from './faults.js';
import { AesGcmSealer, Channel, Keyring, type OpenFailure } from './security.js';
import { SwimNode } from './state.js';
import { encodeRefusal, encodeStreamHead, refusalOpenFailure, refusalText, StreamReader, StreamRefusal } from './stream-head.js';
import type { GossipCounters, GossipDelegate, GossipTransport, MemberInfo, MembershipEvent } from './transport.js';
import { WatchLinks, type WatchCounters } from './watch-links.js';

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
export interface RuntimeCounters extends GossipCounters, WatchCounters {
  /** Stream exchanges that failed (refused, timed out, too large, closed early). */
  streamErrors: number;
  /** Inbound streams refused before their frame was read (bad head, no slot, busy, late). */
  streamsRefused: number;
  /** UDP send errors reported by the kernel. */
  sendErrors: number;
  /** Packets dropped by a fault injector. */
  faultDrops: number;
}

/** Authenticated streams in flight per direction; a flood of push-pulls cannot pile up state copies (memberlist caps inbound at 128). */
const MAX_INBOUND_STREAMS = 128;
const MAX_OUTBOUND_STREAMS = 32;
const EMPTY = Buffer.alloc(0);
const OPEN_FAILURE_TEXT: Readonly<Record<OpenFailure, string>> = { auth: 'wrong key', label: 'wrong label', version: 'incompatible version', malformed: 'malformed' };

/** A refused packet or stream, named for logs: which address, why, on which channel, and whether we refused or the peer did. */
export interface GossipReject {
  /** The peer's "host:port". */
  addr: string;
  /** In words: 'wrong key', 'wrong label', 'incompatible version', 'busy', ... */
  reason: string;
  channel: 'packet' | 'stream';
  /** 'us': we refused its bytes; 'peer': it refused ours (streams only). */
  by: 'us' | 'peer';
}

/** An inbound stream still unauthenticated. */
interface PendingStream {
  refuse(reason: StreamRefusal): void;
}

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
 * A cluster member over UDP/TCP.
 *
 * ```ts
 * const node = new GossipNode({ name: 'a', port: 7946, keys: [generateKey()], label: 'prod' });
 * node.on('join', (m: MemberInfo) => console.log('joined', m.name));
 * node.on('dead', (m: MemberInfo) => console.log('dead', m.name));
 * await node.start();
 * await node.join(['10.0.0.2:7946']);
 * // ... later
 * await node.leave();
 * ```
 *
 * Events: 'join' | 'suspect' | 'alive' | 'dead' | 'leave' | 'update', each with
 * (member: MemberInfo, event: MembershipEvent); 'reject' (GossipReject): a packet or stream
 * refused, by us or by the peer; 'conflict' (MemberInfo): another live process claims our
 * name from another address (see SwimNodeOptions.onConflict).
 */
export class GossipNode extends EventEmitter {
  readonly name: string;
  readonly keyring: Keyring;
  readonly #options: GossipNodeOptions;
  #machine: SwimNode | null = null;
  #udp: UdpSocket | null = null;
  #tcp: Server | null = null;
  readonly #sockets = new Set<Socket>();
  #sealer: AesGcmSealer | null = null;
  /** Unauthenticated inbound streams, oldest first, and the same grouped per IP. */
  readonly #pending = new Set<PendingStream>();
  readonly #pendingByIp = new Map<string, Set<PendingStream>>();
  #inbound = 0;
  #outbound = 0;
  /** Frame bytes announced by authenticated inbound streams still open. */
  #reservedBytes = 0;
  #timer: NodeJS.Timeout | null = null;
  #timerAt = Infinity;
  #addr = '';
  #closed = false;
  readonly #addrCache = new Map<string, { host: string; port: number } | null>();
  readonly #runtime = { streamErrors: 0, streamsRefused: 0, sendErrors: 0, faultDrops: 0 };
  /** Connected UDP sockets asking suspects' gossip ports (see #checkPort). */
  #portChecks = 0;
  #joinWait: Map<string, string> | null = null;
  #joinSettle: (() => void) | null = null;
  /** Liveness links to the members we watch, and from those watching us (see watch-links.ts). */
  #watch: WatchLinks | null = null;

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
    this.#sealer = new AesGcmSealer(this.keyring, o.label ?? '');
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
      sealer: this.#sealer,
      delegate: o.delegate,
      onEvent: (e) => {
        if (e.type === 'suspect') this.#checkPort(e.member.name, e.member.addr);
        else if (e.type !== 'alive') this.#watch?.schedulePlan();
        this.emit(e.type, e.member, e);
      },
      onProbeMissed: (name, addr) => this.#checkPort(name, addr),
      onReject: (from, reason, channel) => this.#reject(from, OPEN_FAILURE_TEXT[reason], channel, 'us'),
      onConflict: (other) => this.emit('conflict', other),
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
    const machine = this.#machine;
    const sealer = this.#sealer;
    this.#watch = new WatchLinks({
      name: o.name,
      sealer,
      config: machine.config,
      peers: () => this.liveMembers().filter((m) => m.name !== o.name),
      resolve: (addr) => this.#resolve(addr),
      blocked: (addr) => this.#options.faults?.blockStream?.(addr) === true,
      linkLost: (name) => this.linkLost(name),
      refused: (addr, reason) => this.#reject(addr, reason, 'stream', 'us'),
      now: () => this.#now(),
    });
    this.#watch.start();
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
    const wait = new Map<string, string>(targets.map((s) => [s, 'pending']));
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
    if (ok === 0) throw new GossipJoinError(`no seed answered: ${[...wait].map(([s, why]) => `${s} (${why === 'pending' ? 'no answer' : why})`).join(', ')}`);
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
      this.#watch?.goodbye();
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
    this.#watch?.stop();
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

  /**
   * Send a query to the live member `name` (see SwimNode.query). False when it is not a live
   * member or the frame could not be made; true does not promise an answer.
   */
  query(name: string, payload: Uint8Array): boolean {
    const m = this.#machine?.member(name);
    if (m === undefined || (m.state !== 'alive' && m.state !== 'suspect')) return false;
    return this.machine.query(m.addr, payload);
  }

  /**
   * A link of a layer above to the member `name` closed without a goodbye, or its gossip
   * port was refused (see SwimNode.linkLost): suspicion starts now instead of at the end of
   * a failed probe. False when
   * `name` is not a live member or was already suspected on this evidence.
   */
  linkLost(name: string): boolean {
    if (this.#machine === null || this.#closed) return false;
    const started = this.#machine.linkLost(name, this.#now());
    this.#arm();
    return started;
  }

  setMeta(meta: Uint8Array): void {
    this.machine.setMeta(meta);
    this.#arm();
  }

  get counters(): RuntimeCounters {
    const base = this.#machine?.counters;
    const watch = this.#watch?.counters ?? { watchLinksOut: 0, watchLinksIn: 0, watchLinksLost: 0, watchLinksRefused: 0 };
    return { ...(base as GossipCounters), ...this.#runtime, ...watch };
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

  /**
   * Ask the gossip port of a member that missed a direct probe or is suspected, once, on a
   * socket connected to it: the host of a process that died answers ICMP port unreachable,
   * which the kernel reports on that socket as ECONNREFUSED. That is the same evidence as a link closed without a goodbye (linkLost);
   * silence proves nothing (a vanished host, a firewall) and leaves the suspicion to SWIM.
   * The datagram is a sealed empty packet, which a live member reads as nothing.
   */
  #checkPort(name: string, addr: string): void {
    const machine = this.#machine;
    const sealer = this.#sealer;
    if (machine === null || sealer === null || this.#closed || this.#portChecks >= machine.config.maxPortChecks) return;
    if (this.#options.faults?.dropOutbound?.(addr)) return;
    const a = this.#resolve(addr);
    if (a === null) return;
    const sock = createSocket({ type: isIPv6(a.host) ? 'udp6' : 'udp4' });
    this.#portChecks++;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      this.#portChecks--;
      clearTimeout(timer);
      sock.close();
    };
    const timer = setTimeout(finish, machine.config.probeTimeoutMs);
    timer.unref();
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' && !done) this.linkLost(name);
      finish();
    });
    sock.on('message', () => {});
    sock.connect(a.port, a.host, () => {
      if (!done) sock.send(sealer.seal(new Uint8Array(0), Channel.Packet));
    });
  }

  // ---------------------------------------------------------------- streams

  #reject(addr: string, reason: string, channel: 'packet' | 'stream', by: 'us' | 'peer'): void {
    this.emit('reject', { addr, reason, channel, by } satisfies GossipReject);
  }

  #settleJoin(to: string, ok: boolean, why = 'no answer'): void {
    const w = this.#joinWait;
    if (w === null || w.get(to) !== 'pending') return;
    w.set(to, ok ? 'ok' : why);
    for (const v of w.values()) if (v === 'pending') return;
    this.#joinSettle?.();
  }

  #sendStream(to: string, frame: Uint8Array): void {
    const m = this.#machine;
    const sealer = this.#sealer;
    const a = this.#resolve(to);
    if (m === null || sealer === null || this.#closed || a === null || this.#options.faults?.blockStream?.(to) || this.#outbound >= MAX_OUTBOUND_STREAMS) {
      this.#runtime.streamErrors++;
      this.#settleJoin(to, false, 'not sent');
      return;
    }
    this.#outbound++;
    const sock = createConnection({ host: a.host, port: a.port });
    this.#sockets.add(sock);
    const reader = new StreamReader(sealer, m.config.maxStreamBytes);
    let finished = false;
    const finish = (ok: boolean, why?: string) => {
      if (finished) return;
      finished = true;
      clearTimeout(deadline);
      this.#outbound--;
      this.#sockets.delete(sock);
      if (!ok) this.#runtime.streamErrors++;
      this.#settleJoin(to, ok, why);
      sock.destroy();
    };
    // Absolute: a peer that trickles its reply cannot keep an outbound slot.
    const deadline = setTimeout(() => finish(false, 'timed out'), m.config.streamTimeoutMs);
    sock.on('error', () => finish(false));
    sock.on('close', () => finish(false));
    sock.on('connect', () => {
      sock.write(encodeStreamHead(sealer, frame.length));
      sock.write(frame);
    });
    sock.on('data', (chunk: Buffer) => {
      let e = reader.push(chunk);
      if (e.kind === 'head') e = reader.push(EMPTY);
      if (e.kind === 'more' || e.kind === 'head') return;
      if (e.kind === 'refused') {
        const why = `refused: ${refusalText(e.reason)}`;
        this.#reject(to, refusalText(e.reason), 'stream', 'peer');
        return finish(false, why);
      }
      if (e.kind === 'fail' || e.kind === 'watch') {
        const reason = e.kind === 'fail' ? e.reason : StreamRefusal.Malformed; // a hello is no answer
        this.#reject(to, refusalText(reason), 'stream', 'us');
        return finish(false, `its answer: ${refusalText(reason)}`);
      }
      const res = m.receiveStream(e.frame, to, this.#now());
      this.#arm();
      finish(res.ok, res.ok ? undefined : 'its answer did not open');
    });
  }

  /**
   * An inbound push-pull. Until its head authenticates, a stream holds a small head buffer
   * and one of `maxPendingStreams` slots (`maxPendingStreamsPerAddress` per IP); a new stream
   * takes the oldest slot when all are taken, so strangers holding streams open cannot keep
   * a genuine node from joining (they would have to open more streams than a round trip's
   * worth faster than the slots turn over). An authenticated stream takes one of MAX_INBOUND_STREAMS
   * slots and reserves its announced length from `maxStreamBufferBytes`. Every stream has an
   * absolute deadline.
   */
  #serveStream(sock: Socket): void {
    const m = this.#machine;
    const sealer = this.#sealer;
    if (m === null || sealer === null || this.#closed) {
      sock.destroy();
      return;
    }
    const c = m.config;
    const ip = sock.remoteAddress ?? '?';
    const addr = formatAddr(ip, sock.remotePort ?? 0);
    // A new stream takes the oldest slot (of its address, else of all): the oldest had the
    // longest to authenticate, and a genuine head arrives within a round trip.
    let fromIp = this.#pendingByIp.get(ip);
    if (fromIp !== undefined && fromIp.size >= c.maxPendingStreamsPerAddress) (fromIp.values().next().value as PendingStream).refuse(StreamRefusal.Busy);
    else if (this.#pending.size >= c.maxPendingStreams) (this.#pending.values().next().value as PendingStream).refuse(StreamRefusal.Busy);
    fromIp = this.#pendingByIp.get(ip);
    if (fromIp === undefined) this.#pendingByIp.set(ip, (fromIp = new Set()));
    this.#sockets.add(sock);
    const reader = new StreamReader(sealer, c.maxStreamBytes);
    let reserved = 0;
    let authed = false;
    let finished = false;
    const accepted = this.#now();
    const leavePending = () => {
      if (!this.#pending.delete(stream)) return;
      fromIp.delete(stream);
      if (fromIp.size === 0) this.#pendingByIp.delete(ip);
    };
    const finish = (ok: boolean) => {
      if (finished) return;
      finished = true;
      leavePending();
      if (authed) this.#inbound--;
      this.#reservedBytes -= reserved;
      reserved = 0;
      if (!ok) this.#runtime.streamErrors++;
    };
    const close = () => {
      finish(false);
      clearTimeout(deadline);
      this.#sockets.delete(sock);
      sock.destroy();
    };
    const refuse = (reason: StreamRefusal, logged = true) => {
      if (finished) return;
      this.#runtime.streamsRefused++;
      const failure = refusalOpenFailure(reason);
      if (failure !== null) m.rejected(failure, addr); // counted and reported as the frame's would be
      else if (logged) this.#reject(addr, refusalText(reason), 'stream', 'us');
      finish(false);
      // Best effort: the peer learns why; the socket closes once the record is handed to the
      // kernel. It keeps flowing meanwhile, so bytes still arriving are dropped, not queued.
      sock.write(encodeRefusal(reason));
      sock.destroySoon();
    };
    const stream: PendingStream = { refuse: (reason) => refuse(reason, false) };
    this.#pending.add(stream);
    fromIp.add(stream);
    let deadline = setTimeout(() => (finished ? close() : refuse(StreamRefusal.Timeout)), c.streamHeadTimeoutMs);
    const onData = (chunk: Buffer): void => {
      if (finished) return;
      let e = reader.push(chunk);
      if (e.kind === 'watch') {
        // A liveness link, authenticated: it leaves the stream slots for the links' own.
        finish(true);
        clearTimeout(deadline);
        this.#sockets.delete(sock);
        sock.off('error', close).off('close', close).off('data', onData);
        this.#watch?.accept(sock, e.hello, e.rest, ip, addr);
        if (this.#watch === null) sock.destroy();
        return;
      }
      if (e.kind === 'head') {
        leavePending();
        if (this.#inbound >= MAX_INBOUND_STREAMS || this.#reservedBytes + e.length > c.maxStreamBufferBytes) return refuse(StreamRefusal.Busy);
        authed = true;
        this.#inbound++;
        reserved = e.length;
        this.#reservedBytes += reserved;
        clearTimeout(deadline);
        const left = Math.max(0, accepted + c.streamTimeoutMs - this.#now());
        deadline = setTimeout(() => (finished ? close() : refuse(StreamRefusal.Timeout)), left);
        e = reader.push(EMPTY);
      }
      if (e.kind === 'more' || e.kind === 'head') return;
      if (e.kind !== 'frame') return refuse(e.kind === 'fail' ? e.reason : StreamRefusal.Malformed);
      const res = m.receiveStream(e.frame, addr, this.#now());
      this.#arm();
      if (!res.ok || res.reply === null) return close();
      finish(true);
      sock.write(encodeStreamHead(sealer, res.reply.length));
      sock.end(res.reply);
    };
    sock.on('error', close);
    sock.on('close', close);
    sock.on('data', onData);
  }
}
