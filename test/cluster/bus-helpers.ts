// Helpers for the bus tests: a node (a murmur Server with a bus) whose subscribers are real
// murmur WebSocket clients, a subscriber that records what it receives, bounded polling.
import { createServer as createHttpServer } from 'node:http';
import type { Server as HttpServer } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { createHash } from 'node:crypto';
import { Server } from '../../src/server/server.js';
import { WebSocket } from '../../src/client/websocket.js';
import { MeshBus } from '../../src/cluster/bus/mesh.js';
import type { MeshBusOptions, MeshLimits } from '../../src/cluster/bus/mesh.js';
import type { HistoryOptions } from '../../src/pubsub/history.js';
import { StaticMembership } from '../../src/cluster/bus/membership.js';
import { MESH_PATH } from '../../src/cluster/bus/bus-config.js';
import { LinkAuth } from '../../src/cluster/bus/auth.js';
import type { Bus } from '../../src/pubsub/bus.js';

export const KEY_A = Buffer.alloc(32, 0xa1);
export const KEY_B = Buffer.alloc(32, 0xb2);
export const KEY_C = Buffer.alloc(32, 0xc3);

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `cond` every 10 ms until it holds; throws after `timeoutMs` naming `what`. */
export async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timeout (${timeoutMs} ms) waiting for ${what}`);
    await sleep(10);
  }
}

/** A server whose clients subscribe with "sub:<topic>" / "unsub:<topic>" and get "ok:<command>". */
export function busServer(bus: Bus | undefined): Server {
  return new Server({
    ...(bus !== undefined ? { bus } : {}),
    handlers: {
      message(conn, data, isBinary) {
        if (isBinary) return;
        const text = data.toString();
        if (text.startsWith('sub:')) conn.subscribe(text.slice(4));
        else if (text.startsWith('unsub:')) conn.unsubscribe(text.slice(6));
        conn.send(`ok:${text}`);
      },
    },
  });
}

/** A murmur client subscribed to topics of a server; records every message. */
export class Subscriber {
  readonly ws: WebSocket;
  readonly received: string[] = [];
  #acks = new Set<string>();

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.onmessage = (ev) => {
      const text = typeof ev.data === 'string' ? ev.data : Buffer.from(ev.data as Buffer).toString();
      if (text.startsWith('ok:')) this.#acks.add(text.slice(3));
      else this.received.push(text);
    };
  }

  static async connect(port: number): Promise<Subscriber> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = (ev) => reject(ev.error);
    });
    return new Subscriber(ws);
  }

  async command(cmd: string): Promise<void> {
    this.ws.send(cmd);
    await until(() => this.#acks.has(cmd), 5000, `ack of ${cmd}`);
    this.#acks.delete(cmd);
  }

  close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      this.ws.addEventListener('close', () => resolve());
      this.ws.close();
    });
  }
}

export interface MeshNode {
  id: string;
  server: Server;
  port: number;
  mesh: MeshBus;
  /** Port links are accepted on (own listener or the node:http server). */
  meshPort: number;
  membership: StaticMembership;
  http: HttpServer | null;
  logs: string[];
}

export interface NodeOptions extends Partial<Omit<MeshBusOptions, 'membership'>> {
  /** Accept links through a node:http server's upgrade event instead of the mesh's own listener. */
  mountOnHttp?: boolean;
  /** Listen for links on this port (a restarted node keeps its port). */
  meshPort?: number;
}

/** Starts a node: a murmur Server listening on loopback, a MeshBus attached to it and accepting links. */
export async function startMeshNode(id: string, options: NodeOptions = {}): Promise<MeshNode> {
  const membership = new StaticMembership(id);
  const logs: string[] = [];
  const mesh = new MeshBus({ membership, keys: [KEY_A], log: (l) => logs.push(l), ...options });
  const server = busServer(mesh);
  const port = (await server.listen(0, '127.0.0.1')).port;
  let http: HttpServer | null = null;
  let meshPort: number;
  if (options.mountOnHttp === true) {
    const h = createHttpServer((_req, res) => res.writeHead(404).end());
    h.on('upgrade', (req, socket, head) => {
      if ((req.url ?? '').split('?')[0] === MESH_PATH) mesh.handleUpgrade(req, socket, head);
      else socket.destroy();
    });
    await new Promise<void>((resolve) => h.listen(options.meshPort ?? 0, '127.0.0.1', resolve));
    http = h;
    meshPort = (h.address() as AddressInfo).port;
  } else {
    meshPort = (await mesh.listen(options.meshPort ?? 0, '127.0.0.1')).port;
  }
  return { id, server, port, mesh, meshPort, membership, http, logs };
}

export function meshUrl(node: MeshNode): string {
  return `ws://127.0.0.1:${node.meshPort}${MESH_PATH}`;
}

/** Every node's membership lists every other node; then every mesh starts. */
export function linkAll(nodes: MeshNode[]): void {
  for (const n of nodes) n.membership.set(nodes.filter((o) => o !== n).map((o) => ({ id: o.id, url: meshUrl(o) })));
  for (const n of nodes) n.mesh.start();
}

/** Until every node has a synced link to every other whose interest holds `topic` (or all of them). */
export async function untilInterest(nodes: MeshNode[], peersWithTopic: Map<string, string[]>, timeoutMs = 5000): Promise<void> {
  await until(
    () =>
      nodes.every((n) =>
        n.mesh.links().every((l) => l.state === 'synced' && (peersWithTopic.get(l.id) ?? []).length <= l.interestTopics),
      ),
    timeoutMs,
    'links synced with the expected interest',
  );
}

export async function stopMeshNode(n: MeshNode): Promise<void> {
  await n.mesh.close();
  await n.server.close(1000);
  if (n.http !== null) {
    n.http.closeAllConnections();
    await new Promise<void>((resolve) => n.http!.close(() => resolve()));
  }
}

/** An unmasked (server) binary frame. */
export function serverFrame(payload: Buffer, opcode = 2): Buffer {
  const len = payload.length;
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const head = Buffer.alloc(2 + ext);
  head[0] = 0x80 | opcode;
  head[1] = ext === 0 ? len : ext === 2 ? 126 : 127;
  if (ext === 2) head.writeUInt16BE(len, 2);
  else if (ext === 8) head.writeBigUInt64BE(BigInt(len), 2);
  return Buffer.concat([head, payload]);
}

export interface FakeLink {
  socket: Socket;
  from: string;
  nonce: Buffer;
  keyIndex: number;
  auth: LinkAuth;
}

/**
 * A hand-written acceptor: verifies the dialer's credentials as node `id`, answers 101, then
 * lets the test behave as it likes (a peer that stops reading, one that sends garbage...).
 */
export async function fakeAcceptor(id: string, keys: Buffer[], behave: (link: FakeLink) => void): Promise<{ port: number; sockets: Set<Socket>; close(): Promise<void> }> {
  const auth = new LinkAuth(keys);
  const sockets = new Set<Socket>();
  const srv = createNetServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
      const headers = new Map(lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      const r = auth.verify(headers.get('murmur-bus-auth'), id);
      if (!r.ok) {
        socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      const accept = createHash('sha1').update(`${headers.get('sec-websocket-key')}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: murmur-bus.1\r\n\r\n`);
      behave({ socket, from: r.from, nonce: r.nonce, keyIndex: r.keyIndex, auth });
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    port: (srv.address() as AddressInfo).port,
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        srv.close(() => resolve());
      }),
  };
}

/** A node whose topics under `room:` keep a history (ordered by the mesh), its server without handlers. */
export interface HistoryNode {
  id: string;
  mesh: MeshBus;
  server: Server;
  membership: StaticMembership;
  url: string;
}

export async function historyNode(id: string, history: HistoryOptions, limits: Partial<MeshLimits> = {}): Promise<HistoryNode> {
  const membership = new StaticMembership(id);
  const mesh = new MeshBus({ membership, keys: [KEY_A], log: () => {}, limits });
  const server = new Server({ bus: mesh, history: (t) => (t.startsWith('room:') ? history : undefined), handlers: {} });
  const port = (await mesh.listen(0, '127.0.0.1')).port;
  return { id, mesh, server, membership, url: `ws://127.0.0.1:${port}${MESH_PATH}` };
}
