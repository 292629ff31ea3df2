/**
 * `murmur serve`: the ready real-time server (pub/sub, presence, history, HTTP API, metrics,
 * demo page) on one port. Settings come from flags, MURMUR_* variables and an optional JSON
 * config file (keys are the flag names); every one has a default, so `murmur serve` alone runs.
 *
 * Prints `LISTENING <port> <url>` when ready. SIGTERM (and SIGINT) drain gracefully: readyz
 * answers 503, clients get 1012 with a retry-after hint, close handshakes get up to
 * --shutdown-timeout-ms, then the process prints STOPPED and exits 0.
 */
import { App } from '../app/app.js';
import { DEFAULT_APP_CONFIG, ConfigError } from '../app/config.js';
import type { AppConfig } from '../app/config.js';
import { UsageError } from './args.js';
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
  'history-max-topics': { type: 'number', describe: 'topics with history at once', default: D.historyMaxTopics },
  'max-message-bytes': { type: 'number', describe: 'largest command or message; larger gets TOO_LARGE', default: D.maxMessageBytes },
  'rate-limit': { type: 'number', describe: 'commands per second per connection', default: D.rateLimit },
  'rate-burst': { type: 'number', describe: 'burst of commands allowed above the rate', default: D.rateBurst },
  'abuse-max-errors': { type: 'number', describe: 'errors within the abuse window that close a connection (1008)', default: D.abuseMaxErrors },
  'abuse-window-ms': { type: 'number', describe: 'the abuse window', default: D.abuseWindowMs },
  'presence-max-members': { type: 'number', describe: 'presence entries per topic', default: D.presenceMaxMembers },
  'presence-max-meta-bytes': { type: 'number', describe: 'bytes of presence meta (JSON)', default: D.presenceMaxMetaBytes },
  'presence-max-topics': { type: 'number', describe: 'topics one connection may be present in', default: D.presenceMaxTopics },
  'max-connections': { type: 'number', describe: 'open connections; beyond it 1013 (0 = unlimited)', default: D.maxConnections },
  'max-subscriptions': { type: 'number', describe: 'subscriptions per connection (presence watches count)', default: D.maxSubscriptions },
  'max-topic-bytes': { type: 'number', describe: 'bytes of a topic name', default: D.maxTopicBytes },
  'max-body-bytes': { type: 'number', describe: 'HTTP request body limit (413 above)', default: D.maxBodyBytes },
  'max-backpressure': { type: 'number', describe: 'bytes queued per connection before the slow-consumer policy', default: D.maxBackpressure },
  'slow-consumer': { type: 'string', describe: 'close (reconnect and recover) or drop', default: D.slowConsumer },
  'drain-delay-ms': { type: 'number', describe: 'on SIGTERM, readyz is 503 this long before clients are told to go', default: D.drainDelayMs },
  'shutdown-timeout-ms': { type: 'number', describe: 'on SIGTERM, time for close handshakes before sockets are destroyed', default: D.shutdownTimeoutMs },
  'retry-after': { type: 'number', describe: 'seconds hinted to clients with 1012 (restart) and 1013 (full, draining)', default: D.retryAfterSeconds },
  help: { type: 'boolean', describe: 'show this help', cliOnly: true },
};

export const serveHelp = `Runs the real-time server: WebSocket pub/sub with history and presence on /ws, the
HTTP API, /healthz, /readyz, /metrics, and a demo chat at / (open it in two tabs).
Every flag also reads MURMUR_<FLAG> (e.g. MURMUR_PORT=9000) and the key "<flag>" of a JSON
config file (--config path); flags win over variables, variables over the file.
Example: murmur serve --host 0.0.0.0 --port 8080 --history-max-messages 500`;

const str = (v: FlagValues[string]): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: FlagValues[string]): number => v as number;
const list = (v: FlagValues[string]): string[] => (Array.isArray(v) ? v : []);

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
    maxMessageBytes: num(f['max-message-bytes']),
    rateLimit: num(f['rate-limit']),
    rateBurst: num(f['rate-burst']),
    abuseMaxErrors: num(f['abuse-max-errors']),
    abuseWindowMs: num(f['abuse-window-ms']),
    presenceMaxMembers: num(f['presence-max-members']),
    presenceMaxMetaBytes: num(f['presence-max-meta-bytes']),
    presenceMaxTopics: num(f['presence-max-topics']),
    maxConnections: num(f['max-connections']),
    maxSubscriptions: num(f['max-subscriptions']),
    maxTopicBytes: num(f['max-topic-bytes']),
    maxBodyBytes: num(f['max-body-bytes']),
    maxBackpressure: num(f['max-backpressure']),
    slowConsumer: slow,
    drainDelayMs: num(f['drain-delay-ms']),
    shutdownTimeoutMs: num(f['shutdown-timeout-ms']),
    retryAfterSeconds: num(f['retry-after']),
  };
}

export async function runServe(flags: FlagValues): Promise<void> {
  let app: App;
  try {
    app = new App(serveConfig(flags));
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(`murmur serve: ${err.message}`);
    throw err;
  }
  const addr = await app.listen();
  const c = app.config;
  const hostForUrl = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  process.stdout.write(`LISTENING ${addr.port} http://${hostForUrl}:${addr.port}/\n`);
  const notes = [
    `history on ${c.historyTopics.join(',') || '(none)'} (${c.historyMaxMessages} messages / ${c.historyMaxBytes} bytes / ${c.historyMaxAgeMs} ms per topic)`,
    c.requireToken ? 'tokens required' : c.secret !== undefined ? 'tokens optional' : 'anonymous only (no --secret)',
    c.apiKey !== undefined ? 'HTTP API on' : 'HTTP API off (no --api-key)',
  ];
  if (addr.address === '127.0.0.1' || addr.address === '::1') notes.push('loopback only: --host 0.0.0.0 to accept other machines');
  process.stderr.write(`murmur serve: ${notes.join('; ')}\n`);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) {
      if (signal === 'SIGINT') process.exit(1); // a second Ctrl-C: do not wait
      return;
    }
    stopping = true;
    process.stdout.write(`DRAINING ${signal}\n`);
    app.shutdown().then(
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
}
