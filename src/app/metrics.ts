/**
 * GET /metrics: the Prometheus text exposition format (version 0.0.4). Everything is read
 * from counters that already exist (server.stats, pubsub, the app's counters) at scrape
 * time; gauges that need a walk (subscriptions, history size) walk the topic map once.
 */
import type { Realtime } from './realtime.js';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

type Labels = Record<string, string>;

class Exposition {
  private out = '';

  metric(name: string, type: 'counter' | 'gauge', help: string, samples: Array<[Labels, number]> | number): void {
    this.out += `# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}\n# TYPE ${name} ${type}\n`;
    if (typeof samples === 'number') {
      this.out += `${name} ${fmt(samples)}\n`;
      return;
    }
    for (const [labels, v] of samples) this.out += `${name}${labelText(labels)} ${fmt(v)}\n`;
  }

  toString(): string {
    return this.out;
  }
}

function fmt(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

function byLabel(label: string, rec: Record<string, number>): Array<[Labels, number]> {
  return Object.entries(rec).map(([k, v]) => [{ [label]: k }, v]);
}

export interface HttpCounters {
  /** "route status" -> count */
  requests: Record<string, number>;
}

/** Renders every metric of a running app. */
export function renderMetrics(rt: Realtime, http: HttpCounters, startedAt: number): string {
  const e = new Exposition();
  const server = rt.server;
  const st = server.stats;
  const c = rt.counters;
  let subscriptions = 0;
  let topics = 0;
  let historyTopics = 0;
  let historyMessages = 0;
  let historyBytes = 0;
  for (const t of server.pubsub.topics.values()) {
    if (!t.name.startsWith('$')) topics++;
    subscriptions += t.subscribers.size;
    if (t.history !== null) {
      historyTopics++;
      historyMessages += t.history.size;
      historyBytes += t.history.byteSize;
    }
  }
  const rejected: Record<string, number> = { ...st.rejected };
  for (const [k, v] of Object.entries(c.upgradeRejected)) rejected[k] = (rejected[k] ?? 0) + v;
  const presence = rt.presence.stats();
  const mem = process.memoryUsage();

  e.metric('murmur_up', 'gauge', 'Always 1 while the process answers.', 1);
  e.metric('murmur_draining', 'gauge', '1 while the server drains (readyz answers 503).', rt.draining ? 1 : 0);
  e.metric('murmur_uptime_seconds', 'gauge', 'Seconds since the server started.', Math.round((Date.now() - startedAt) / 1000));
  e.metric('murmur_connections', 'gauge', 'Open WebSocket connections.', server.openCount);
  // Upgrades handed over by node:http always use the socket transport.
  e.metric('murmur_transport_info', 'gauge', 'The transport carrying connections (lean: TCP handles driven directly; socket: net.Socket).', [[{ transport: server.transportKind }, 1]]);
  e.metric('murmur_sockets', 'gauge', 'Sockets held by the WebSocket server, handshaking and closing ones included.', server.socketCount);
  e.metric('murmur_upgrades_accepted_total', 'counter', 'Upgrades completed (101 sent).', st.upgrades);
  e.metric('murmur_upgrades_rejected_total', 'counter', 'Upgrades refused, by reason (HTTP rejections and token failures).', byLabel('reason', rejected));
  e.metric('murmur_connections_refused_total', 'counter', 'Connections closed at open with 1013 (full or draining).', byLabel('reason', c.refused));
  e.metric('murmur_handshake_timeouts_total', 'counter', 'Upgrade requests that did not complete in time.', st.handshakeTimeouts);
  e.metric('murmur_idle_timeouts_total', 'counter', 'Connections closed for silence.', st.idleTimeouts);
  e.metric('murmur_protocol_errors_total', 'counter', 'Connections failed for RFC 6455 violations.', st.protocolErrors);
  e.metric('murmur_messages_received_total', 'counter', 'WebSocket messages received.', st.messagesIn);
  e.metric('murmur_bytes_received_total', 'counter', 'Payload bytes of WebSocket messages received.', st.bytesIn);
  e.metric('murmur_messages_sent_total', 'counter', 'Messages handed to connections (replies, events, deliveries of published messages, replays).', c.messagesOut);
  e.metric('murmur_bytes_sent_total', 'counter', 'Bytes of the messages counted in murmur_messages_sent_total (frame headers of fan-out included).', c.bytesOut);
  e.metric('murmur_published_total', 'counter', 'Messages published (by clients and POST /api/publish).', c.published);
  e.metric('murmur_deliveries_total', 'counter', 'Published messages written to subscribers (one per subscriber).', server.pubsub.deliveries);
  e.metric('murmur_dropped_messages_total', 'counter', 'Messages dropped by backpressure (a connection over its byte budget).', st.droppedMessages);
  e.metric('murmur_slow_consumer_closes_total', 'counter', 'Connections closed as slow consumers.', st.slowConsumerCloses);
  e.metric('murmur_command_errors_total', 'counter', 'Error replies sent, by code.', byLabel('code', c.errors));
  e.metric('murmur_abuse_closes_total', 'counter', 'Connections closed with 1008 for abuse, by reason.', byLabel('reason', c.abuseCloses));
  e.metric('murmur_token_expired_closes_total', 'counter', 'Connections closed with 4001 when their token expired.', c.tokenExpiredCloses);
  e.metric('murmur_topics', 'gauge', 'Topics that exist (subscribed or holding history).', topics);
  e.metric('murmur_subscriptions', 'gauge', 'Subscriptions, presence watches included.', subscriptions);
  e.metric('murmur_history_topics', 'gauge', 'Topics keeping a history.', historyTopics);
  e.metric('murmur_history_messages', 'gauge', 'Messages held in topic histories.', historyMessages);
  e.metric('murmur_history_bytes', 'gauge', 'Bytes held in topic histories.', historyBytes);
  e.metric('murmur_presence_entries', 'gauge', 'Presence entries (one per connection per topic).', presence.entries);
  e.metric('murmur_presence_topics', 'gauge', 'Topics with at least one presence entry.', presence.topics);
  e.metric('murmur_online_users', 'gauge', 'Distinct users with at least one connection.', presence.users);
  e.metric(
    'murmur_http_requests_total',
    'counter',
    'HTTP requests answered, by route and status.',
    Object.entries(http.requests).map(([k, v]) => {
      const [route = '', code = ''] = k.split(' ');
      return [{ route, code }, v];
    }),
  );
  e.metric('process_resident_memory_bytes', 'gauge', 'Resident set size.', mem.rss);
  e.metric('nodejs_heap_used_bytes', 'gauge', 'V8 heap in use.', mem.heapUsed);
  return e.toString();
}
