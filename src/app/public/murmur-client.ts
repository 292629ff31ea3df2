/**
 * The browser client of `murmur serve`, served at /murmur-client.js: a plain ES module with no
 * dependency and no framework. It speaks the wire protocol of docs/serve-protocol.md and adds what
 * every real-time page needs:
 *
 * - reconnect with exponential backoff and full jitter (delay = random(0, min(max, base x 2^n))),
 *   honouring the server's hints: 1012 (restart) and 1013 (full, draining) carry
 *   `retry-after=N` in the close reason, and the client then waits between N and 2N seconds.
 *   A browser cannot read the status or Retry-After of a refused upgrade (a 503 is only a
 *   1006 close to it), which is why the server sends these as close codes with a reason hint;
 * - recovery: every message on a topic with history carries {epoch, offset}; the client keeps
 *   the last position per topic (in sessionStorage by default, so a reload recovers too) and
 *   resubscribes with `since`; when the server says it cannot recover (history trimmed, epoch
 *   changed), or tells it the stream skipped (a `resync` event: a gap the cluster could not
 *   fill), the client emits `resync`; a node that cannot tell yet where the topic stands in
 *   the cluster (CATCHING_UP: it is starting, or its bus is slow) is asked again, with backoff;
 * - restoring subscriptions, presence joins and presence watches after every reconnect.
 *
 * ```js
 * import { MurmurClient } from '/murmur-client.js';
 * const client = new MurmurClient();                // ws(s)://<this host>/ws
 * client.on('message', (m) => console.log(m.topic, m.from, m.data));
 * await client.subscribe('room:lobby', { presence: true, rewind: 50 });
 * await client.join('room:lobby', { name: 'Ada' });
 * await client.publish('room:lobby', { text: 'hello' });
 * ```
 *
 * Written in TypeScript against minimal structural types of the browser APIs it uses (the
 * project compiles without the DOM library); in Node, pass a WHATWG-compatible `WebSocket`
 * (murmur's own client works) and a storage object.
 */

/** The part of the WebSocket API this client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType: string;
  send(data: string | ArrayBuffer | Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** The part of the Web Storage API this client uses (sessionStorage, localStorage, or a Map wrapper). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface MurmurClientOptions {
  /** ws:// or wss:// URL; default: the page's host, path /ws. */
  url?: string;
  /** A token, or a function returning one (called before every connect, so it may refresh it). */
  token?: string | (() => string | Promise<string>);
  /** Where positions are kept; default sessionStorage when present (per tab, survives reloads). null: memory only. */
  storage?: StorageLike | null;
  /** Prefix of the storage keys. Default 'murmur'. */
  storageKey?: string;
  /** WebSocket constructor; default globalThis.WebSocket. */
  WebSocket?: WebSocketConstructor;
  /** First backoff cap in ms. Default 500. */
  backoffBaseMs?: number;
  /** Largest backoff cap in ms. Default 30,000. */
  backoffMaxMs?: number;
  /** Least delay after a 1008/1009 close (the server found this client abusive). Default 30,000. */
  policyDelayMs?: number;
  /** A request without a reply within this time fails with code TIMEOUT. Default 10,000. */
  requestTimeoutMs?: number;
  /** Connect at once (default true); otherwise call connect(). */
  autoConnect?: boolean;
  /** Random source in [0, 1) for jitter (tests). */
  random?: () => number;
}

export interface Position {
  epoch: string;
  offset: number;
}

export interface Member {
  user: string;
  conn: string;
  meta: Record<string, unknown> | null;
  since: number;
}

export interface MurmurMessage {
  topic: string;
  /** The JSON value published, or the bytes of a binary message. */
  data: unknown;
  binary: boolean;
  from: string;
  /** Present on topics that keep history. */
  epoch?: string;
  offset?: number;
}

export interface MurmurError {
  code: string;
  message: string;
  id?: string | number | null;
}

export interface CloseInfo {
  code: number;
  reason: string;
  /** Whether the client will reconnect, and after how long. */
  reconnect: boolean;
  delayMs: number;
}

export interface ClientEvents {
  /** The server's welcome: {conn, user, anonymous, permissions, limits}. After every (re)connect. */
  open: Record<string, unknown>;
  message: MurmurMessage;
  /** A presence change in a watched topic; event 'sync' after (re)watching gives the whole list. */
  presence: { topic: string; event: 'join' | 'update' | 'leave' | 'sync'; member: Member | null; members: Member[] };
  /** Missed messages of `topic` could not be recovered: reload its state (history, or the app's own source). */
  resync: { topic: string; reason: string; position: Position | null };
  close: CloseInfo;
  /** An error reply to no pending request, or a connection problem. */
  error: MurmurError;
  /** 'connecting' | 'open' | 'reconnecting' | 'closed' */
  state: ClientState;
}

export type ClientState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

type StateKind = 'subscribe' | 'join' | 'watch';

interface Waiter {
  resolve(value: Record<string, unknown>): void;
  reject(err: MurmurError): void;
}

interface TopicState {
  subscribed: boolean;
  presence: boolean;
  rewind: number;
  watching: boolean;
  /** Presence meta while joined; undefined when not joined. */
  joined: Record<string, unknown> | null | undefined;
  position: Position | null;
  members: Map<string, Member>;
  /** Collectors of history() calls in flight. */
  collectors: MurmurMessage[][];
  /** Callers of subscribe/join/watch made while disconnected: settled by the restore after the next welcome. */
  waiters: Record<StateKind, Waiter[]>;
  /** A subscribe the server answered CATCHING_UP: sent again after this timer (null: none waiting), the retry count. */
  retry: ReturnType<typeof setTimeout> | null;
  retries: number;
}

interface RequestOptions {
  topic?: string;
  binary?: Uint8Array;
  collector?: MurmurMessage[];
  onReply?: (reply: Record<string, unknown>) => void;
}

interface Pending {
  resolve(value: Record<string, unknown>): void;
  reject(err: MurmurError): void;
  timer: ReturnType<typeof setTimeout>;
  opts: RequestOptions;
}

type Listener<K extends keyof ClientEvents> = (ev: ClientEvents[K]) => void;

/** Codes after which reconnecting cannot help (a protocol bug on one side). */
const FATAL_CODES = new Set([1002, 1003, 1007, 1010]);
/** How many times history() asks again a node that answered CATCHING_UP: with the default backoff, 8 to 16 s in all (a catch-up is bounded by the cluster's fillTimeoutMs, 3 s). */
const HISTORY_RETRIES = 5;
const OPEN = 1;

export class MurmurClient {
  #url: string;
  readonly #opts: Required<Pick<MurmurClientOptions, 'backoffBaseMs' | 'backoffMaxMs' | 'policyDelayMs' | 'requestTimeoutMs' | 'storageKey'>>;
  readonly #token: MurmurClientOptions['token'];
  readonly #storage: StorageLike | null;
  readonly #WS: WebSocketConstructor;
  readonly #random: () => number;
  #ws: WebSocketLike | null = null;
  #state: ClientState = 'idle';
  #attempt = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #seq = 0;
  #pending = new Map<number, Pending>();
  #queue: Array<() => void> = [];
  #topics = new Map<string, TopicState>();
  #listeners = new Map<string, Set<(ev: unknown) => void>>();
  #welcome: Record<string, unknown> | null = null;
  readonly #encoder = new TextEncoder();
  readonly #decoder = new TextDecoder();

  constructor(options: MurmurClientOptions = {}) {
    const g = globalThis as unknown as { WebSocket?: WebSocketConstructor; location?: { protocol: string; host: string }; sessionStorage?: StorageLike };
    const loc = g.location;
    this.#url = options.url ?? (loc !== undefined ? `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/ws` : '');
    if (this.#url === '') throw new TypeError('MurmurClient: give options.url outside a browser');
    const WS = options.WebSocket ?? g.WebSocket;
    if (WS === undefined) throw new TypeError('MurmurClient: no WebSocket; pass options.WebSocket');
    this.#WS = WS;
    let storage: StorageLike | null = null;
    if (options.storage !== undefined) storage = options.storage;
    else {
      try {
        storage = g.sessionStorage ?? null;
      } catch {
        storage = null; // storage disabled (privacy settings, sandboxed frame)
      }
    }
    this.#storage = storage;
    this.#token = options.token;
    this.#random = options.random ?? Math.random;
    this.#opts = {
      backoffBaseMs: options.backoffBaseMs ?? 500,
      backoffMaxMs: options.backoffMaxMs ?? 30_000,
      policyDelayMs: options.policyDelayMs ?? 30_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
      storageKey: options.storageKey ?? 'murmur',
    };
    if (options.autoConnect !== false) this.connect();
  }

  get state(): ClientState {
    return this.#state;
  }

  /** The server's welcome of the current connection (conn id, user, permissions, limits), or null. */
  get welcome(): Record<string, unknown> | null {
    return this.#welcome;
  }

  on<K extends keyof ClientEvents>(type: K, fn: Listener<K>): () => void {
    let set = this.#listeners.get(type);
    if (set === undefined) this.#listeners.set(type, (set = new Set()));
    set.add(fn as (ev: unknown) => void);
    return () => set.delete(fn as (ev: unknown) => void);
  }

  /** Opens the connection (again, after close()). */
  connect(): void {
    if (this.#state === 'connecting' || this.#state === 'open' || this.#state === 'reconnecting') return;
    this.#clearTimer();
    this.#attempt = 0;
    this.#setState('connecting');
    void this.#open();
  }

  /** Closes for good (no reconnect). Pending requests fail with DISCONNECTED. */
  close(): void {
    this.#clearTimer();
    this.#clearRetries();
    const ws = this.#ws;
    this.#ws = null;
    this.#welcome = null;
    this.#setState('closed');
    if (ws !== null) {
      ws.onclose = null;
      ws.onmessage = null;
      ws.onerror = null;
      ws.onopen = null;
      try {
        ws.close(1000, 'client closed');
      } catch {
        // already closing
      }
    }
    this.#failPending('DISCONNECTED', 'the client was closed');
    const closed: MurmurError = { code: 'DISCONNECTED', message: 'the client was closed' };
    for (const ts of this.#topics.values()) for (const k of ['subscribe', 'join', 'watch'] as const) ts.waiters[k].splice(0).forEach((w) => w.reject(closed));
    for (const send of this.#queue.splice(0)) send(); // each rejects: the client is closed
    this.#emit('close', { code: 1000, reason: 'client closed', reconnect: false, delayMs: 0 });
  }

  /**
   * Subscribes to a topic; kept across reconnects. With a stored position the server replays
   * what was missed (`since`); without one, `rewind` asks for the last N messages first.
   * `presence: true` also watches the topic's presence (the reply lists members).
   */
  subscribe(topic: string, opts: { rewind?: number; presence?: boolean } = {}): Promise<Record<string, unknown>> {
    const ts = this.#topic(topic);
    ts.subscribed = true;
    ts.rewind = opts.rewind ?? 0;
    ts.presence = opts.presence === true;
    if (ts.presence) ts.watching = true;
    if (ts.position === null) ts.position = this.#loadPosition(topic);
    return this.#stateRequest(topic, 'subscribe');
  }

  unsubscribe(topic: string): Promise<Record<string, unknown>> {
    const ts = this.#topic(topic);
    ts.subscribed = false;
    ts.presence = false;
    ts.watching = false;
    ts.members.clear();
    return this.#request({ type: 'unsubscribe', topic });
  }

  /** Publishes JSON data, or bytes (ArrayBuffer / Uint8Array) as a binary frame. */
  publish(topic: string, data: unknown, opts: { echo?: boolean } = {}): Promise<Record<string, unknown>> {
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : data instanceof Uint8Array ? data : null;
    const echo = opts.echo === false ? { echo: false } : {};
    if (bytes === null) return this.#request({ type: 'publish', topic, data, ...echo });
    return this.#request({ type: 'publish', topic, ...echo }, { binary: bytes });
  }

  /** Enters the topic's presence with `meta` (or updates it); kept across reconnects. */
  join(topic: string, meta: Record<string, unknown> | null = null): Promise<Record<string, unknown>> {
    this.#topic(topic).joined = meta;
    return this.#stateRequest(topic, 'join');
  }

  leave(topic: string): Promise<Record<string, unknown>> {
    this.#topic(topic).joined = undefined;
    return this.#request({ type: 'presence', action: 'leave', topic });
  }

  /** Follows join/leave events of a topic (members(topic) stays current); kept across reconnects. */
  watch(topic: string): Promise<Record<string, unknown>> {
    this.#topic(topic).watching = true;
    return this.#stateRequest(topic, 'watch');
  }

  unwatch(topic: string): Promise<Record<string, unknown>> {
    const ts = this.#topic(topic);
    ts.watching = false;
    ts.presence = false;
    ts.members.clear();
    return this.#request({ type: 'presence', action: 'unwatch', topic });
  }

  /** The members of a watched topic, as last known. */
  members(topic: string): Member[] {
    return [...(this.#topics.get(topic)?.members.values() ?? [])];
  }

  /** Asks the server who is in a topic now. */
  async list(topic: string): Promise<Member[]> {
    const r = await this.#request({ type: 'presence', action: 'list', topic });
    return (r.members as Member[] | undefined) ?? [];
  }

  /**
   * Which of these users are online anywhere. A user held by a node of the cluster that did
   * not answer in time reads false: onlineStatus() says when that happened.
   */
  async online(users: string[]): Promise<Record<string, boolean>> {
    return (await this.onlineStatus(users)).online;
  }

  /** online(), with `partial: true` when a node of the cluster did not answer in time. */
  async onlineStatus(users: string[]): Promise<{ online: Record<string, boolean>; partial: boolean }> {
    const r = await this.#request({ type: 'presence', action: 'online', users });
    return { online: (r.online as Record<string, boolean> | undefined) ?? {}, partial: r.partial === true };
  }

  /**
   * The last `limit` messages of a topic, or (with `since`) those after a position. The reply
   * says `recovered: false` with a reason when `since` is no longer covered. A node that cannot
   * tell yet where the topic stands in the cluster (CATCHING_UP) is asked again with backoff, up
   * to HISTORY_RETRIES times.
   */
  async history(topic: string, opts: { limit?: number; since?: Position } = {}): Promise<{ messages: MurmurMessage[]; reply: Record<string, unknown> }> {
    const cmd = { type: 'history', topic, ...(opts.limit !== undefined ? { limit: opts.limit } : {}), ...(opts.since !== undefined ? { since: opts.since } : {}) };
    for (let attempt = 0; ; attempt++) {
      const collector: MurmurMessage[] = [];
      try {
        const reply = await this.#request(cmd, { topic, collector });
        return { messages: collector, reply };
      } catch (err) {
        if ((err as MurmurError).code !== 'CATCHING_UP' || attempt >= HISTORY_RETRIES) throw err;
        await new Promise((resolve) => setTimeout(resolve, this.#backoff(attempt)));
      }
    }
  }

  /** Round trip to the server; resolves with the server's clock. */
  async ping(): Promise<number> {
    const r = await this.#request({ type: 'ping' });
    return r.time as number;
  }

  /** The last position seen on a topic (what a resubscribe recovers from). */
  position(topic: string): Position | null {
    return this.#topics.get(topic)?.position ?? null;
  }

  // ---- connection ------------------------------------------------------------------------

  async #open(): Promise<void> {
    let url = this.#url;
    if (this.#token !== undefined) {
      let token: string;
      try {
        token = typeof this.#token === 'function' ? await this.#token() : this.#token;
      } catch (err) {
        this.#emit('error', { code: 'TOKEN_PROVIDER', message: String(err) });
        this.#reconnectLater(1006, '');
        return;
      }
      url += `${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
    }
    if (this.#state === 'closed') return;
    let ws: WebSocketLike;
    try {
      ws = new this.#WS(url);
    } catch (err) {
      this.#emit('error', { code: 'CONNECT', message: String(err) });
      this.#setState('closed');
      return;
    }
    this.#ws = ws;
    ws.binaryType = 'arraybuffer';
    ws.onmessage = (ev) => this.#onFrame(ev.data);
    ws.onerror = () => {
      // A close event follows; the browser tells no more than that.
    };
    ws.onclose = (ev) => {
      if (this.#ws !== ws) return;
      this.#ws = null;
      this.#welcome = null;
      this.#failPending('DISCONNECTED', `connection closed (${ev.code})`);
      this.#reconnectLater(ev.code, ev.reason);
    };
  }

  #reconnectLater(code: number, reason: string): void {
    if (this.#state === 'closed') return;
    if (FATAL_CODES.has(code)) {
      this.#setState('closed');
      this.#emit('close', { code, reason, reconnect: false, delayMs: 0 });
      return;
    }
    const hint = /retry-after=(\d+)/.exec(reason);
    let delay: number;
    if (hint !== null && (code === 1012 || code === 1013 || code === 1001)) {
      // The server said when to come back: between N and 2N seconds, so a restarted node's
      // clients do not all return at the same instant.
      const ms = Number(hint[1]) * 1000;
      delay = ms + this.#random() * Math.max(ms, this.#opts.backoffBaseMs);
    } else {
      const cap = Math.min(this.#opts.backoffMaxMs, this.#opts.backoffBaseMs * 2 ** Math.min(this.#attempt, 30));
      delay = this.#random() * cap; // full jitter
      this.#attempt++;
    }
    if (code === 1008 || code === 1009) delay = Math.max(delay, this.#opts.policyDelayMs);
    this.#setState('reconnecting');
    this.#emit('close', { code, reason, reconnect: true, delayMs: Math.round(delay) });
    this.#clearTimer();
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#open();
    }, delay);
  }

  #onWelcome(w: Record<string, unknown>): void {
    this.#welcome = w;
    this.#attempt = 0;
    this.#setState('open');
    this.#clearRetries(); // restored now
    // Restore what this client had: subscriptions (recovering from positions), joins, watches.
    for (const [topic, ts] of this.#topics) {
      if (ts.subscribed) this.#restore(topic, 'subscribe');
      else if (ts.watching) this.#restore(topic, 'watch');
      if (ts.joined !== undefined) this.#restore(topic, 'join');
    }
    const queued = this.#queue;
    this.#queue = [];
    for (const send of queued) send();
    this.#emit('open', w);
  }

  /** subscribe/join/watch: sent now when open, else by the restore after the next welcome. */
  #stateRequest(topic: string, kind: StateKind): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      if (this.#state === 'closed') {
        reject({ code: 'DISCONNECTED', message: 'the client is closed' });
        return;
      }
      this.#topic(topic).waiters[kind].push({ resolve, reject });
      if (this.#state === 'open') this.#restore(topic, kind);
    });
  }

  #restore(topic: string, kind: StateKind): void {
    const ts = this.#topic(topic);
    let cmd: Record<string, unknown>;
    let onReply: ((r: Record<string, unknown>) => void) | undefined;
    if (kind === 'subscribe') {
      cmd = { type: 'subscribe', topic };
      if (ts.position !== null) cmd.since = ts.position;
      else if (ts.rewind > 0) cmd.rewind = ts.rewind;
      if (ts.presence) cmd.presence = true;
      onReply = (r) => this.#onSubscribed(topic, r);
    } else if (kind === 'watch') {
      cmd = { type: 'presence', action: 'watch', topic };
      onReply = (r) => this.#onMembers(topic, r);
    } else cmd = { type: 'presence', action: 'join', topic, meta: ts.joined ?? null };
    this.#request(cmd, { topic, ...(onReply !== undefined ? { onReply } : {}) }).then(
      (r) => {
        for (const w of ts.waiters[kind].splice(0)) w.resolve(r);
      },
      (err: MurmurError) => {
        // Disconnected: the next welcome restores again, and waiters keep waiting.
        if (err.code === 'DISCONNECTED') return;
        // The node cannot tell the topic's position in the cluster yet: asked again shortly, waiters keep waiting.
        if (err.code === 'CATCHING_UP' && kind === 'subscribe' && ts.subscribed) return this.#retrySubscribe(topic, ts);
        if (kind === 'subscribe') ts.subscribed = ts.presence = false;
        else if (kind === 'watch') ts.watching = false;
        else ts.joined = undefined;
        const waiters = ts.waiters[kind].splice(0);
        if (waiters.length === 0) this.#emit('error', err);
        for (const w of waiters) w.reject(err);
      },
    );
  }

  #request(cmd: Record<string, unknown>, opts: RequestOptions = {}): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const send = (): void => {
        if (this.#state === 'closed' || this.#ws === null) {
          reject({ code: 'DISCONNECTED', message: 'the client is closed' });
          return;
        }
        const id = ++this.#seq;
        const timer = setTimeout(() => {
          this.#pending.delete(id);
          this.#removeCollector(opts);
          reject({ code: 'TIMEOUT', message: `no reply to ${String(cmd.type)} within ${this.#opts.requestTimeoutMs} ms`, id });
        }, this.#opts.requestTimeoutMs);
        this.#pending.set(id, { resolve, reject, timer, opts });
        if (opts.collector !== undefined && opts.topic !== undefined) this.#topic(opts.topic).collectors.push(opts.collector);
        const text = JSON.stringify({ ...cmd, id });
        if (opts.binary === undefined) this.#ws.send(text);
        else {
          const header = this.#encoder.encode(text);
          const frame = new Uint8Array(2 + header.length + opts.binary.length);
          frame[0] = header.length >> 8;
          frame[1] = header.length & 0xff;
          frame.set(header, 2);
          frame.set(opts.binary, 2 + header.length);
          this.#ws.send(frame);
        }
      };
      if (this.#state === 'open' && this.#ws !== null && this.#ws.readyState === OPEN) send();
      else if (this.#state === 'closed') reject({ code: 'DISCONNECTED', message: 'the client is closed' });
      else this.#queue.push(send);
    });
  }

  #onFrame(data: unknown): void {
    let msg: Record<string, unknown>;
    let payload: Uint8Array | null = null;
    try {
      if (typeof data === 'string') msg = JSON.parse(data) as Record<string, unknown>;
      else {
        const u = data instanceof ArrayBuffer ? new Uint8Array(data) : (data as Uint8Array);
        const n = (u[0]! << 8) | u[1]!;
        msg = JSON.parse(this.#decoder.decode(u.subarray(2, 2 + n))) as Record<string, unknown>;
        payload = u.slice(2 + n);
      }
    } catch {
      this.#emit('error', { code: 'BAD_FRAME', message: 'the server sent a frame this client cannot read' });
      return;
    }
    switch (msg.type) {
      case 'welcome':
        this.#onWelcome(msg);
        return;
      case 'message':
        this.#onMessage({
          topic: msg.topic as string,
          data: payload ?? msg.data,
          binary: payload !== null,
          from: msg.from as string,
          ...(typeof msg.epoch === 'string' ? { epoch: msg.epoch, offset: msg.offset as number } : {}),
        });
        return;
      case 'presence':
        this.#onPresence(msg.topic as string, msg);
        return;
      case 'resync':
        this.#onResync(msg.topic as string, msg);
        return;
      case 'presence-batch':
        // The changes of one server turn, in order: applied and told one by one.
        if (Array.isArray(msg.events)) for (const ev of msg.events as Array<Record<string, unknown>>) this.#onPresence(msg.topic as string, ev);
        return;
      case 'reply':
      case 'error': {
        const id = msg.id;
        const p = typeof id === 'number' ? this.#pending.get(id) : undefined;
        if (p === undefined) {
          if (msg.type === 'error') this.#emit('error', { code: String(msg.code), message: String(msg.message), id: id as string | number | null });
          return;
        }
        this.#pending.delete(id as number);
        clearTimeout(p.timer);
        this.#removeCollector(p.opts);
        if (msg.type === 'error') p.reject({ code: String(msg.code), message: String(msg.message), id: id as number });
        else {
          p.opts.onReply?.(msg);
          p.resolve(msg);
        }
        return;
      }
      default:
        return; // newer servers may send more; ignore what is unknown
    }
  }

  #onMessage(m: MurmurMessage): void {
    const ts = this.#topics.get(m.topic);
    if (ts === undefined) return;
    for (const c of ts.collectors) c.push(m);
    if (!ts.subscribed) return;
    if (m.epoch !== undefined && m.offset !== undefined) {
      const pos = ts.position;
      // Already delivered (a history replay overlapping live messages): drop the duplicate.
      if (pos !== null && pos.epoch === m.epoch && m.offset <= pos.offset) return;
      ts.position = { epoch: m.epoch, offset: m.offset };
      this.#savePosition(m.topic, ts.position);
    }
    this.#emit('message', m);
  }

  /** The server's stream of a subscribed topic skipped messages (the cluster could not fill a gap): the next one follows `position`. */
  #onResync(topic: string, msg: Record<string, unknown>): void {
    const ts = this.#topics.get(topic);
    if (ts === undefined || !ts.subscribed) return;
    const position = (msg.position as Position | null | undefined) ?? null;
    if (position !== null) {
      ts.position = position;
      this.#savePosition(topic, position);
    }
    this.#emit('resync', { topic, reason: String(msg.reason), position });
  }

  #onSubscribed(topic: string, reply: Record<string, unknown>): void {
    const ts = this.#topic(topic);
    ts.retries = 0;
    this.#onMembers(topic, reply);
    const position = (reply.position as Position | null | undefined) ?? null;
    if (reply.recovered === false) this.#emit('resync', { topic, reason: String(reply.reason), position });
    if (position === null) return;
    const cur = ts.position;
    // After a recovery the replayed messages already moved the position to the reply's; after
    // a failed one (or a first subscribe) the reply's position is where this client now is.
    if (cur === null || cur.epoch !== position.epoch || reply.recovered === false || position.offset > cur.offset) {
      ts.position = position;
      this.#savePosition(topic, position);
    }
  }

  #onMembers(topic: string, reply: Record<string, unknown>): void {
    if (!Array.isArray(reply.members)) return;
    const ts = this.#topic(topic);
    ts.members.clear();
    for (const m of reply.members as Member[]) ts.members.set(m.conn, m);
    this.#emit('presence', { topic, event: 'sync', member: null, members: this.members(topic) });
  }

  /** One presence change (`{event, member}`) of `topic`. */
  #onPresence(topic: string, msg: Record<string, unknown>): void {
    const ts = this.#topics.get(topic);
    if (ts === undefined) return;
    const member = msg.member as Member;
    const event = msg.event as 'join' | 'update' | 'leave';
    if (event === 'leave') ts.members.delete(member.conn);
    else ts.members.set(member.conn, member);
    this.#emit('presence', { topic, event, member, members: this.members(topic) });
  }

  // ---- helpers ---------------------------------------------------------------------------

  #topic(topic: string): TopicState {
    let ts = this.#topics.get(topic);
    if (ts === undefined) {
      ts = {
        subscribed: false,
        presence: false,
        rewind: 0,
        watching: false,
        joined: undefined,
        position: null,
        members: new Map(),
        collectors: [],
        waiters: { subscribe: [], join: [], watch: [] },
        retry: null,
        retries: 0,
      };
      this.#topics.set(topic, ts);
    }
    return ts;
  }

  #removeCollector(opts: RequestOptions): void {
    const { topic, collector } = opts;
    if (topic === undefined || collector === undefined) return;
    const list = this.#topics.get(topic)?.collectors;
    const i = list?.indexOf(collector) ?? -1;
    if (i !== -1) list!.splice(i, 1);
  }

  #failPending(code: string, message: string): void {
    const pending = this.#pending;
    this.#pending = new Map();
    for (const [id, p] of pending) {
      clearTimeout(p.timer);
      this.#removeCollector(p.opts);
      p.reject({ code, message, id });
    }
  }

  #positionKey(topic: string): string {
    return `${this.#opts.storageKey}:pos:${topic}`;
  }

  #loadPosition(topic: string): Position | null {
    try {
      const raw = this.#storage?.getItem(this.#positionKey(topic));
      if (raw === null || raw === undefined) return null;
      const p = JSON.parse(raw) as Position;
      return typeof p.epoch === 'string' && Number.isSafeInteger(p.offset) && p.offset >= 0 ? p : null;
    } catch {
      return null;
    }
  }

  #savePosition(topic: string, p: Position): void {
    try {
      this.#storage?.setItem(this.#positionKey(topic), JSON.stringify(p));
    } catch {
      // quota or disabled storage: recovery then only works within this page's life
    }
  }

  /** Subscribes again after random(cap / 2, cap), cap = min(backoffMaxMs, backoffBaseMs x 2^retries): a node catching up is not asked in a tight loop. */
  #retrySubscribe(topic: string, ts: TopicState): void {
    if (ts.retry !== null) clearTimeout(ts.retry);
    const delay = this.#backoff(ts.retries++);
    ts.retry = setTimeout(() => {
      ts.retry = null;
      if (this.#state === 'open' && ts.subscribed) this.#restore(topic, 'subscribe');
    }, delay);
  }

  /** The jittered delay before the retry after `retries` earlier ones: half to all of the doubling cap. */
  #backoff(retries: number): number {
    const cap = Math.min(this.#opts.backoffMaxMs, this.#opts.backoffBaseMs * 2 ** Math.min(retries, 30));
    return cap / 2 + (this.#random() * cap) / 2;
  }

  #clearRetries(): void {
    for (const ts of this.#topics.values()) {
      if (ts.retry !== null) clearTimeout(ts.retry);
      ts.retry = null;
    }
  }

  #clearTimer(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #setState(s: ClientState): void {
    if (this.#state === s) return;
    this.#state = s;
    this.#emit('state', s);
  }

  #emit<K extends keyof ClientEvents>(type: K, ev: ClientEvents[K]): void {
    const set = this.#listeners.get(type);
    if (set === undefined) return;
    for (const fn of [...set]) {
      try {
        fn(ev);
      } catch (err) {
        // A listener's bug must not break the client.
        setTimeout(() => {
          throw err;
        }, 0);
      }
    }
  }
}
