/**
 * Every default limit of murmur, in one place, each with the reason for its value.
 * A leaf module: it imports nothing, so every layer may read it.
 */
export const DEFAULT_LIMITS = {
  /** 16 MiB: the largest message the Autobahn performance cases send; larger needs opting in. */
  maxPayload: 16 * 1024 * 1024,
  /** Bytes of the HTTP request head. 16 KiB fits any real browser upgrade with cookies (nginx's large_client_header_buffers is 4 x 8k). */
  maxHeadBytes: 16 * 1024,
  /** Header lines per request. Browsers send fewer than 30; 100 leaves room for proxies. */
  maxHeaders: 100,
  /** One request or header line. 8 KiB, as Python websockets' MAX_LINE_LENGTH and nginx's per-buffer size. */
  maxLineLength: 8 * 1024,
  /** Time from TCP accept to a complete upgrade request. Long enough for a slow mobile link, short enough that idle half-opens cannot pile up. */
  handshakeTimeoutMs: 10_000,
  /** Sockets in the handshake at once (accepted, upgrade not yet answered); beyond it new sockets get 503. 4,096: 8x the load generator's 500 pending, and at most 64 MiB of request heads (16 KiB each). 0 = unlimited. */
  maxHandshakes: 4096,
  /** Sockets in the handshake at once from one address; beyond it new sockets from it get 429 and are closed. 1,024: a NAT's reconnect storm fits, one address cannot take every handshake slot. Counted only while at least this many handshakes are in flight in all (free for a server not under a flood), so one address holds at most twice it. 0 = unlimited. */
  maxHandshakesPerAddress: 1024,
  /** Sockets from one address at once, open connections included; beyond it new ones get 429 and are closed. 0 = unlimited: off for the library (a benchmark host or a proxy is one address); `murmur serve` turns it on. */
  maxConnectionsPerAddress: 0,
  /** Descriptors kept free below the process's limit (soft RLIMIT_NOFILE, read at listen on Linux): a socket accepted into them is answered 503 and closed at once, so a full process still answers instead of libuv closing clients unanswered, and keeps room for files and logs. 16: a few log files, DNS and outbound sockets. 0 = none. */
  descriptorReserve: 16,
  /** Concurrent connections per server; 0 = unlimited. Off by default: the kernel's descriptor limit is the real bound. */
  maxConnections: 0,
  /** Bytes queued for one connection before the slow-consumer policy fires. 1 MiB: a few screens of chat, bounded for 100k connections (100 GiB worst case would not be, so operators lower it for huge fleets). */
  maxBackpressure: 1024 * 1024,
  /** A pong is queued only while the connection's backlog is under this many bytes; above it the pong is owed (one, for the latest ping: RFC 6455 5.5.3) and reading pauses until the backlog drains. 16 KiB: the transports' high-water mark, so a drain is on its way whenever a pong is held back. */
  maxControlBacklog: 16 * 1024,
  /** Pings that may arrive while a pong is owed; one more closes the connection with 1008. 64: a client that reads sends one or two; a flood of pings that never reads its pongs sends thousands per read. */
  maxOwedPings: 64,
  /** Interval between server pings to a quiet connection. 30 s keeps NAT and load-balancer idle timers (often 60 s) alive. */
  pingIntervalMs: 30_000,
  /** A connection that has sent nothing (not even a pong) for this long is closed (1001 with reason "idle timeout"). Two missed pings. */
  idleTimeoutMs: 75_000,
  /** After sending a close frame, how long we wait for the peer's close before destroying the socket. */
  closeTimeoutMs: 5_000,
  /** The default onError says each kind of server error at most once per this interval (then how many it held back): a client that triggers a failure in a loop cannot flood the log. */
  errorLogIntervalMs: 10_000,
  /** Bytes of a topic name. Names are map keys held once per topic; 256 fits any hierarchical name a client should send. */
  maxTopicLength: 256,
  /** Topics one connection may subscribe to. Each costs a set entry and an array slot; 1,000 bounds a hostile client at tens of KiB. */
  maxSubscriptions: 1000,
  /** Topics keeping a history at once. A history costs what it holds, so this bounds the index; beyond it the least recently used topic nobody subscribes to loses its history. */
  maxHistoryTopics: 10_000,
  /** Memory all histories together may hold (their heldBytes); beyond it the least recently used unsubscribed topics lose theirs. 256 MiB: a fair share of a small server. */
  maxHistoryBytes: 256 * 1024 * 1024,
  /** permessage-deflate: messages shorter than this many bytes are sent uncompressed. 64: below it the deflate header and block overhead eat most of the gain, and zlib's per-call set-up dominates the CPU. */
  deflateThreshold: 64,
  /** permessage-deflate: the window the server compresses with (server_max_window_bits). 15, measured in docs/compression.md: no context takeover means a message is compressed alone, so the window only matters for messages larger than it; below 15 the ratio of large messages drops while the browser's memory barely changes. */
  deflateWindowBits: 15,
  /** permessage-deflate: zlib level. 6 (zlib's default): levels above it buy under 1% on chat JSON for more CPU. */
  deflateLevel: 6,
  /** permessage-deflate: zlib memLevel (hash table size) of the one-message compressor. 8 (zlib's default): the context lives for one call, so its size is transient. */
  deflateMemLevel: 8,
  /** Graceful shutdown: how long connections get to finish their close handshake after 1001. */
  shutdownTimeoutMs: 10_000,
} as const;

export type Limits = { -readonly [K in keyof typeof DEFAULT_LIMITS]: number };

/**
 * Limits that hold for the whole process (every server and client in it), not per server:
 * what they bound is shared. Changed only by tests and benchmarks (server/bounded-inflate.ts).
 */
export const PROCESS_LIMITS = {
  /** permessage-deflate: a message inflates in one synchronous call up to this many bytes of output; a larger one leaves for a bounded inflation in slices of this size (server/bounded-inflate.ts). 256 KiB: inflating it takes 0.2-2 ms on a loaded 2-core machine, and chat messages are far below it. */
  inflateSyncBytes: 256 * 1024,
  /** permessage-deflate, inflation on the event loop ('chunked'): a turn runs slices (of inflateSyncBytes of output each, jobs in turn) until this many milliseconds have passed, then yields. 1 ms: a slice of highly compressed data takes tens of microseconds, so one slice per turn would spend more on turns than on inflating; a turn stays within 1 ms plus one slice. */
  inflateTurnMs: 1,
  /** permessage-deflate: large inflations running at once in the process (they take turns on the loop). 2: each holds up to maxPayload of output and a zlib context, and two in turn keep one large message from waiting behind another; where they fall back to the threadpool, 2 of libuv's 4 threads stay free for files and DNS. */
  maxInflations: 2,
  /** permessage-deflate: large inflations waiting for a slot (their connections' reads paused); one more fails its connection with 1013. 128: at 16 MiB and under 100 ms each, the last waits a few seconds, far below the idle timeout; each holds only its compressed message. */
  maxQueuedInflations: 128,
  /** permessage-deflate: bytes a connection reads and holds behind a message being inflated before its reading pauses. 64 KiB: one read of either transport, so a peer's FIN or reset during the inflation is seen (and frees the job) while a peer that keeps sending is held to that. */
  inflateReadAhead: 64 * 1024,
} as const;

/**
 * The kernel's accept queue of a listening socket (listen()'s backlog; the kernel caps it at
 * net.core.somaxconn). 511: nginx's and Redis's default, room for a reconnect burst of a few
 * hundred clients between two turns of the event loop. Workers that share one listening socket
 * (Node before 22.12: no SO_REUSEPORT) share its one queue: the socket gets this once per worker
 * (src/server/supervisor.ts), the total the same workers would have with a socket each.
 */
export const LISTEN_BACKLOG = 511;

/**
 * Giving V8's young generation back when a process goes quiet (src/server/idle-gc.ts), one
 * ticker per process. Per-process, not per-server: the young generation is the process's.
 */
export const IDLE_GC_DEFAULTS = {
  /** The ticker's interval. 1 s: the sweep's own period; quiet is judged over whole ticks. */
  tickMs: 1000,
  /** Quiet this long before the GC. 5 s: V8 shrinks the young generation in a full GC only when the allocation rate over its last 5 s of samples is under 1 MB/s, so a GC sooner after load is one V8 does not shrink in. */
  quietMs: 5000,
  /** A tick is quiet below 5% event-loop utilisation: 19,000 idle connections with their pings and sweep use well under 1%; a process moving messages is above it. */
  quietUtilization: 0.05,
  /** A tick at 20% or more re-arms the trigger after a GC: four times the quiet threshold, so a process hovering at the threshold is not collected once per quiet second. */
  busyUtilization: 0.2,
  /** 4 MiB of committed young generation (2 MiB semi-spaces, V8's second step) or less: nothing worth a full GC. */
  youngFloorBytes: 4 * 1024 * 1024,
  /** No GC on a heap using more than 256 MiB: a full GC's pause grows with the live heap (7-27 ms measured at 10,000-19,000 idle connections, 10-15 MiB of heap, on a loaded 2-vCPU machine, once 110 ms), while what it gives back is at most 32 MiB whatever the heap. */
  maxHeapBytes: 256 * 1024 * 1024,
} as const;
