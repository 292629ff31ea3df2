/**
 * One worker process of `murmur serve --workers N` (its primary is workers.ts), on the generic
 * worker side (src/server/supervised.ts: settings over IPC, the shared port, the drain, never
 * outliving the supervisor): runs a whole App on the shared port, listens on a peer port of
 * its own for node-to-node links, and answers the primary's questions (metrics, mesh links).
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { App } from './app.js';
import { mergeExpositions } from './metrics.js';
import { MESH_PATH } from '../cluster/bus/bus-config.js';
import { runSupervisedWorker, sendUser, workerIndex } from '../server/supervised.js';
import { installStatsSignal } from '../server/stats-signal.js';
import type { ListenTarget } from '../server/supervised.js';
import { isAppMessage, PEER_HEADERS_TIMEOUT_MS, PEER_MAX_CONNECTIONS, WORKER_ARG } from './worker-ipc.js';
import type { AppMessage, WorkerReady, WorkerSettings } from './worker-ipc.js';

/** Time a worker waits for the primary's merged metrics before answering with its own. */
const SCRAPE_TIMEOUT_MS = 4_000;

function hostForAddr(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
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

/** The body of a worker process: an App on the shared port, and a peer listener. */
function runWorker(): void {
  let app: App | null = null;
  let index = -1;
  let peer: HttpServer | null = null;
  // GET /metrics on this worker: every worker's, merged by the primary (one request in flight).
  let scrape: Promise<string> | null = null;
  let scrapeSeq = 0;
  const waiting = new Map<number, (text: string) => void>();

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
      void sendUser({ kind: 'scrape', id } satisfies AppMessage);
    }).finally(() => (scrape = null));
    return scrape;
  };

  installStatsSignal(() => app?.realtime.server ?? null);
  runSupervisedWorker({
    async start(settings: unknown, i: number, target: ListenTarget) {
      const init = settings as WorkerSettings;
      index = i;
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
      const address = await a.listen('handle' in target ? { handle: target.handle, backlog: target.backlog } : { port: target.port, host: target.host, backlog: target.backlog, ...(target.reusePort ? { reusePort: true } : {}) });
      const info: WorkerReady = { node: a.cluster!.id, gossip: a.cluster!.node.address, peer: `${hostForAddr(peerAddr.address)}:${peerAddr.port}` };
      return { address, handle: a.listeningHandle, info };
    },
    async stop() {
      await app?.shutdown();
      const p = peer;
      if (p === null) return;
      await new Promise<void>((resolve) => {
        p.close(() => resolve());
        p.closeAllConnections();
      });
    },
    stopTimeoutMs: () => (app === null ? 10_000 : app.config.drainDelayMs + app.config.shutdownTimeoutMs + 10_000),
    answer(what: string) {
      const a = app;
      if (a === null) return null;
      if (what === 'metrics') return a.localMetrics();
      const mesh = a.mesh;
      return mesh === null ? null : mesh.links().filter((l) => l.state === 'synced').map((l) => l.id);
    },
    onMessage(m: unknown) {
      if (!isAppMessage(m) || m.kind !== 'scraped') return;
      const w = waiting.get(m.id);
      waiting.delete(m.id);
      w?.(m.text);
    },
  });
}

if (process.argv[2] === WORKER_ARG && process.argv[1] === fileURLToPath(import.meta.url) && workerIndex() !== -1) runWorker();
