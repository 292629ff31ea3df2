/**
 * GET /metrics: the Prometheus text exposition format (version 0.0.4). Everything is read
 * from counters that already exist (server.stats, pubsub, the app's counters) at scrape
 * time; gauges that need a walk (subscriptions, history size) walk the topic map once.
 */
import { deflateCounters, liveZlibContexts, inflateJobs } from '../server/deflate.js';
import { heapSizes, idleGcStats } from '../server/idle-gc.js';
import type { Realtime } from './realtime.js';
import type { AppCluster } from './cluster.js';
import type { MeshStats } from '../cluster/bus/mesh.js';
import type { RedisStats } from '../cluster/bus/redis.js';
import type { AppBus } from './realtime.js';
import type { BusCounters } from '../pubsub/topics.js';
import type { Shedder } from './shed.js';

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

/** Renders every metric of a running app (the cluster's too, when it runs in one). */
export function renderMetrics(rt: Realtime, http: HttpCounters, startedAt: number, cluster: AppCluster | null = null, shedder: Shedder | null = null): string {
  const e = new Exposition();
  const server = rt.server;
  const st = server.stats;
  const c = rt.counters;
  // Counts pub/sub keeps as they change: a scrape costs nothing per topic.
  const pubsub = server.pubsub;
  const subscriptions = pubsub.subscriptionCount;
  const topics = pubsub.publicTopicCount;
  const historyTopics = pubsub.historyTopicCount;
  const historyMessages = pubsub.historyLedger.messages;
  const rejected: Record<string, number> = { ...st.rejected };
  for (const [k, v] of Object.entries(c.upgradeRejected)) rejected[k] = (rejected[k] ?? 0) + v;
  const presence = rt.presence.stats();
  const mem = process.memoryUsage();

  e.metric('murmur_up', 'gauge', 'Always 1 while the process answers.', 1);
  e.metric('murmur_draining', 'gauge', '1 while the server drains (readyz answers 503).', rt.draining ? 1 : 0);
  e.metric('murmur_uptime_seconds', 'gauge', 'Seconds since the server started.', Math.round((Date.now() - startedAt) / 1000));
  e.metric('murmur_connections', 'gauge', 'Open WebSocket connections.', server.openCount);
  // The port's transport; the rare upgrade that arrives on a kept-alive HTTP connection rides on node:http's socket.
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
  e.metric('murmur_messages_sent_total', 'counter', 'Messages handed to connections (replies, events, deliveries of published messages, replays).', c.messagesOut + server.pubsub.busCounters.deliveries);
  e.metric('murmur_bytes_sent_total', 'counter', 'Bytes of the messages counted in murmur_messages_sent_total (frame headers of fan-out included).', c.bytesOut + server.pubsub.busCounters.deliveredBytes);
  e.metric('murmur_published_total', 'counter', 'Messages published (by clients and POST /api/publish).', c.published);
  e.metric('murmur_deliveries_total', 'counter', 'Published messages written to subscribers (one per subscriber).', server.pubsub.deliveries);
  e.metric('murmur_dropped_messages_total', 'counter', 'Messages dropped by backpressure (a connection over its byte budget).', st.droppedMessages);
  e.metric('murmur_slow_consumer_closes_total', 'counter', 'Connections closed as slow consumers.', st.slowConsumerCloses);
  e.metric('murmur_ping_flood_closes_total', 'counter', 'Connections closed with 1008 for pinging past maxOwedPings while their pongs went unread.', st.pingFloodCloses);
  e.metric('murmur_handshakes_in_flight', 'gauge', 'Sockets accepted whose upgrade is not answered yet.', server.handshakeCount);
  e.metric('murmur_descriptor_exhaustions_total', 'counter', 'Sockets refused 503 because they took a reserved descriptor (the process is nearly out), and accepts that failed with EMFILE.', st.descriptorExhaustions);
  e.metric('murmur_command_errors_total', 'counter', 'Error replies sent, by code.', byLabel('code', c.errors));
  e.metric('murmur_abuse_closes_total', 'counter', 'Connections closed with 1008 for abuse, by reason.', byLabel('reason', c.abuseCloses));
  e.metric('murmur_token_expired_closes_total', 'counter', 'Connections closed with 4001 when their token expired.', c.tokenExpiredCloses);
  e.metric('murmur_topics', 'gauge', 'Topics that exist (subscribed or holding history).', topics);
  e.metric('murmur_subscriptions', 'gauge', 'Subscriptions, presence watches included.', subscriptions);
  e.metric('murmur_history_topics', 'gauge', 'Topics keeping a history.', historyTopics);
  e.metric('murmur_history_messages', 'gauge', 'Messages held in topic histories.', historyMessages);
  e.metric('murmur_history_bytes', 'gauge', 'Memory held by topic histories: kept frames, ring slots (allocated, used or not) and per-topic overhead; an estimate within about 30%.', server.pubsub.historyLedger.held);
  e.metric('murmur_history_evictions_total', 'counter', 'Histories of unsubscribed topics dropped to make room for new ones (beyond --history-max-topics).', server.pubsub.historyEvictions);
  e.metric('murmur_presence_entries', 'gauge', 'Presence entries (one per connection per topic).', presence.entries);
  e.metric('murmur_presence_topics', 'gauge', 'Topics with at least one presence entry.', presence.topics);
  e.metric('murmur_online_users', 'gauge', 'Distinct users online on this node (in a cluster each node counts its own): token users with a connection, anonymous connections present in a topic.', presence.users);
  e.metric(
    'murmur_http_requests_total',
    'counter',
    'HTTP requests answered, by route and status.',
    Object.entries(http.requests).map(([k, v]) => {
      const [route = '', code = ''] = k.split(' ');
      return [{ route, code }, v];
    }),
  );
  if (cluster !== null && cluster.started) renderCluster(e, cluster);
  if (shedder !== null) renderLoad(e, shedder, cluster !== null && cluster.started ? cluster : null);
  if (rt.bus !== null) renderBus(e, rt.bus, server.pubsub.busCounters);
  renderDeflate(e);
  renderIdleGc(e);
  e.metric('process_resident_memory_bytes', 'gauge', 'Resident set size.', mem.rss);
  e.metric('nodejs_heap_used_bytes', 'gauge', 'V8 heap in use.', mem.heapUsed);
  return e.toString();
}

/** permessage-deflate, process-wide: what went compressed and what it saved, what came in compressed, live zlib contexts. */
function renderDeflate(e: Exposition): void {
  const d = deflateCounters;
  const stages = (before: number, after: number): Array<[Labels, number]> => byLabel('stage', { before, after });
  e.metric('murmur_deflate_messages_total', 'counter', 'Messages sent on connections that negotiated permessage-deflate, by outcome (a fan-out compressed once counts once).', byLabel('outcome', { compressed: d.compressedMessages, uncompressed: d.uncompressedMessages }));
  e.metric('murmur_deflate_bytes_total', 'counter', 'Payload bytes of the compressed messages sent, before and after compression.', stages(d.compressedBytesIn, d.compressedBytesOut));
  e.metric('murmur_inflate_messages_total', 'counter', 'Compressed messages received and inflated.', d.inflatedMessages);
  e.metric('murmur_inflate_bytes_total', 'counter', 'Payload bytes of the compressed messages received, before and after inflating.', stages(d.inflatedBytesIn, d.inflatedBytesOut));
  e.metric('murmur_inflate_failures_total', 'counter', 'Compressed messages refused: over the size limit once inflated (1009), not DEFLATE (1007), or the queue of large inflations full (1013).', d.inflateFailures);
  e.metric('murmur_zlib_contexts', 'gauge', 'zlib contexts alive between turns of the event loop: one per large message being inflated in slices (at most the process-wide cap, 2), none otherwise.', liveZlibContexts());
  e.metric('murmur_inflate_queued', 'gauge', 'Large compressed messages waiting for an inflation slot (their connections paused).', inflateJobs.queued);
}

/** The quiet-time GC that gives V8's young generation back (src/server/idle-gc.ts), process-wide. */
function renderIdleGc(e: Exposition): void {
  const g = idleGcStats;
  e.metric('murmur_idle_gc_total', 'counter', "Full GCs run because the process went quiet, by outcome (shrunk: the young generation went back to its floor; declined: V8 still counted recent allocation).", byLabel('outcome', { shrunk: g.reductions - g.declined, declined: g.declined }));
  e.metric('murmur_idle_gc_skipped_total', 'counter', 'Quiet periods with no GC because the heap was over its bound (the pause grows with the live heap).', g.skippedLargeHeap);
  e.metric('murmur_idle_gc_freed_bytes_total', 'counter', "Committed bytes of V8's young generation given back by those GCs.", g.youngBytesFreed);
  e.metric('murmur_idle_gc_pause_seconds', 'gauge', 'Pause of the last such GC and of the longest.', byLabel('which', { last: g.lastPauseMs / 1000, max: g.maxPauseMs / 1000 }));
  e.metric('nodejs_young_generation_bytes', 'gauge', "Committed bytes of V8's young generation (new space): grows under load up to 32 MiB, given back when quiet.", heapSizes().young);
}

/** The cluster bus: what crossed it, what it dropped, its links. */
function renderBus(e: Exposition, bus: AppBus, records: BusCounters): void {
  const b = bus.transport.stats;
  const t = { transport: bus.kind };
  e.metric('murmur_bus_messages_total', 'counter', 'Messages over the cluster bus, by direction (out: copies handed to peer links or Redis).', [
    [{ ...t, direction: 'out' }, b.messagesSent],
    [{ ...t, direction: 'in' }, b.messagesReceived],
  ]);
  e.metric('murmur_bus_bytes_total', 'counter', 'Bytes over the cluster bus, by direction.', [
    [{ ...t, direction: 'out' }, b.bytesSent],
    [{ ...t, direction: 'in' }, b.bytesReceived],
  ]);
  e.metric('murmur_bus_dropped_total', 'counter', 'Messages the bus could not carry (a peer link over its budget, Redis away).', [[t, b.dropped]]);
  e.metric('murmur_bus_links_up', 'gauge', 'Mesh: outbound links open and synced; redis: connections ready.', [[t, b.linksUp]]);
  e.metric('murmur_bus_reconnects_total', 'counter', 'Links or Redis connections re-established after a drop.', [[t, b.reconnects]]);
  e.metric('murmur_bus_auth_failures_total', 'counter', 'Link requests refused for their credentials (mesh), Redis authentication errors.', [[t, b.authFailures]]);
  e.metric('murmur_bus_protocol_errors_total', 'counter', 'Links closed or messages ignored for malformed input.', [[t, b.protocolErrors]]);
  e.metric('murmur_bus_records_rejected_total', 'counter', 'Messages from the bus that did not decode as records of this version.', [[t, records.rejected]]);
  e.metric('murmur_remote_published_total', 'counter', 'Messages published on other nodes and fanned out here.', records.received);
  if ('ordered' in b) renderOrdering(e, b as Partial<MeshStats & RedisStats>);
}

/** The ordering of history topics (docs/cluster.md, "Cluster-wide positions"): each bus's own counters. */
function renderOrdering(e: Exposition, m: Partial<MeshStats & RedisStats>): void {
  const rows: Array<[string, 'counter' | 'gauge', string, number | undefined]> = [
    ['ordered_total', 'counter', 'History-topic messages this node ordered (mesh: as their owner; redis: through the ordering script).', m.ordered],
    ['unreplicated_total', 'counter', 'Of those, delivered before a replica held them (no replica, its link down or its ack late).', m.unreplicated],
    ['misrouted_total', 'counter', 'Forwards for a topic this node does not own (yet): resent by their origin.', m.misrouted],
    ['forward_retries_total', 'counter', 'Forwarded publishes resent to the owner of the moment.', m.forwardRetries],
    ['forwards_lost_total', 'counter', 'Publishes to history topics dropped: never ordered in time, or over the pending budget.', m.forwardsLost],
    ['order_gaps_total', 'counter', 'Ordered messages that skipped offsets here (the local history restarted).', m.orderGaps],
    ['epoch_changes_total', 'counter', 'Ordered messages in another epoch than the local history (it restarted in theirs).', m.epochChanges],
    ['pending_forward_bytes', 'gauge', 'Bytes of publishes waiting to come back ordered.', m.pendingForwardBytes],
    ['fills_total', 'counter', 'Gaps in ordered messages this node asked the owner or the replica to fill.', m.fills],
    ['fills_failed_total', 'counter', 'Of those, gaps that could not be filled: applied with the skip, subscribers told to resync.', m.fillsFailed],
    ['fills_served_total', 'counter', 'Fill and tail requests this node answered for its peers.', m.fillsServed],
    ['reorder_bytes', 'gauge', 'Bytes of ordered messages held past gaps, waiting for the missing offsets.', m.reorderBytes],
    ['catch_ups_total', 'counter', 'Redis: recoveries that read the missed messages from Redis first.', m.catchUps],
    ['tails_total', 'counter', 'Topics this node came to own without their line: it asked its peers for their tail before ordering.', m.tails],
    ['tails_failed_total', 'counter', 'Of those, tails no peer answered in time: the node ordered from its own history.', m.tailsFailed],
    ['tail_claims_total', 'counter', 'Tail requests for a topic this node owned in its view: it stopped ordering it until its view agreed.', m.ceded],
    ['tail_claims_expired_total', 'counter', 'Of those, claims this node stopped honouring after maxCedeMs without its view agreeing: it ordered the topic again.', m.claimsExpired],
    ['line_conflicts_total', 'counter', 'Ordered messages from another line of the same epoch (a healed partition, two owners at once): subscribers told to resync.', m.lineConflicts],
    ['epoch_forks_total', 'counter', 'Topics this node, their owner, moved to a new epoch after another line of theirs met its own.', m.epochForks],
  ];
  for (const [name, type, help, value] of rows) if (value !== undefined) e.metric(`murmur_bus_${name}`, type, help, value);
}

/** This node's load, its shedding decisions, and every member's gossiped load summary. */
function renderLoad(e: Exposition, sh: Shedder, cluster: AppCluster | null): void {
  const l = sh.last;
  e.metric('murmur_overloaded', 'gauge', '1 while the node is overloaded: upgrades get 503 OVERLOADED, readyz 503, connections shed with 1013.', sh.overload.overloaded ? 1 : 0);
  e.metric('murmur_overloads_total', 'counter', 'Times the node became overloaded.', sh.counters.overloads);
  e.metric('murmur_event_loop_lag_p99_seconds', 'gauge', 'Event-loop delay, p99 of the last one-second window.', l.lagMs / 1000);
  e.metric('murmur_process_cpu_percent', 'gauge', 'CPU used by the process over the last window, percent of one core.', l.cpuPercent);
  e.metric('murmur_memory_limit_bytes', 'gauge', 'The memory limit the overload threshold applies to (cgroup limit or machine memory).', sh.memoryLimit);
  e.metric('murmur_shedding', 'gauge', 'The shedding episode in progress, by reason (1 while it lasts).', [
    [{ reason: 'rebalance' }, sh.shedding === 'rebalance' ? 1 : 0],
    [{ reason: 'overload' }, sh.shedding === 'overload' ? 1 : 0],
  ]);
  e.metric('murmur_shed_connections_total', 'counter', 'Connections closed by shedding: rebalance (1012, above the cluster mean) or overload (1013).', byLabel('reason', sh.counters.shed));
  e.metric('murmur_shed_episodes_total', 'counter', 'Shedding episodes started, by reason.', byLabel('reason', sh.counters.episodes));
  if (cluster === null) return;
  const v = sh.view;
  e.metric('murmur_rebalance_mean_connections', 'gauge', 'Mean connections of the nodes taking traffic, as this node computes it (NaN when it cannot).', v.mean);
  e.metric('murmur_rebalance_excess_connections', 'gauge', 'Connections above the mean this node sheds (0 within the margin).', v.excess);
  const members = cluster.members().filter((m) => m.load !== null && (m.state === 'alive' || m.state === 'suspect'));
  const per = (f: (l: NonNullable<(typeof members)[number]['load']>) => number): Array<[Record<string, string>, number]> => members.map((m) => [{ member: m.id }, f(m.load!)]);
  e.metric('murmur_cluster_member_connections', 'gauge', 'Open connections of each live member, from its gossiped load summary.', per((x) => x.connections));
  e.metric('murmur_cluster_member_lag_p99_seconds', 'gauge', 'Event-loop delay p99 of each live member, from its load summary.', per((x) => x.lagMs / 1000));
  e.metric('murmur_cluster_member_cpu_percent', 'gauge', 'CPU of each live member (percent of one core), from its load summary.', per((x) => x.cpuPercent));
  e.metric('murmur_cluster_member_rss_bytes', 'gauge', 'Resident memory of each live member, from its load summary.', per((x) => x.rssMiB * 1048576));
  e.metric('murmur_cluster_member_overloaded', 'gauge', '1 for a live member that says it is overloaded.', per((x) => (x.overloaded ? 1 : 0)));
  e.metric('murmur_cluster_member_draining', 'gauge', '1 for a live member that says it is draining.', per((x) => (x.draining ? 1 : 0)));
}

/** Gossip and presence replication figures of a node in a cluster. */
function renderCluster(e: Exposition, cluster: AppCluster): void {
  const g = cluster.node.counters;
  const p = cluster.presence.counters;
  const r = cluster.presence.replicationStats();
  const states: Record<string, number> = { alive: 0, suspect: 0, dead: 0, left: 0 };
  for (const m of cluster.members()) states[m.state] = (states[m.state] ?? 0) + 1;
  e.metric('murmur_cluster_members', 'gauge', 'Members this node knows, itself included, by state (dead and left are tombstones).', byLabel('state', states));
  e.metric('murmur_gossip_packets_total', 'counter', 'Gossip datagrams, by direction.', [
    [{ direction: 'sent' }, g.packetsSent],
    [{ direction: 'received' }, g.packetsReceived],
  ]);
  e.metric('murmur_gossip_bytes_total', 'counter', 'Gossip datagram bytes (sealed), by direction.', [
    [{ direction: 'sent' }, g.bytesSent],
    [{ direction: 'received' }, g.bytesReceived],
  ]);
  e.metric('murmur_gossip_rejected_total', 'counter', 'Gossip datagrams and streams refused, by reason (auth: another key or tampered; label: another cluster; version: another wire version; malformed).', [
    [{ reason: 'auth' }, g.rejectedAuth],
    [{ reason: 'label' }, g.rejectedLabel],
    [{ reason: 'version' }, g.rejectedVersion],
    [{ reason: 'malformed' }, g.rejectedMalformed],
  ]);
  e.metric('murmur_gossip_streams_total', 'counter', 'Push-pull exchanges (full state over TCP), by direction.', [
    [{ direction: 'sent' }, g.streamsSent],
    [{ direction: 'received' }, g.streamsReceived],
  ]);
  e.metric('murmur_gossip_stream_errors_total', 'counter', 'Push-pull exchanges that failed (refused, timed out, too large).', g.streamErrors);
  e.metric('murmur_gossip_streams_refused_total', 'counter', 'Inbound push-pull streams refused before their frame was read (head of another key, label or version; no slot; busy; late).', g.streamsRefused);
  e.metric('murmur_gossip_probes_total', 'counter', 'Failure-detection probes sent (direct pings).', g.probes);
  e.metric('murmur_gossip_indirect_probes_total', 'counter', 'Indirect probes requested (ping-req).', g.indirectProbes);
  e.metric('murmur_gossip_suspicions_total', 'counter', 'Members this node started suspecting.', g.suspicions);
  e.metric('murmur_gossip_link_suspicions_total', 'counter', 'Suspicions started or shortened on evidence of a crash: a bus link to the member closed without a goodbye, or its gossip port was refused.', g.linkSuspicions);
  e.metric('murmur_gossip_refutations_total', 'counter', 'Suspicions of this node it refuted.', g.refutations);
  e.metric('murmur_gossip_deaths_total', 'counter', 'Members this node declared dead.', g.deaths);
  e.metric('murmur_gossip_liveness_links', 'gauge', 'Liveness links held (TCP on the gossip port; one closed without a goodbye is evidence of a crash), by direction.', [
    [{ direction: 'out' }, g.watchLinksOut],
    [{ direction: 'in' }, g.watchLinksIn],
  ]);
  e.metric('murmur_gossip_liveness_links_lost_total', 'counter', 'Liveness links to watched members that closed without a goodbye (handed to the failure detector).', g.watchLinksLost);
  e.metric('murmur_gossip_liveness_links_refused_total', 'counter', 'Inbound liveness links refused (over the caps, or meant for another member).', g.watchLinksRefused);
  e.metric('murmur_gossip_broadcasts_dropped_total', 'counter', 'Application broadcasts (presence deltas) dropped from a full gossip queue.', g.broadcastsDropped);
  e.metric('murmur_gossip_health_score', 'gauge', 'Local health (Lifeguard awareness): 0 is healthy; higher stretches the probe period.', g.awareness);
  e.metric('murmur_cluster_presence_entries', 'gauge', 'Presence entries by origin: local (this node\'s connections) or remote (replicated from other nodes).', [
    [{ origin: 'local' }, r.localEntries],
    [{ origin: 'remote' }, r.remoteEntries],
  ]);
  e.metric('murmur_cluster_presence_nodes', 'gauge', 'Other nodes whose presence is held here, and those whose copy is behind (a repair is pending).', [
    [{ state: 'held' }, r.owners],
    [{ state: 'behind' }, r.behind],
  ]);
  e.metric('murmur_cluster_presence_state_bytes', 'gauge', 'Encoded size of this node\'s presence state (what a pull transfers).', r.stateBytes);
  e.metric('murmur_presence_deltas_total', 'counter', 'Presence deltas: sent (this node\'s changes), received, applied, duplicate, stale (old epoch, dead node), dropped (malformed, over a limit, buffer full), rebroadcast.', [
    [{ event: 'sent' }, p.deltasSent],
    [{ event: 'received' }, p.deltasReceived],
    [{ event: 'applied' }, p.deltasApplied],
    [{ event: 'duplicate' }, p.deltasDuplicate],
    [{ event: 'stale' }, p.deltasStale],
    [{ event: 'dropped' }, p.deltasDropped],
    [{ event: 'rebroadcast' }, p.rebroadcasts],
  ]);
  e.metric('murmur_presence_notices_sent_total', 'counter', 'Version notices sent (startup, bursts, changes too large for a datagram).', p.noticesSent);
  e.metric('murmur_presence_states_total', 'counter', 'Full presence states from push-pull: merged, or dropped (malformed, over a limit).', [
    [{ event: 'merged' }, p.statesMerged],
    [{ event: 'dropped' }, p.statesDropped],
  ]);
  e.metric('murmur_presence_pulls_total', 'counter', 'Repair pulls (push-pull with the node that owns the state).', p.pulls);
  e.metric('murmur_presence_limit_drops_total', 'counter', 'Remote entries, users or nodes refused by a per-node bound.', p.limitDrops);
  e.metric('murmur_presence_nodes_dropped_total', 'counter', 'Nodes whose presence was dropped: dead, left, or restarted with a new epoch.', p.ownersDropped);
  e.metric('murmur_presence_online_asks_total', 'counter', '`online` asks between nodes (users are held only where they connect): rounds this node started, nodes that did not answer one in time, asks refused busy, asks of other nodes answered here, malformed ones dropped.', [
    [{ event: 'round' }, p.askRounds],
    [{ event: 'timeout' }, p.askTimeouts],
    [{ event: 'refused' }, p.asksRefused],
    [{ event: 'answered' }, p.asksAnswered],
    [{ event: 'dropped' }, p.asksDropped],
  ]);
}

// ---- worker processes -----------------------------------------------------------------------

/** A sample line's name and the rest: `name{labels} value` or `name value`. */
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?[ \t]+(\S.*)$/;

interface Family {
  help: string | null;
  type: string | null;
  samples: string[];
}

/**
 * Merges the expositions of several processes (`murmur serve --workers`) into one valid
 * exposition: every sample gets the label `worker="<name>"` (first), and each family keeps a
 * single HELP and TYPE, its samples from every process together, in the order families first
 * appear. Lines that are not a sample, a HELP or a TYPE are dropped; a sample belongs to the
 * family whose HELP/TYPE came last (the format keeps a family's lines together).
 */
export function mergeExpositions(parts: ReadonlyArray<{ worker: string; text: string }>): string {
  const families = new Map<string, Family>();
  const family = (name: string): Family => {
    let f = families.get(name);
    if (f === undefined) {
      f = { help: null, type: null, samples: [] };
      families.set(name, f);
    }
    return f;
  };
  for (const { worker, text } of parts) {
    const label = `worker="${escapeLabel(worker)}"`;
    let current: string | null = null;
    for (const line of text.split('\n')) {
      if (line.startsWith('#')) {
        const m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
        if (m === null) continue;
        const f = family(m[2]!);
        if (m[1] === 'HELP') f.help ??= m[3]!;
        else f.type ??= m[3]!;
        current = m[2]!;
        continue;
      }
      const s = SAMPLE.exec(line);
      if (s === null) continue;
      const name = s[1]!;
      const labels = s[2];
      // Histogram and summary samples (name_bucket, name_sum...) belong to the current family.
      const owner = current !== null && name.startsWith(current) ? current : name;
      const withWorker = labels === undefined || labels === '{}' ? `{${label}}` : `{${label},${labels.slice(1)}`;
      family(owner).samples.push(`${name}${withWorker} ${s[3]}`);
    }
  }
  let out = '';
  for (const [name, f] of families) {
    if (f.help !== null) out += `# HELP ${name} ${f.help}\n`;
    if (f.type !== null) out += `# TYPE ${name} ${f.type}\n`;
    for (const s of f.samples) out += `${s}\n`;
  }
  return out;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

/** What the primary of `murmur serve --workers` knows about its workers. */
export interface WorkerGroupFigures {
  /** Workers configured. */
  workers: number;
  /** Workers whose samples are in this scrape. */
  answered: number;
  /** Workers started again after one died. */
  restarts: number;
  /** Each running worker: its index (the `worker` label) and process id. */
  running: ReadonlyArray<{ index: number; pid: number }>;
}

/** The primary's own families, appended to the merged exposition of its workers. */
export function renderWorkerGroup(g: WorkerGroupFigures): string {
  const e = new Exposition();
  e.metric('murmur_workers', 'gauge', 'Worker processes configured (murmur serve --workers).', g.workers);
  e.metric('murmur_workers_scraped', 'gauge', 'Workers whose samples this scrape holds (fewer: a worker is restarting or did not answer in time).', g.answered);
  e.metric('murmur_worker_restarts_total', 'counter', 'Workers started again after one died.', g.restarts);
  e.metric('murmur_worker_info', 'gauge', 'The process id of each running worker.', g.running.map((w) => [{ worker: String(w.index), pid: String(w.pid) }, 1]));
  return e.toString();
}
