/**
 * `murmur serve`: the ready real-time server (pub/sub, presence, history, HTTP API, metrics,
 * demo page) on one port. Settings come from flags, MURMUR_* variables and an optional JSON
 * config file (keys are the flag names); every one has a default, so `murmur serve` alone runs.
 *
 * Prints `LISTENING <port> <url>` when ready. SIGTERM (and SIGINT) drain gracefully: readyz
 * answers 503, clients get 1012 with a retry-after hint, close handshakes get up to
 * --shutdown-timeout-ms, then the process prints STOPPED and exits 0.
 *
 * With a cluster key (--cluster-key, better MURMUR_CLUSTER_KEY) it joins a cluster: gossip on
 * --gossip-port, joining through --seeds, presence shared by every node. It then also prints
 * `CLUSTER <node-id> <gossip host:port>` once the gossip sockets are bound, and leaves the
 * cluster gracefully on SIGTERM (after the drain).
 *
 * With --workers N it runs N worker processes on the one port (src/app/workers.ts), each a
 * node of a cluster (the configured one, or a private one of the workers); this process only
 * supervises them. LISTENING comes once every worker listens (and, in a configured cluster,
 * one CLUSTER line per worker); SIGTERM drains every worker, then STOPPED.
 */
import { availableParallelism } from 'node:os';
import { App } from '../app/app.js';
import { AppWorkers, WorkerStartError, MAX_WORKERS } from '../app/workers.js';
import type { WorkerInfo } from '../app/workers.js';
import type { AppOptions } from '../app/app.js';
import { DEFAULT_APP_CONFIG, ConfigError } from '../app/config.js';
import type { AppConfig } from '../app/config.js';
import { DEFAULT_CLUSTER_READY_TIMEOUT_MS, DEFAULT_GOSSIP_PORT, ClusterConfigError, EXIT_NODE_ID_CONFLICT, parseClusterKey } from '../app/cluster.js';
import type { ClusterOptions } from '../app/cluster.js';
import { DEFAULT_LAN_CONFIG, FAST_LOCAL_CONFIG } from '../cluster/gossip/gossip-config.js';
import type { GossipConfig } from '../cluster/gossip/gossip-config.js';
import { installStatsSignal } from '../server/stats-signal.js';
import { UsageError, inFlagTerms } from './args.js';
import { DEFAULT_SEMI_SPACE_MIB, applySemiSpace, checkSemiSpace } from './young-generation.js';
import type { FlagSpec, FlagValues } from './args.js';

const D = DEFAULT_APP_CONFIG;

export const serveFlags: Record<string, FlagSpec> = {
  config: { type: 'string', describe: 'JSON file of settings, keys as these flag names (or MURMUR_CONFIG)', cliOnly: true },
  port: { type: 'number', describe: 'TCP port (0 picks a free one)', default: D.port },
  host: { type: 'string', describe: 'address to bind; 0.0.0.0 (or ::) to accept other machines', default: D.host },
  secret: { type: 'string', describe: 'HMAC secret that signs tokens (prefer MURMUR_SECRET: flags show in ps)', secret: true },
  'require-token': { type: 'boolean', describe: 'refuse upgrades without a valid token (401)', default: D.requireToken },
  'anon-subscribe': { type: 'list', describe: 'topic patterns anonymous connections may subscribe to', default: D.anonymous.subscribe },
  'anon-publish': { type: 'list', describe: 'topic patterns anonymous connections may publish to', default: D.anonymous.publish },
  'anon-presence': { type: 'list', describe: 'topic patterns whose presence anonymous connections may see', default: D.anonymous.presence },
  'api-key': { type: 'string', describe: 'key for POST /api/publish and GET /api/presence (prefer MURMUR_API_KEY); none = API off', secret: true },
  origins: { type: 'list', describe: 'allowed Origin values for upgrades; none = any', default: D.origins },
  'history-topics': { type: 'list', describe: 'topic patterns that keep history', default: D.historyTopics },
  'history-max-messages': { type: 'number', describe: 'messages kept per topic', default: D.historyMaxMessages },
  'history-max-bytes': { type: 'number', describe: 'bytes kept per topic', default: D.historyMaxBytes },
  'history-max-age-ms': { type: 'number', describe: 'age after which a message leaves the history (0 = no limit)', default: D.historyMaxAgeMs },
  'history-max-topics': { type: 'number', describe: 'topics with history at once (beyond it the least recently used unsubscribed one is evicted)', default: D.historyMaxTopics },
  'history-max-total-bytes': { type: 'number', describe: 'memory all histories together may hold (least recently used unsubscribed topics evicted beyond it)', default: D.historyMaxTotalBytes },
  'max-new-topics': { type: 'number', describe: 'topics with history one connection may create per minute', default: D.maxNewTopicsPerMinute },
  'max-message-bytes': { type: 'number', describe: 'largest command or message; larger gets TOO_LARGE', default: D.maxMessageBytes },
  'rate-limit': { type: 'number', describe: 'commands per second per connection', default: D.rateLimit },
  'rate-burst': { type: 'number', describe: 'burst of commands allowed above the rate', default: D.rateBurst },
  'abuse-max-errors': { type: 'number', describe: 'errors within the abuse window that close a connection (1008)', default: D.abuseMaxErrors },
  'abuse-window-ms': { type: 'number', describe: 'the abuse window', default: D.abuseWindowMs },
  'presence-max-members': { type: 'number', describe: 'presence entries per topic', default: D.presenceMaxMembers },
  'presence-max-meta-bytes': { type: 'number', describe: 'bytes of presence meta (JSON)', default: D.presenceMaxMetaBytes },
  'presence-max-topics': { type: 'number', describe: 'topics one connection may be present in', default: D.presenceMaxTopics },
  'max-shared-scopes': { type: 'number', describe: 'distinct token permission sets shared between connections (0 = none shared)', default: D.maxSharedScopes },
  'max-connections': { type: 'number', describe: 'open connections; beyond it 1013 (0 = unlimited)', default: D.maxConnections },
  'max-connections-per-address': { type: 'number', describe: 'sockets from one address at once; beyond it 429 and close (0 = unlimited)', default: D.maxConnectionsPerAddress },
  'max-handshakes-per-address': { type: 'number', describe: 'sockets from one address in the handshake at once; beyond it 429 and close (0 = unlimited)', default: D.maxHandshakesPerAddress },
  'max-handshakes': { type: 'number', describe: 'sockets in the handshake at once; beyond it 503 and close (0 = unlimited)', default: D.maxHandshakes },
  'trusted-proxies': { type: 'list', describe: 'addresses or CIDR blocks of load balancers and proxies, exempt from the per-address limits', default: D.trustedProxies },
  'max-subscriptions': { type: 'number', describe: 'subscriptions per connection (presence watches count)', default: D.maxSubscriptions },
  'max-topic-bytes': { type: 'number', describe: 'bytes of a topic name', default: D.maxTopicBytes },
  'max-body-bytes': { type: 'number', describe: 'HTTP request body limit (413 above)', default: D.maxBodyBytes },
  'max-backpressure': { type: 'number', describe: 'bytes queued per connection before the slow-consumer policy', default: D.maxBackpressure },
  'slow-consumer': { type: 'string', describe: 'close (reconnect and recover) or drop', default: D.slowConsumer },
  deflate: { type: 'boolean', describe: 'negotiate permessage-deflate with clients that offer it (--deflate=false turns it off)', default: D.deflate },
  'deflate-threshold': { type: 'number', describe: 'bytes below which a message goes uncompressed', default: D.deflateThreshold },
  'idle-gc': { type: 'boolean', describe: "give V8's young generation back once the process has been quiet for 5 s: one full GC, never while busy (--idle-gc=false turns it off)", default: D.idleGc },
  'drain-delay-ms': { type: 'number', describe: 'on SIGTERM, readyz is 503 this long before clients are told to go', default: D.drainDelayMs },
  'shutdown-timeout-ms': { type: 'number', describe: 'on SIGTERM, time for close handshakes before sockets are destroyed', default: D.shutdownTimeoutMs },
  'retry-after': { type: 'number', describe: 'seconds hinted to clients with 1012 (restart) and 1013 (full, draining)', default: D.retryAfterSeconds },
  rebalance: { type: 'boolean', describe: 'in a cluster, shed connections above the cluster mean so the load balancer spreads them (--rebalance=off to stop)', default: D.rebalance },
  'rebalance-margin': { type: 'number', describe: 'percent above the cluster mean at which a node starts shedding (down to the mean)', default: D.rebalanceMargin },
  'rebalance-min-excess': { type: 'number', describe: 'connections above the mean below which a node never rebalances', default: D.rebalanceMinExcess },
  'rebalance-join-delay-ms': { type: 'number', describe: 'a member counts in the mean this long after it joined (the balancer lets it in meanwhile)', default: D.rebalanceJoinDelayMs },
  'shed-rate': { type: 'number', describe: 'percent of its connections a node sheds per second at most (rebalancing and overload)', default: D.shedRate },
  'overload-lag-ms': { type: 'number', describe: 'event-loop delay p99 above which (2 s running) the node refuses upgrades and sheds (0 = off)', default: D.overloadLagMs },
  'overload-memory': { type: 'number', describe: 'percent of the memory limit (RSS) or of the V8 heap limit above which the node refuses upgrades and sheds (0 = off)', default: D.overloadMemory },
  workers: { type: 'number', describe: 'server processes sharing the port, each a cluster node (0 = one per core; limits like --max-connections are per worker)', default: 1 },
  'semi-space': { type: 'number', describe: "MiB of V8's young generation (per semi-space) in the processes that hold connections; 1 saves ~0.5-1 KiB per idle connection, costs throughput (0 = V8's own sizing)", default: DEFAULT_SEMI_SPACE_MIB },
  'peer-port': { type: 'number', describe: "with --workers: first port of the workers' node-to-node listeners, worker i on peer-port + i (0 picks free ones)", default: 0 },
  'cluster-key': { type: 'string', describe: 'joins a cluster: the shared key, 32 bytes as base64 or hex (prefer MURMUR_CLUSTER_KEY); none = single node', secret: true },
  'cluster-keyring': { type: 'list', describe: 'more keys accepted, not sent with (key rotation; MURMUR_CLUSTER_KEYRING)', secret: true },
  'cluster-label': { type: 'string', describe: 'cluster label: nodes of different labels never mix' },
  seeds: { type: 'list', describe: 'gossip host:port of nodes to join through (none: start a cluster)', default: [] },
  'cluster-ready-timeout-ms': { type: 'number', describe: 'with --seeds, /readyz answers 503 when no member was reached this long after start', default: DEFAULT_CLUSTER_READY_TIMEOUT_MS },
  'node-id': { type: 'string', describe: 'unique node name in the cluster (default: host name + 8 random hex digits)' },
  'gossip-host': { type: 'string', describe: 'address the gossip UDP and TCP sockets bind (default: --host)' },
  'gossip-port': { type: 'number', describe: 'gossip port, UDP and TCP (0 picks a free one)', default: DEFAULT_GOSSIP_PORT },
  'advertise-host': { type: 'string', describe: 'host other nodes reach this one at, for gossip and HTTP (required with a wildcard --host)' },
  'advertise-http': { type: 'string', describe: "host:port gossiped as this node's HTTP address (default: advertise host and --port)" },
  bus: { type: 'string', describe: 'in a cluster, how messages reach the other nodes: mesh (direct links), redis, or none', default: 'mesh' },
  'redis-url': { type: 'string', describe: 'with --bus redis: redis://[user:password@]host:port[/db] (prefer MURMUR_REDIS_URL)', default: 'redis://127.0.0.1:6379', secret: true },
  'gossip-profile': { type: 'string', describe: 'gossip timings: lan (probe every 1 s) or local (150 ms; one machine, tests)', default: 'lan' },
  'gossip-probe-interval-ms': { type: 'number', describe: 'probe period (overrides the profile)' },
  'gossip-probe-timeout-ms': { type: 'number', describe: 'direct probe timeout, below the period (overrides the profile)' },
  'gossip-interval-ms': { type: 'number', describe: 'gossip round period (overrides the profile)' },
  'gossip-suspicion-mult': { type: 'number', describe: 'suspicion timeout multiplier (overrides the profile)' },
  'gossip-push-pull-interval-ms': { type: 'number', describe: 'full-state exchange period (overrides the profile)' },
  help: { type: 'boolean', describe: 'show this help', cliOnly: true },
};

export const serveHelp = `Runs the real-time server: WebSocket pub/sub with history and presence on /ws, the
HTTP API, /healthz, /readyz, /metrics, and a demo chat at / (open it in two tabs).
Every flag also reads MURMUR_<FLAG> (e.g. MURMUR_PORT=9000) and the key "<flag>" of a JSON
config file (--config path); flags win over variables, variables over the file.
Example: murmur serve --host 0.0.0.0 --port 8080 --history-max-messages 500
Cluster: MURMUR_CLUSTER_KEY=$(openssl rand -base64 32) murmur serve --gossip-port 7946 --seeds 10.0.0.2:7946
Every core: murmur serve --workers 0 (one worker process per core, one port)`;

const str = (v: FlagValues[string]): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: FlagValues[string]): number => v as number;
const list = (v: FlagValues[string]): string[] => (Array.isArray(v) ? v : []);

const GOSSIP_OVERRIDES: Array<[string, keyof GossipConfig]> = [
  ['gossip-probe-interval-ms', 'probeIntervalMs'],
  ['gossip-probe-timeout-ms', 'probeTimeoutMs'],
  ['gossip-interval-ms', 'gossipIntervalMs'],
  ['gossip-suspicion-mult', 'suspicionMult'],
  ['gossip-push-pull-interval-ms', 'pushPullIntervalMs'],
];

/**
 * The cluster settings, or undefined to run alone (no key and no seeds).
 * @throws UsageError for seeds without a key, a bad key or an unknown profile.
 */
export function serveCluster(f: FlagValues): ClusterOptions | undefined {
  const given = str(f['cluster-key']);
  const key = given === undefined || given.trim() === '' ? undefined : given;
  const seeds = list(f.seeds);
  if (key === undefined) {
    if (seeds.length > 0) throw new UsageError('--seeds needs a cluster key: --cluster-key or MURMUR_CLUSTER_KEY (e.g. openssl rand -base64 32)');
    return undefined;
  }
  const bus = f.bus;
  if (bus !== 'mesh' && bus !== 'redis' && bus !== 'none') throw new UsageError(`--bus must be mesh, redis or none, not '${String(bus)}'`);
  const profile = f['gossip-profile'];
  if (profile !== 'lan' && profile !== 'local') throw new UsageError(`--gossip-profile must be lan or local, not '${String(profile)}'`);
  const gossip: Partial<GossipConfig> = profile === 'local' ? { ...DEFAULT_LAN_CONFIG, ...FAST_LOCAL_CONFIG } : { ...DEFAULT_LAN_CONFIG };
  for (const [flag, field] of GOSSIP_OVERRIDES) {
    const v = f[flag];
    if (typeof v === 'number') (gossip as Record<string, number>)[field] = v;
  }
  let keys: Buffer[];
  try {
    keys = [key, ...list(f['cluster-keyring'])].map(parseClusterKey);
  } catch (err) {
    if (err instanceof ClusterConfigError) throw new UsageError(err.message);
    throw err;
  }
  const opt = (name: string): string | undefined => {
    const v = str(f[name]);
    return v === undefined || v === '' ? undefined : v;
  };
  return {
    nodeId: opt('node-id'),
    bindHost: opt('gossip-host'),
    port: num(f['gossip-port']),
    advertiseHost: opt('advertise-host'),
    advertiseHttp: opt('advertise-http'),
    seeds,
    keys,
    label: str(f['cluster-label']),
    gossip,
    bus,
    redisUrl: str(f['redis-url']),
    readyTimeoutMs: num(f['cluster-ready-timeout-ms']),
  };
}

/** Maps resolved settings onto the app's options (its configuration and the cluster's). */
export function serveOptions(f: FlagValues): AppOptions {
  const cluster = serveCluster(f);
  return cluster === undefined ? serveConfig(f) : { ...serveConfig(f), cluster };
}

/** Maps resolved settings onto the app's configuration. */
export function serveConfig(f: FlagValues): Partial<AppConfig> {
  const slow = f['slow-consumer'];
  if (slow !== 'close' && slow !== 'drop') throw new UsageError(`--slow-consumer must be close or drop, not '${String(slow)}'`);
  return {
    port: num(f.port),
    host: str(f.host) ?? D.host,
    secret: str(f.secret),
    requireToken: f['require-token'] === true,
    anonymous: { subscribe: list(f['anon-subscribe']), publish: list(f['anon-publish']), presence: list(f['anon-presence']) },
    apiKey: str(f['api-key']),
    origins: list(f.origins),
    historyTopics: list(f['history-topics']),
    historyMaxMessages: num(f['history-max-messages']),
    historyMaxBytes: num(f['history-max-bytes']),
    historyMaxAgeMs: num(f['history-max-age-ms']),
    historyMaxTopics: num(f['history-max-topics']),
    maxNewTopicsPerMinute: num(f['max-new-topics']),
    historyMaxTotalBytes: num(f['history-max-total-bytes']),
    maxMessageBytes: num(f['max-message-bytes']),
    rateLimit: num(f['rate-limit']),
    rateBurst: num(f['rate-burst']),
    abuseMaxErrors: num(f['abuse-max-errors']),
    abuseWindowMs: num(f['abuse-window-ms']),
    presenceMaxMembers: num(f['presence-max-members']),
    presenceMaxMetaBytes: num(f['presence-max-meta-bytes']),
    presenceMaxTopics: num(f['presence-max-topics']),
    maxSharedScopes: num(f['max-shared-scopes']),
    maxConnections: num(f['max-connections']),
    maxConnectionsPerAddress: num(f['max-connections-per-address']),
    maxHandshakesPerAddress: num(f['max-handshakes-per-address']),
    maxHandshakes: num(f['max-handshakes']),
    trustedProxies: list(f['trusted-proxies']),
    maxSubscriptions: num(f['max-subscriptions']),
    maxTopicBytes: num(f['max-topic-bytes']),
    maxBodyBytes: num(f['max-body-bytes']),
    maxBackpressure: num(f['max-backpressure']),
    slowConsumer: slow,
    deflate: f.deflate === true,
    deflateThreshold: num(f['deflate-threshold']),
    idleGc: f['idle-gc'] === true,
    drainDelayMs: num(f['drain-delay-ms']),
    shutdownTimeoutMs: num(f['shutdown-timeout-ms']),
    retryAfterSeconds: num(f['retry-after']),
    rebalance: f.rebalance === true,
    rebalanceMargin: num(f['rebalance-margin']),
    rebalanceMinExcess: num(f['rebalance-min-excess']),
    rebalanceJoinDelayMs: num(f['rebalance-join-delay-ms']),
    shedRate: num(f['shed-rate']),
    overloadLagMs: num(f['overload-lag-ms']),
    overloadMemory: num(f['overload-memory']),
  };
}

export async function runServe(flags: FlagValues): Promise<void> {
  const workers = serveWorkers(flags);
  const bad = checkSemiSpace(flags['semi-space']);
  if (bad !== null) throw new UsageError(`murmur serve: ${bad}`);
  const notice = applySemiSpace(flags['semi-space'] as number, workers);
  if (notice !== null) process.stderr.write(`murmur serve: ${notice}\n`);
  if (workers > 1) return runServeWorkers(flags, workers);
  let app: App;
  try {
    app = new App(serveOptions(flags));
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(inFlagTerms(err.message, serveFlags));
    throw err;
  }
  const addr = await app.listen();
  const c = app.config;
  const hostForUrl = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  // Before LISTENING: whoever starts us may signal as soon as it reads the line, and a SIGTERM
  // with no handler yet would end the process without a drain.
  onStopSignals(() => app.shutdown(), () => {});
  installStatsSignal(() => app.realtime.server);
  process.stdout.write(`LISTENING ${addr.port} http://${hostForUrl}:${addr.port}/\n`);
  const cluster = app.cluster;
  if (cluster !== null) {
    process.stdout.write(`CLUSTER ${cluster.id} ${cluster.node.address}\n`);
    cluster.on('joined', (n: number) => process.stderr.write(`murmur serve: joined the cluster through ${n} seed(s)\n`));
    cluster.on('join-failed', (err: Error) => process.stderr.write(`murmur serve: ${err.message}; retrying\n`));
    cluster.on('log', (line: string) => process.stderr.write(`${line}\n`));
    cluster.on('conflict', (err: Error) => {
      process.stderr.write(`murmur serve: ${err.message}\n`);
      process.exit(EXIT_NODE_ID_CONFLICT); // nothing to drain: the node has only just started
    });
  }
  const notes = [
    `history on ${c.historyTopics.join(',') || '(none)'} (${c.historyMaxMessages} messages / ${c.historyMaxBytes} bytes / ${c.historyMaxAgeMs} ms per topic)`,
    c.requireToken ? 'tokens required' : c.secret !== undefined ? 'tokens optional' : 'anonymous only (no --secret)',
    c.apiKey !== undefined ? 'HTTP API on' : 'HTTP API off (no --api-key)',
  ];
  if (addr.address === '127.0.0.1' || addr.address === '::1') notes.push('loopback only: --host 0.0.0.0 to accept other machines');
  notes.push(cluster === null ? 'single node (no --cluster-key)' : `cluster node ${cluster.id}, gossip on ${cluster.node.address}`);
  process.stderr.write(`murmur serve: ${notes.join('; ')}\n`);
}

/**
 * SIGTERM and SIGINT drain: prints DRAINING, runs `shutdown`, prints STOPPED and exits 0.
 * A second Ctrl-C exits at once (after `hardStop`). Returns whether a stop has begun.
 */
function onStopSignals(shutdown: () => Promise<void>, hardStop: () => void): () => boolean {
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) {
      if (signal === 'SIGINT') {
        hardStop(); // a second Ctrl-C: do not wait for the drain
        process.exit(1);
      }
      return;
    }
    stopping = true;
    process.stdout.write(`DRAINING ${signal}\n`);
    shutdown().then(
      () => {
        process.stdout.write('STOPPED\n');
        process.exit(0);
      },
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return () => stopping;
}

/** --workers as a count: 0 means one per core. @throws UsageError */
export function serveWorkers(f: FlagValues): number {
  const w = f.workers;
  if (typeof w !== 'number' || !Number.isInteger(w) || w < 0 || w > MAX_WORKERS) throw new UsageError(`--workers must be a whole number from 0 (one per core) to ${MAX_WORKERS}, got ${String(w)}`);
  return w === 0 ? availableParallelism() : w;
}

/** The supervising process of `murmur serve --workers N`. */
async function runServeWorkers(flags: FlagValues, workers: number): Promise<void> {
  const options = serveOptions(flags);
  let group: AppWorkers;
  try {
    group = new AppWorkers({ ...options, workers, peerPort: num(flags['peer-port']), log: (line) => process.stderr.write(`murmur serve: ${line.replace(/^\[murmur\] /, '')}\n`) });
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(inFlagTerms(err.message, serveFlags));
    throw err;
  }
  // Before the workers start: a SIGTERM while they start stops them too.
  const stopping = onStopSignals(
    () => group.shutdown(),
    () => {
      for (const w of group.list()) {
        try {
          process.kill(w.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    },
  );
  process.on('SIGUSR2', () => group.signal('SIGUSR2'));
  try {
    await group.start();
  } catch (err) {
    if (stopping()) return; // the stop exits when the workers are gone
    if (err instanceof WorkerStartError) {
      process.stderr.write(`murmur: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  if (stopping()) return;
  const hostForUrl = group.family === 'IPv6' ? `[${group.address}]` : group.address;
  process.stdout.write(`LISTENING ${group.port} http://${hostForUrl}:${group.port}/\n`);
  const list = group.list();
  if (!group.privateCluster) for (const w of list) process.stdout.write(`CLUSTER ${w.node} ${w.gossip}\n`);
  const c = options;
  const notes = [
    `${workers} workers (pids ${list.map((w) => w.pid).join(', ')}), each a node of ${group.privateCluster ? 'a private cluster on 127.0.0.1' : 'the cluster'}; peer ports ${list.map((w) => w.peer.replace(/^.*:/, '')).join(', ')}`,
    c.apiKey !== undefined && c.apiKey !== '' ? 'HTTP API on' : 'HTTP API off (no --api-key)',
    'history stays per worker',
  ];
  if (group.address === '127.0.0.1' || group.address === '::1') notes.push('loopback only: --host 0.0.0.0 to accept other machines');
  process.stderr.write(`murmur serve: ${notes.join('; ')}\n`);
  group.on('worker', (w: WorkerInfo) => process.stderr.write(`murmur serve: worker ${w.index} up again (pid ${w.pid})\n`));
}
