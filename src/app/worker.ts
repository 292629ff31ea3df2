/**
 * One worker process of `murmur serve --workers N` (the supervisor is workers.ts): waits for
 * its settings over IPC, runs a whole App on the shared port (a handed listening socket, or
 * its own with reusePort), listens on a peer port of its own for node-to-node links, answers
 * the supervisor's questions (metrics, mesh links), and drains on 'shutdown', SIGTERM or when
 * the supervisor goes away (it never outlives it).
 */
import type { SendHandle, Serializable } from 'node:child_process';
import { createServer } from 'node:http';
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { App } from './app.js';
import { mergeExpositions } from './metrics.js';
import { MESH_PATH } from '../cluster/bus/bus-config.js';
import { isOp, PEER_HEADERS_TIMEOUT_MS, PEER_MAX_CONNECTIONS, START_TIMEOUT_MS, WORKER_ARG } from './worker-ipc.js';
import type { InitMessage, ToPrimary, ToWorker } from './worker-ipc.js';

/** Time a worker waits for the primary's merged metrics before answering with its own. */
const SCRAPE_TIMEOUT_MS = 4_000;

function hostForAddr(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

function sendToPrimary(m: ToPrimary, handle?: unknown): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined || !process.connected) return resolve();
    process.send(m as Serializable, handle as SendHandle | undefined, {}, () => resolve());
  });
}

/** The listener of a worker's own for node-to-node traffic: the mesh path and /healthz only. */
function peerListener(app: () => App | null): HttpServer {
  const server = createServer(
    // Timeouts are checked every second (node:http's default is every 30 s).
    { maxHeaderSize: 8 * 1024, requestTimeout: 10_000, headersTimeout: PEER_HEADERS_TIMEOUT_MS, keepAliveTimeout: 5_000, connectionsCheckingInterval: 1_000 },
    (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    const ok = path === '/healthz' && (req.method === 'GET' || req.method === 'HEAD');
    const body = ok ? 'ok\n' : 'this port takes node-to-node links only\n';
    res.writeHead(ok ? 200 : 404, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
    res.end(body);
    },
  );
  server.maxConnections = PEER_MAX_CONNECTIONS;
  // node:http times out a request head that is late, not a connection that sends nothing.
  server.on('connection', (socket: Socket) => socket.setTimeout(PEER_HEADERS_TIMEOUT_MS, () => socket.destroy()));
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const mesh = app()?.mesh ?? null;
    if ((req.url ?? '/').split('?')[0] === MESH_PATH && mesh !== null) {
      // A link lives long and has its own heartbeats.
      (socket as Socket).setTimeout(0);
      mesh.handleUpgrade(req, socket, head);
      return;
    }
    socket.on('error', () => {});
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  });
  server.on('clientError', (_err, socket: Duplex) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
  });
  return server;
}

/**
 * The body of a worker process: waits for its settings, runs an App, answers the primary.
 * One message listener for the whole life of the process: a message that arrives while none
 * is attached is lost, and 'shutdown' may come at any point of the start.
 */
function runWorker(): void {
  let app: App | null = null;
  let index = -1;
  let stopRequested = false;
  let stopping = false;
  let peer: HttpServer | null = null;
  // GET /metrics on this worker: every worker's, merged by the primary (one request in flight).
  let scrape: Promise<string> | null = null;
  let scrapeSeq = 0;
  const waiting = new Map<number, (text: string) => void>();
  const startTimer = setTimeout(() => process.exit(1), START_TIMEOUT_MS);

  const stop = (): void => {
    stopRequested = true;
    // Not started yet: nothing to drain. Starting: stop once listening (start() checks).
    if (app === null && index === -1) process.exit(0);
    if (app === null || !app.listening || stopping) return;
    stopping = true;
    const a = app;
    const force = setTimeout(() => process.exit(1), a.config.drainDelayMs + a.config.shutdownTimeoutMs + 10_000);
    force.unref();
    a.shutdown()
      .then(
        () =>
          new Promise<void>((resolve) => {
            if (peer === null) return resolve();
            peer.close(() => resolve());
            peer.closeAllConnections();
          }),
      )
      .then(
        () => process.exit(0),
        (err: unknown) => {
          console.error(err);
          process.exit(1);
        },
      );
  };

  const metricsText = (a: App): Promise<string> => {
    scrape ??= new Promise<string>((resolve) => {
      const local = (): string => mergeExpositions([{ worker: String(index), text: a.localMetrics() }]);
      if (!process.connected) return resolve(local());
      const id = ++scrapeSeq;
      const t = setTimeout(() => {
        waiting.delete(id);
        resolve(local());
      }, SCRAPE_TIMEOUT_MS);
      waiting.set(id, (text) => {
        clearTimeout(t);
        resolve(text);
      });
      void sendToPrimary({ op: 'scrape', id });
    }).finally(() => (scrape = null));
    return scrape;
  };

  const start = async (init: InitMessage, handle: unknown): Promise<void> => {
    index = init.index;
    try {
      peer = peerListener(() => app);
      const p = peer;
      const peerAddr = await new Promise<AddressInfo>((resolve, reject) => {
        p.once('error', reject);
        p.listen(init.peer.port, init.peer.host, () => {
          p.off('error', reject);
          resolve(p.address() as AddressInfo);
        });
      });
      const advertiseHttp = `${hostForAddr(init.peer.advertise)}:${peerAddr.port}`;
      const a = new App({ ...init.options, cluster: { ...init.options.cluster, advertiseHttp } });
      a.metricsText = () => metricsText(a);
      app = a;
      const l = init.listen;
      const addr = await a.listen(l.kind === 'handle' ? (handle as object) : { port: l.port, host: l.host, ...(l.reusePort ? { reusePort: true } : {}) });
      clearTimeout(startTimer);
      const own = a.listeningHandle;
      await sendToPrimary(
        { op: 'ready', index, port: addr.port, address: addr.address, family: addr.family, node: a.cluster!.id, gossip: a.cluster!.node.address, peer: `${hostForAddr(peerAddr.address)}:${peerAddr.port}` },
        init.shareHandle ? own : undefined,
      );
    } catch (err) {
      await sendToPrimary({ op: 'failed', index, message: (err as Error).message });
      process.exit(1);
    }
    if (stopRequested) stop();
  };

  process.on('message', (m: unknown, handle: unknown) => {
    if (!isOp<ToWorker>(m)) return;
    switch (m.op) {
      case 'init':
        if (index === -1) void start(m, handle);
        return;
      case 'ask': {
        const a = app;
        if (a === null) return;
        const mesh = a.mesh;
        const value = m.what === 'metrics' ? a.localMetrics() : mesh === null ? null : mesh.links().filter((l) => l.state === 'synced').map((l) => l.id);
        void sendToPrimary({ op: 'answer', id: m.id, value });
        return;
      }
      case 'scraped': {
        const w = waiting.get(m.id);
        waiting.delete(m.id);
        w?.(m.text);
        return;
      }
      case 'shutdown':
        stop();
        return;
    }
  });
  // The primary went away (killed): do not outlive it.
  process.on('disconnect', stop);
  process.on('SIGTERM', stop);
  // Ctrl-C reaches every process of the group: the primary decides, and tells the workers.
  process.on('SIGINT', () => {});
}

if (process.argv[2] === WORKER_ARG && process.argv[1] === fileURLToPath(import.meta.url) && process.send !== undefined) runWorker();
