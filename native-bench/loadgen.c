/*
 * murmur native load generator: RFC 6455 clients over epoll, no external libraries.
 *
 *   gcc -O2 -o native-bench/build/loadgen native-bench/loadgen.c
 *   loadgen --port P [--host 127.0.0.1] --scenario hold|echo|subscribe|serve -c N [options]
 *
 * The parent process forks one worker per <= 19,000 connections (a process may hold at most
 * 20,000 descriptors here), drives the phases over pipes (go / mark / pub / stop), sums the
 * workers' results and prints one JSON line on stdout. Progress goes to stderr once a second;
 * the line "READY connected=N failed=F" on stderr says every connection is settled (open or
 * failed). See native-bench/README.md for every option and figure.
 *
 * Stepped hold (--stepped, for the million-socket ramp in native-bench/ramp/): nothing opens
 * until "grow N" arrives on stdin; each step ends with one JSON line {"event":"step",...} on
 * stdout. "pub M S", "text T" and "status" work on held connections (see usage()).
 *
 * serve (`murmur serve` users): connection i upgrades on /ws?token=<its own token, minted here
 * with HMAC-SHA256 from MURMUR_SECRET>, waits for the welcome, subscribes to room:<i % rooms>,
 * joins that room's presence when i % 10 == 0 and subscribes to room:big when i < --big-room;
 * it is held once every reply came back ok. Then it counts deliveries: publish-to-delivery
 * latency from a CLOCK_MONOTONIC millisecond stamp "t" in a message's data, and the last
 * delivery of room:big ("mark" and "deliveries" on stdin).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_PER_WORKER 19000L
#define MAX_WORKERS 128
#define HS_CAP 4096          /* handshake response head limit */
#define READ_CAP (64 * 1024) /* one shared read buffer per worker */
#define PAT_SPREAD 251       /* message k uses the pattern from offset k % 251 */
#define NB 3840              /* latency histogram buckets */
#define MSG_CAP 512          /* serve: bytes of a server text message kept when it spans reads (replies and
                                message envelopes are ~100-300 bytes; the rest of a longer one is skipped) */
#define CODE_SLOTS 16        /* serve: distinct error codes counted per process (more go to "other") */
#define TOKEN_TTL_S (7 * 86400) /* serve: a token outlives any run */

/* ------------------------------------------------------------------ configuration */

enum { SC_HOLD, SC_ECHO, SC_SUB, SC_SERVE };
static const char *sc_names[] = {"hold", "echo", "subscribe", "serve"};

static struct {
  const char *host;
  int port;
  const char *path;
  long conns;
  int src_ips;
  int concurrency;
  int scenario;
  double duration, warmup, timeout, ramp_timeout;
  int window;
  long size;
  int text, verify, quiet, workers;
  long messages;
  int eof_stop;
  long topics; /* subscribe: > 0 sends "sub K" (K = connection index % topics) and "pubt M S" */
  int stepped;   /* hold: open nothing until "grow N" on stdin */
  int src_first; /* first source address: 127.0.0.1 + src_first */
  long rooms;    /* serve: connection i subscribes to room:<i % rooms> */
  long big_room; /* serve: connections 0 .. big_room - 1 also subscribe to room:big */
} cfg = {"127.0.0.1", 0, NULL, 1, 0, 500, SC_HOLD, 10, 1, 10, 120, 1, 32, 0, 0, 0, 0, 100, 0, 0, 0, 0, 10000, 10000};

static struct in_addr dst_addr;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "loadgen: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(2);
}

/* ------------------------------------------------------------------ SHA-1 + base64 */

typedef struct {
  uint32_t h[5];
  uint64_t len;
  uint8_t buf[64];
  size_t n;
} sha1_ctx;

#define ROL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

static void sha1_block(sha1_ctx *c, const uint8_t *p) {
  uint32_t w[80], a, b, d, e, f, k, t, cc;
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 80; i++) w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4];
  for (int i = 0; i < 80; i++) {
    if (i < 20) f = (b & cc) | (~b & d), k = 0x5A827999;
    else if (i < 40) f = b ^ cc ^ d, k = 0x6ED9EBA1;
    else if (i < 60) f = (b & cc) | (b & d) | (cc & d), k = 0x8F1BBCDC;
    else f = b ^ cc ^ d, k = 0xCA62C1D6;
    t = ROL(a, 5) + f + e + k + w[i];
    e = d, d = cc, cc = ROL(b, 30), b = a, a = t;
  }
  c->h[0] += a, c->h[1] += b, c->h[2] += cc, c->h[3] += d, c->h[4] += e;
}

static void sha1(const uint8_t *data, size_t len, uint8_t out[20]) {
  sha1_ctx c = {{0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0}, 0, {0}, 0};
  c.len = len;
  while (len >= 64) sha1_block(&c, data), data += 64, len -= 64;
  memcpy(c.buf, data, len);
  c.n = len;
  c.buf[c.n++] = 0x80;
  if (c.n > 56) {
    memset(c.buf + c.n, 0, 64 - c.n);
    sha1_block(&c, c.buf);
    c.n = 0;
  }
  memset(c.buf + c.n, 0, 56 - c.n);
  uint64_t bits = c.len * 8;
  for (int i = 0; i < 8; i++) c.buf[63 - i] = (uint8_t)(bits >> (8 * i));
  sha1_block(&c, c.buf);
  for (int i = 0; i < 5; i++)
    out[4 * i] = c.h[i] >> 24, out[4 * i + 1] = c.h[i] >> 16, out[4 * i + 2] = c.h[i] >> 8, out[4 * i + 3] = c.h[i];
}

/* base64 (padded) or, with url set, base64url without padding (serve tokens) */
static size_t b64x(const uint8_t *in, size_t n, char *out, int url) {
  const char *T = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                      : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const char pad = url ? 0 : '=';
  size_t o = 0, i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = T[v >> 18], out[o++] = T[(v >> 12) & 63], out[o++] = T[(v >> 6) & 63], out[o++] = T[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    out[o++] = T[v >> 18], out[o++] = T[(v >> 12) & 63];
    if (pad) out[o++] = pad, out[o++] = pad;
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    out[o++] = T[v >> 18], out[o++] = T[(v >> 12) & 63], out[o++] = T[(v >> 6) & 63];
    if (pad) out[o++] = pad;
  }
  out[o] = 0;
  return o;
}
static size_t b64(const uint8_t *in, size_t n, char *out) { return b64x(in, n, out, 0); }

/* Sec-WebSocket-Accept for a 16-byte key: base64(sha1(base64(key) + GUID)). */
static void accept_for(const uint8_t key[16], char key64[25], char acc[29]) {
  char tmp[64];
  uint8_t dg[20];
  b64(key, 16, key64);
  memcpy(tmp, key64, 24);
  memcpy(tmp + 24, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
  sha1((const uint8_t *)tmp, 60, dg);
  b64(dg, 20, acc);
}

/* ------------------------------------------------------------------ SHA-256, HMAC, serve tokens */

/* Tokens are minted here rather than read from a file the harness writes: a token costs seven
 * SHA-256 blocks (~2 us) when its connection starts, where a file would cost ~250 bytes of disk
 * and a read per user (250 MB for a million) and a Node process minting them first. */

typedef struct {
  uint32_t h[8];
  uint64_t len;
  uint8_t buf[64];
  size_t n;
} sha256_ctx;

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(sha256_ctx *c, const uint8_t *p) {
  static const uint32_t K[64] = {
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
      0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
      0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
      0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
      0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
      0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
      0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
  uint32_t w[64], v[8];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  memcpy(v, c->h, sizeof v);
  for (int i = 0; i < 64; i++) {
    uint32_t e = v[4], a = v[0];
    uint32_t t1 = v[7] + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & v[5]) ^ (~e & v[6])) + K[i] + w[i];
    uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & v[1]) ^ (a & v[2]) ^ (v[1] & v[2]));
    memmove(v + 1, v, 7 * sizeof *v);
    v[4] += t1;
    v[0] = t1 + t2;
  }
  for (int i = 0; i < 8; i++) c->h[i] += v[i];
}

static void sha256_init(sha256_ctx *c) {
  static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(c->h, H0, sizeof H0);
  c->len = 0, c->n = 0;
}

static void sha256_update(sha256_ctx *c, const uint8_t *p, size_t n) {
  c->len += n;
  while (n > 0) {
    size_t k = 64 - c->n < n ? 64 - c->n : n;
    memcpy(c->buf + c->n, p, k);
    c->n += k, p += k, n -= k;
    if (c->n == 64) sha256_block(c, c->buf), c->n = 0;
  }
}

static void sha256_final(sha256_ctx *c, uint8_t out[32]) {
  uint64_t bits = c->len * 8;
  c->buf[c->n++] = 0x80;
  if (c->n > 56) {
    memset(c->buf + c->n, 0, 64 - c->n);
    sha256_block(c, c->buf);
    c->n = 0;
  }
  memset(c->buf + c->n, 0, 56 - c->n);
  for (int i = 0; i < 8; i++) c->buf[63 - i] = (uint8_t)(bits >> (8 * i));
  sha256_block(c, c->buf);
  for (int i = 0; i < 8; i++)
    out[4 * i] = c->h[i] >> 24, out[4 * i + 1] = c->h[i] >> 16, out[4 * i + 2] = c->h[i] >> 8, out[4 * i + 3] = c->h[i];
}

/* HMAC-SHA256 (RFC 2104) with the key's inner and outer blocks absorbed once per process */
static sha256_ctx hmac_inner, hmac_outer;

static void hmac_key(const char *key) {
  uint8_t k[64] = {0}, ipad[64], opad[64];
  size_t n = strlen(key);
  if (n > 64) {
    sha256_ctx c;
    sha256_init(&c), sha256_update(&c, (const uint8_t *)key, n), sha256_final(&c, k);
  } else
    memcpy(k, key, n);
  for (int i = 0; i < 64; i++) ipad[i] = k[i] ^ 0x36, opad[i] = k[i] ^ 0x5c;
  sha256_init(&hmac_inner), sha256_update(&hmac_inner, ipad, 64);
  sha256_init(&hmac_outer), sha256_update(&hmac_outer, opad, 64);
}

static void hmac(const uint8_t *msg, size_t n, uint8_t out[32]) {
  uint8_t inner[32];
  sha256_ctx c = hmac_inner;
  sha256_update(&c, msg, n), sha256_final(&c, inner);
  c = hmac_outer;
  sha256_update(&c, inner, 32), sha256_final(&c, out);
}

/* User i's token, as src/app/token.ts mints it: m1.<base64url(claims)>.<base64url(HMAC)>, allowed
 * to subscribe to and see the presence of room:*. Returns its length (out holds >= 512 bytes). */
static size_t mint_token(long user, char *out) {
  char claims[192];
  long iat = (long)time(NULL);
  int n = snprintf(claims, sizeof claims,
                   "{\"user\":\"user-%ld\",\"iat\":%ld,\"exp\":%ld,\"sub\":[\"room:*\"],\"pub\":[],\"presence\":[\"room:*\"]}",
                   user, iat, iat + TOKEN_TTL_S);
  uint8_t mac[32];
  size_t o = 3;
  memcpy(out, "m1.", 3);
  o += b64x((const uint8_t *)claims, (size_t)n, out + o, 1);
  hmac((const uint8_t *)out, o, mac);
  out[o++] = '.';
  return o + b64x(mac, 32, out + o, 1);
}

/* ------------------------------------------------------------------ random pool */

static uint8_t rnd_pool[65536];
static size_t rnd_pos = sizeof rnd_pool;

static void rnd(void *dst, size_t n) {
  if (rnd_pos + n > sizeof rnd_pool) {
    size_t got = 0;
    while (got < sizeof rnd_pool) {
      ssize_t r = getrandom(rnd_pool + got, sizeof rnd_pool - got, 0);
      if (r < 0) {
        if (errno == EINTR) continue;
        die("getrandom: %s", strerror(errno));
      }
      got += (size_t)r;
    }
    rnd_pos = 0;
  }
  memcpy(dst, rnd_pool + rnd_pos, n);
  rnd_pos += n;
}

/* ------------------------------------------------------------------ latency histogram */

static int hidx(uint64_t v) {
  if (v < 128) return (int)v;
  int msb = 63 - __builtin_clzll(v), shift = msb - 6;
  return 128 + (shift - 1) * 64 + (int)((v >> shift) - 64);
}
static double hval(int i) { /* middle of bucket i, in ns */
  if (i < 128) return i;
  int shift = (i - 128) / 64 + 1;
  uint64_t m = (uint64_t)((i - 128) % 64 + 64);
  return (double)(m << shift) + (double)(1ull << shift) / 2.0;
}
static double hmax(const uint64_t *h) {
  for (int i = NB - 1; i >= 0; i--)
    if (h[i]) return hval(i);
  return -1;
}
static double hpct(const uint64_t *h, double p) {
  uint64_t tot = 0, acc = 0;
  for (int i = 0; i < NB; i++) tot += h[i];
  if (!tot) return -1;
  uint64_t want = (uint64_t)(p * (double)tot);
  if (want < 1) want = 1;
  if (want > tot) want = tot;
  for (int i = 0; i < NB; i++) {
    acc += h[i];
    if (acc >= want) return hval(i);
  }
  return -1;
}

/* ------------------------------------------------------------------ connections (worker) */

enum { ST_IDLE, ST_CONNECTING, ST_HS, ST_OPEN, ST_CLOSING, ST_CLOSED, ST_FAILED };
/* Appended reasons name the limit a failed socket()/bind()/connect() hit: no free 4-tuple
 * (no_port: EADDRNOTAVAIL/EADDRINUSE), the machine's descriptors (file_max: ENFILE), this
 * process's descriptors (fd_limit: EMFILE), kernel memory (no_memory: ENOMEM/ENOBUFS). */
/* serve: a command answered with an error (command_error, counted by its code too), or the
 * connection closed or answered something else before every reply came (setup: "close_<code>",
 * "eof" or "no_welcome" among the codes). */
enum { F_SOCKET, F_CONNECT, F_TIMEOUT, F_EOF, F_STATUS, F_ACCEPT, F_TOOBIG, F_RAMP, F_NOPORT, F_NFILE, F_MFILE, F_NOMEM,
       F_REPLY, F_SETUP, F_NR };
static const char *f_names[] = {"socket", "connect", "timeout",  "eof",      "status",  "accept",
                                "response_too_big", "ramp_timeout", "no_port", "file_max", "fd_limit", "no_memory",
                                "command_error", "setup"};

/* serve: replies a connection still waits for (the welcome, then the commands by id) */
#define AW_WELCOME 1
#define AW_ID(id) (1 << (id))

typedef struct {
  char name[32];
  long n;
} code_count;

/* Adds n to the count of an error code (names past the table's size go to "other"). */
static void add_code(code_count *t, const char *name, size_t len, long n) {
  char nm[32];
  if (len > sizeof nm - 1) len = sizeof nm - 1;
  for (size_t i = 0; i < len; i++) /* a code from the wire: keep it printable inside JSON */
    nm[i] = (name[i] >= '0' && name[i] <= '9') || (name[i] >= 'A' && name[i] <= 'Z') || (name[i] >= 'a' && name[i] <= 'z') ? name[i] : '_';
  nm[len] = 0;
  int i = 0;
  for (; i < CODE_SLOTS - 1 && t[i].name[0]; i++)
    if (!strcmp(t[i].name, nm)) break;
  if (i == CODE_SLOTS - 1 && strcmp(t[i].name, nm)) strcpy(nm, "other");
  if (!t[i].name[0]) strcpy(t[i].name, nm);
  t[i].n += n;
}

typedef struct {
  int fd;
  uint8_t state, want_out, hdr_len, hdr_need;
  uint8_t op, msg_op, in_msg, fin, skipping, ctrl_len, done, in_frame;
  uint8_t hdr[14];
  uint8_t key[16];
  uint8_t ctrl[125];
  uint64_t remain;  /* payload bytes left in the current frame */
  uint64_t msg_len; /* declared bytes of the current message so far */
  uint64_t msg_pos; /* bytes of the current message consumed */
  char *hs;
  uint32_t hs_len;
  uint8_t *out;
  uint32_t out_len, out_off, out_cap;
  uint64_t t_start;
  uint64_t *ring; /* echo: send timestamps of messages in flight */
  uint32_t ring_tail, inflight;
  uint64_t sent_seq, recv_seq, recv_msgs;
  uint8_t sub_wait; /* --topics: "sub K" sent, its text acknowledgement not yet received */
  uint8_t await;    /* serve: AW_ bits of the replies not yet received; held when it reaches 0 */
  uint16_t cap_len;
  uint8_t *cap; /* serve: a text message that spans reads, its first MSG_CAP bytes (only while it lasts) */
} conn;

static conn *C;
static long nconn, first_idx;
static int ep;
static uint8_t *pat; /* payload pattern, size + PAT_SPREAD bytes */
static uint8_t rbuf[READ_CAP];

static struct {
  long connected, failed, pending, started, closed_by_server, dropped, open_now, closing;
  long limit;    /* connections this worker may start (all of them unless --stepped) */
  int bc_armed;  /* hold: counting the deliveries of a "pub M S" */
  long bc_expected; /* hold: connections open when the broadcast was armed */
  long sub_wait; /* --topics: open connections whose "sub K" is not acknowledged yet */
  long fail[F_NR];
  uint64_t proto_err, verify_err, oversize, pongs, pong_drops, unexpected;
  uint64_t rt, rt_all, bytes, deliveries, complete, finished;
  uint64_t ramp_start, ramp_end, last_delivery, t_pub;
  uint64_t hist[NB];
  int measuring, running, ramped, stopping, pub_done, fin_reported;
  /* serve: since "mark": messages without a stamp, room:big deliveries and their first and last
   * time, other text frames (presence events...); the error codes of failed setups */
  uint64_t untimed, big, big_first, big_last, other;
  code_count codes[CODE_SLOTS];
  const uint8_t *msg; /* serve: a text message read in place, valid until on_message returns */
  size_t msg_len;
} W;

static void set_interest(conn *c, int out) {
  struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.u64 = (uint64_t)(c - C)};
  if (c->want_out != out) {
    c->want_out = (uint8_t)out;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
  }
}

static void conn_close(conn *c, int newstate) {
  if (c->fd >= 0) close(c->fd); /* also removes it from epoll */
  c->fd = -1;
  free(c->hs), c->hs = NULL;
  free(c->out), c->out = NULL;
  free(c->ring), c->ring = NULL;
  free(c->cap), c->cap = NULL, c->cap_len = 0;
  c->out_cap = c->out_len = c->out_off = 0;
  int setup = c->state == ST_OPEN && c->await; /* serve: still pending, not yet held */
  c->await = 0;
  if (c->state == ST_CONNECTING || c->state == ST_HS || setup) W.pending--;
  if (c->state == ST_CLOSING) W.closing--;
  if (c->sub_wait) c->sub_wait = 0, W.sub_wait--;
  if (setup && newstate != ST_FAILED) { /* the server ended it before every reply came */
    W.failed++, W.fail[F_SETUP]++;
    add_code(W.codes, "eof", 3, 1);
    newstate = ST_FAILED;
  }
  if (!setup && (c->state == ST_OPEN || c->state == ST_CLOSING) && newstate != ST_OPEN) {
    W.open_now--;
    if (c->state == ST_OPEN) W.dropped++;
    if ((cfg.scenario == SC_SUB || W.bc_armed) && !c->done) c->done = 1, W.finished++;
  }
  c->state = (uint8_t)newstate;
}

/* The failure reason for a socket()/bind()/connect() errno. */
static int errno_reason(int e, int otherwise) {
  if (e == EADDRNOTAVAIL || e == EADDRINUSE) return F_NOPORT;
  if (e == ENFILE) return F_NFILE;
  if (e == EMFILE) return F_MFILE;
  if (e == ENOMEM || e == ENOBUFS) return F_NOMEM;
  return otherwise;
}

static void conn_fail(conn *c, int why) {
  W.failed++;
  W.fail[why]++;
  conn_close(c, ST_FAILED);
}

/* Makes room for n more bytes in the output buffer; 0 when it cannot (the caller drops). */
static int out_room(conn *c, uint32_t n) {
  if (!c->out) { /* hold/subscribe free it while idle: an idle client holds no buffer */
    if (n > 1024 || !(c->out = malloc(1024))) return 0;
    c->out_cap = 1024, c->out_len = c->out_off = 0;
  }
  if (c->out_cap - c->out_len >= n) return 1;
  if (c->out_off) {
    memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
    c->out_len -= c->out_off, c->out_off = 0;
  }
  return c->out_cap - c->out_len >= n;
}

static void mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t m[4]) {
  uint32_t m4;
  uint64_t m8, v;
  memcpy(&m4, m, 4);
  m8 = (uint64_t)m4 << 32 | m4;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) memcpy(&v, src + i, 8), v ^= m8, memcpy(dst + i, &v, 8);
  for (; i < n; i++) dst[i] = src[i] ^ m[i & 3];
}

/* Appends one masked client frame. Returns 0 when the buffer is full. */
static int put_frame(conn *c, int op, const uint8_t *p, uint64_t n) {
  uint8_t h[14];
  size_t hl = 2;
  h[0] = (uint8_t)(0x80 | op);
  if (n < 126) h[1] = (uint8_t)(0x80 | n);
  else if (n < 65536) h[1] = 0x80 | 126, h[2] = (uint8_t)(n >> 8), h[3] = (uint8_t)n, hl = 4;
  else {
    h[1] = 0x80 | 127, hl = 10;
    for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)(n >> (56 - 8 * i));
  }
  rnd(h + hl, 4);
  if (!out_room(c, (uint32_t)(hl + 4 + n))) return 0;
  memcpy(c->out + c->out_len, h, hl + 4);
  mask_copy(c->out + c->out_len + hl + 4, p, n, h + hl);
  c->out_len += (uint32_t)(hl + 4 + n);
  return 1;
}

/* Writes what is queued; registers for EPOLLOUT while something is left. */
static void flush(conn *c) {
  while (c->out_off < c->out_len) {
    ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (w > 0) {
      c->out_off += (uint32_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      set_interest(c, 1);
      return;
    }
    if (c->state == ST_HS) conn_fail(c, F_EOF);
    else conn_close(c, ST_CLOSED);
    return;
  }
  c->out_off = c->out_len = 0;
  if (cfg.scenario != SC_ECHO && c->state == ST_OPEN) free(c->out), c->out = NULL, c->out_cap = 0;
  set_interest(c, 0);
}

static void send_echo_msg(conn *c, uint64_t t) {
  const uint8_t *p = pat + (c->sent_seq % PAT_SPREAD);
  if (!put_frame(c, cfg.text ? 1 : 2, p, (uint64_t)cfg.size)) return; /* cannot happen: sized for the window */
  c->ring[(c->ring_tail + c->inflight) % (uint32_t)cfg.window] = t;
  c->inflight++;
  c->sent_seq++;
}

static void on_serve_message(conn *c, uint64_t t);

static void on_message(conn *c, uint64_t t) {
  if (cfg.scenario == SC_SERVE) on_serve_message(c, t);
  else if (cfg.scenario == SC_ECHO) {
    if (!c->inflight) {
      W.unexpected++;
      return;
    }
    uint64_t t0 = c->ring[c->ring_tail];
    c->ring_tail = (c->ring_tail + 1) % (uint32_t)cfg.window;
    c->inflight--;
    if (cfg.verify && (c->msg_len != (uint64_t)cfg.size || c->msg_op != (cfg.text ? 1 : 2))) W.verify_err++;
    if (c->skipping) W.oversize++;
    c->recv_seq++;
    W.rt_all++;
    if (W.measuring) {
      W.rt++;
      W.bytes += c->msg_len;
      W.hist[hidx(t - t0)]++;
    }
    if (W.running) send_echo_msg(c, t);
  } else if (cfg.scenario == SC_SUB || W.bc_armed) {
    if (c->msg_op == 1 && c->sub_wait) { /* the server's acknowledgement of "sub K" */
      c->sub_wait = 0, W.sub_wait--;
      return;
    }
    if (c->msg_op != 2 || !W.pub_done) {
      W.unexpected++;
      return;
    }
    if (c->skipping) W.oversize++;
    if (cfg.verify && c->msg_len != (uint64_t)cfg.size) W.verify_err++;
    c->recv_msgs++;
    W.deliveries++;
    W.last_delivery = t;
    if (!c->done && c->recv_msgs >= (uint64_t)cfg.messages) c->done = 1, W.complete++, W.finished++;
  }
}

static void proto_error(conn *c) {
  W.proto_err++;
  conn_close(c, ST_CLOSED);
}

/* serve: the text of a server message for on_message. A message whole in this read (the usual
 * case) is read in place; one that spans reads is gathered, its first MSG_CAP bytes only. */
static void keep_text(conn *c, const uint8_t *b, size_t k) {
  if (c->msg_pos == 0 && k == c->remain && c->fin) {
    W.msg = b, W.msg_len = k;
    return;
  }
  if (!c->cap && !(c->cap = malloc(MSG_CAP))) die("out of memory");
  if (k > (size_t)(MSG_CAP - c->cap_len)) k = MSG_CAP - c->cap_len;
  memcpy(c->cap + c->cap_len, b, k);
  c->cap_len = (uint16_t)(c->cap_len + k);
}

static int starts(const uint8_t *m, size_t n, const char *p) {
  size_t l = strlen(p);
  return n >= l && !memcmp(m, p, l);
}

/* serve: the commands of connection gi once its welcome came; each awaits its reply by id */
static void serve_commands(conn *c) {
  long gi = first_idx + (c - C);
  char cmd[3][96];
  int len[3], id[3], k = 0;
  len[k] = snprintf(cmd[k], sizeof cmd[k], "{\"type\":\"subscribe\",\"id\":1,\"topic\":\"room:%ld\"}", gi % cfg.rooms), id[k++] = 1;
  if (gi % 10 == 0)
    len[k] = snprintf(cmd[k], sizeof cmd[k], "{\"type\":\"presence\",\"action\":\"join\",\"id\":2,\"topic\":\"room:%ld\"}", gi % cfg.rooms),
    id[k++] = 2;
  if (gi < cfg.big_room) len[k] = snprintf(cmd[k], sizeof cmd[k], "{\"type\":\"subscribe\",\"id\":3,\"topic\":\"room:big\"}"), id[k++] = 3;
  for (int i = 0; i < k; i++) {
    if (!put_frame(c, 1, (const uint8_t *)cmd[i], (uint64_t)len[i])) return conn_fail(c, F_SOCKET); /* cannot happen: < 1 KiB */
    c->await |= (uint8_t)AW_ID(id[i]);
  }
}

/* serve, before the user is held: the welcome, then a reply per command; an error fails it */
static void serve_setup(conn *c, const uint8_t *m, size_t n) {
  static const char reply[] = "{\"type\":\"reply\",\"id\":";
  if (c->await & AW_WELCOME) {
    if (!starts(m, n, "{\"type\":\"welcome\"")) {
      add_code(W.codes, "no_welcome", 10, 1);
      return conn_fail(c, F_SETUP);
    }
    c->await = 0;
    return serve_commands(c);
  }
  if (starts(m, n, reply) && n > sizeof reply - 1) {
    int id = m[sizeof reply - 1] - '0';
    if (id >= 1 && id <= 3) c->await &= (uint8_t)~AW_ID(id);
    if (!c->await) W.pending--, W.connected++, W.open_now++; /* held */
  } else if (starts(m, n, "{\"type\":\"error\"")) {
    const uint8_t *k = memmem(m, n, "\"code\":\"", 8), *e = k ? memchr(k + 8, '"', n - (size_t)(k + 8 - m)) : NULL;
    if (e) add_code(W.codes, (const char *)k + 8, (size_t)(e - k - 8), 1);
    else add_code(W.codes, "error", 5, 1);
    conn_fail(c, F_REPLY);
  } else
    W.other++; /* a message or presence event that came before the last reply: not counted */
}

/* serve, a held user: a message stamped "t" (CLOCK_MONOTONIC ms) gives a latency; room:big its time */
static void on_delivery(const uint8_t *m, size_t n, uint64_t t) {
  if (memmem(m, n, "\"topic\":\"room:big\"", 18)) {
    if (!W.big++) W.big_first = t;
    W.big_last = t;
    return;
  }
  const uint8_t *d = memmem(m, n, "\"data\":", 7);
  const uint8_t *s = d ? memmem(d, n - (size_t)(d - m), "\"t\":", 4) : NULL;
  if (s) {
    char num[32], *e;
    size_t l = n - (size_t)(s + 4 - m);
    if (l > sizeof num - 1) l = sizeof num - 1;
    memcpy(num, s + 4, l), num[l] = 0;
    double ms = strtod(num, &e);
    if (e != num && ms > 0) {
      uint64_t at = (uint64_t)(ms * 1e6);
      W.hist[hidx(t > at ? t - at : 0)]++;
      W.deliveries++;
      W.last_delivery = t;
      return;
    }
  }
  W.untimed++;
}

static void on_serve_message(conn *c, uint64_t t) {
  const uint8_t *m = c->cap ? c->cap : W.msg;
  size_t n = c->cap ? c->cap_len : W.msg_len;
  if (c->msg_op != 1 || !m) W.unexpected++;
  else if (c->await) serve_setup(c, m, n);
  else if (starts(m, n, "{\"type\":\"message\"")) on_delivery(m, n, t);
  else W.other++;
  free(c->cap), c->cap = NULL, c->cap_len = 0, W.msg = NULL, W.msg_len = 0;
}

/* Frame parser: server frames, streamed; payloads are never buffered except control frames. */
static void feed(conn *c, const uint8_t *b, size_t n, uint64_t t) {
  while (n > 0 && (c->state == ST_OPEN || c->state == ST_CLOSING)) {
    if (!c->in_frame) {
      while (c->hdr_len < c->hdr_need && n > 0) c->hdr[c->hdr_len++] = *b++, n--;
      if (c->hdr_len == 2) {
        uint8_t l7 = c->hdr[1] & 0x7f;
        c->hdr_need = (uint8_t)(2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((c->hdr[1] & 0x80) ? 4 : 0));
        while (c->hdr_len < c->hdr_need && n > 0) c->hdr[c->hdr_len++] = *b++, n--;
      }
      if (c->hdr_len < c->hdr_need) return;
      uint8_t b0 = c->hdr[0], b1 = c->hdr[1], l7 = b1 & 0x7f;
      uint64_t len = l7;
      if (l7 == 126) len = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
      else if (l7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++) len = len << 8 | c->hdr[2 + i];
      }
      c->fin = b0 >> 7;
      c->op = b0 & 15;
      c->hdr_len = 0, c->hdr_need = 2;
      if ((b0 & 0x70) || (b1 & 0x80) || (len >> 63)) return proto_error(c); /* RSV, masked, length */
      if (c->op & 8) {
        if (!c->fin || len > 125 || (c->op != 8 && c->op != 9 && c->op != 10)) return proto_error(c);
        c->ctrl_len = 0;
      } else if (c->op == 0) {
        if (!c->in_msg) return proto_error(c);
      } else if (c->op == 1 || c->op == 2) {
        if (c->in_msg) return proto_error(c);
        c->in_msg = 1, c->msg_op = c->op, c->msg_len = 0, c->msg_pos = 0, c->skipping = 0;
        free(c->cap), c->cap = NULL, c->cap_len = 0, W.msg = NULL, W.msg_len = 0;
      } else
        return proto_error(c);
      if (!(c->op & 8)) {
        c->msg_len += len;
        if (c->msg_len > (uint64_t)cfg.size && cfg.scenario != SC_SERVE) c->skipping = 1; /* skipped by length, never buffered */
      }
      c->remain = len;
      c->in_frame = 1;
    }
    size_t k = c->remain < n ? (size_t)c->remain : n;
    if (k) {
      if (c->op & 8) memcpy(c->ctrl + c->ctrl_len, b, k), c->ctrl_len += (uint8_t)k;
      else {
        if (cfg.verify && cfg.scenario == SC_ECHO && !c->skipping) {
          const uint8_t *e = pat + (c->recv_seq % PAT_SPREAD) + c->msg_pos;
          if (memcmp(e, b, k) != 0) W.verify_err++;
        }
        if (cfg.scenario == SC_SERVE && c->msg_op == 1) keep_text(c, b, k);
        c->msg_pos += k;
      }
      c->remain -= k, b += k, n -= k;
    }
    if (c->remain) return;
    c->in_frame = 0;
    if (c->op == 9) { /* ping -> pong, masked */
      if (put_frame(c, 10, c->ctrl, c->ctrl_len)) W.pongs++;
      else W.pong_drops++;
    } else if (c->op == 8) { /* close -> echo the status code, then wait for the server's FIN */
      if (c->state == ST_OPEN && c->await) { /* serve: closed before every reply came: a failure, by its code */
        char code[16];
        int l = snprintf(code, sizeof code, "close_%d", c->ctrl_len >= 2 ? c->ctrl[0] << 8 | c->ctrl[1] : 1005);
        add_code(W.codes, code, (size_t)l, 1);
        return conn_fail(c, F_SETUP);
      }
      if (c->state == ST_OPEN) {
        W.closed_by_server++;
        put_frame(c, 8, c->ctrl, c->ctrl_len >= 2 ? 2 : 0);
        c->state = ST_CLOSING;
        W.closing++;
        c->t_start = t;
        if ((cfg.scenario == SC_SUB || W.bc_armed) && !c->done) c->done = 1, W.finished++;
      }
    } else if (c->op != 10 && c->fin) {
      c->in_msg = 0;
      if (c->state == ST_OPEN) on_message(c, t);
    }
  }
}

static void conn_opened(conn *c) {
  free(c->hs), c->hs = NULL;
  c->state = ST_OPEN;
  if (cfg.scenario == SC_SERVE) c->await = AW_WELCOME; /* pending until its replies came */
  else W.pending--, W.connected++, W.open_now++;
  c->hdr_need = 2;
  if (cfg.scenario != SC_ECHO && c->out_off >= c->out_len) /* the request went out: hold no buffer */
    free(c->out), c->out = NULL, c->out_cap = c->out_len = c->out_off = 0;
  if (cfg.scenario == SC_ECHO) {
    uint32_t cap = (uint32_t)(cfg.window * (cfg.size + 14) + 1024);
    uint8_t *o = realloc(c->out, cap);
    c->ring = calloc((size_t)cfg.window, sizeof(uint64_t));
    if (!o || !c->ring) die("out of memory");
    c->out = o, c->out_cap = cap;
  }
  if (cfg.scenario == SC_SUB && cfg.topics > 0) { /* flushed by the caller */
    char msg[48];
    int ml = snprintf(msg, sizeof msg, "sub %ld", (first_idx + (long)(c - C)) % cfg.topics);
    if (put_frame(c, 1, (const uint8_t *)msg, (uint64_t)ml)) c->sub_wait = 1, W.sub_wait++;
  }
}

static int ci_prefix(const char *s, const char *p) { return strncasecmp(s, p, strlen(p)) == 0; }

/* Handshake response: status 101, Upgrade: websocket, Sec-WebSocket-Accept matches. */
static void on_hs_read(conn *c, uint64_t t) {
  for (;;) {
    if (c->hs_len >= HS_CAP - 1) return conn_fail(c, F_TOOBIG);
    ssize_t r = recv(c->fd, c->hs + c->hs_len, HS_CAP - 1 - c->hs_len, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (r <= 0) return conn_fail(c, F_EOF);
    uint32_t old = c->hs_len;
    c->hs_len += (uint32_t)r;
    c->hs[c->hs_len] = 0;
    char *end = memmem(c->hs + (old > 3 ? old - 3 : 0), c->hs_len - (old > 3 ? old - 3 : 0), "\r\n\r\n", 4);
    if (!end) continue;
    size_t head = (size_t)(end - c->hs) + 4;
    if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0 || (c->hs[12] != ' ' && c->hs[12] != '\r')) return conn_fail(c, F_STATUS);
    char key64[25], acc[29];
    accept_for(c->key, key64, acc);
    int ok_acc = 0, ok_up = 0;
    /* bounded searches: a hostile head may hold NUL bytes */
    char *line = memmem(c->hs, (size_t)(end + 2 - c->hs), "\r\n", 2) + 2;
    for (char *eol; line < end; line = eol + 2) {
      char *v;
      eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
      if (ci_prefix(line, "sec-websocket-accept:")) {
        for (v = line + 21; *v == ' ' || *v == '\t'; v++);
        char *ve = eol;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        ok_acc = (ve - v == 28 && memcmp(v, acc, 28) == 0);
      } else if (ci_prefix(line, "upgrade:")) {
        for (v = line + 8; *v == ' ' || *v == '\t'; v++);
        ok_up = ci_prefix(v, "websocket");
      }
    }
    if (!ok_acc || !ok_up) return conn_fail(c, F_ACCEPT);
    size_t extra = c->hs_len - head;
    uint8_t tmp[HS_CAP];
    memcpy(tmp, c->hs + head, extra);
    conn_opened(c);
    if (extra) feed(c, tmp, extra, t);
    if (c->state == ST_OPEN && c->out_len) flush(c);
    return;
  }
}

static void send_handshake(conn *c) {
  char key64[25], acc[29];
  rnd(c->key, 16);
  accept_for(c->key, key64, acc);
  c->out_cap = 1024;
  c->out = malloc(c->out_cap);
  c->hs = malloc(HS_CAP);
  if (!c->out || !c->hs) die("out of memory");
  c->hs_len = 0;
  char token[512] = "";
  if (cfg.scenario == SC_SERVE) mint_token(first_idx + (c - C), token);
  int n = snprintf((char *)c->out, c->out_cap,
                   "GET %s%s%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                   cfg.path, *token ? strchr(cfg.path, '?') ? "&token=" : "?token=" : "", token, cfg.host, cfg.port, key64);
  c->out_len = (uint32_t)n, c->out_off = 0;
  c->state = ST_HS;
  flush(c);
}

static void conn_start(conn *c) {
  long gi = first_idx + (c - C);
  c->t_start = now_ns();
  c->state = ST_CONNECTING;
  W.pending++, W.started++;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return conn_fail(c, errno_reason(errno, F_SOCKET));
  c->fd = fd;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = 0};
  src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)cfg.src_first + (uint32_t)(gi % cfg.src_ips));
  if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) return conn_fail(c, errno_reason(errno, F_SOCKET));
  struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg.port), .sin_addr = dst_addr};
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u64 = (uint64_t)(c - C)};
  c->want_out = 1;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) return conn_fail(c, F_SOCKET);
  if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS)
    return conn_fail(c, errno_reason(errno, F_CONNECT));
}

static void on_event(conn *c, uint32_t evs) {
  uint64_t t = now_ns();
  if (c->state == ST_CONNECTING) {
    int err = 0;
    socklen_t l = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err) return conn_fail(c, F_CONNECT);
    if (!(evs & EPOLLOUT)) return;
    send_handshake(c);
    return;
  }
  if (c->state == ST_HS) {
    if (evs & EPOLLOUT) flush(c);
    if (c->state == ST_HS && (evs & (EPOLLIN | EPOLLHUP | EPOLLERR))) on_hs_read(c, t);
    return;
  }
  if (c->state != ST_OPEN && c->state != ST_CLOSING) return;
  if (evs & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      conn_close(c, ST_CLOSED);
      return;
    }
    if (r > 0) feed(c, rbuf, (size_t)r, t);
  }
  if (c->fd >= 0 && (c->out_len > c->out_off || (evs & EPOLLOUT))) flush(c);
}

/* ------------------------------------------------------------------ worker main loop */

static int rep_fd;

static void report(const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n >= (int)sizeof line) n = sizeof line - 1;
  for (int o = 0; o < n;) {
    ssize_t w = write(rep_fd, line + o, (size_t)(n - o));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) _exit(3); /* parent gone */
    o += (int)w;
  }
}

/* The latency histogram's non-empty buckets, as lines "<prefix> i:count ..." */
static void report_hist(char prefix) {
  char line[900];
  int len = 0;
  for (int i = 0; i < NB; i++) {
    if (!W.hist[i]) continue;
    len += snprintf(line + len, sizeof line - (size_t)len, " %d:%llu", i, (unsigned long long)W.hist[i]);
    if (len > 800) report("%c%s\n", prefix, line), len = 0;
  }
  if (len) report("%c%s\n", prefix, line);
}

/* The failure counts by reason (" f<i>=n") and the error codes (" c=NAME:n") of an R or E line */
static void report_codes(void) {
  for (int i = 0; i < F_NR; i++) report(" f%d=%ld", i, W.fail[i]);
  for (int i = 0; i < CODE_SLOTS && W.codes[i].name[0]; i++) report(" c=%s:%ld", W.codes[i].name, W.codes[i].n);
}

static void final_report(void) {
  report("E connected=%ld failed=%ld open=%ld closed_by_server=%ld dropped=%ld proto_err=%llu verify_err=%llu "
         "oversize=%llu pongs=%llu pong_drops=%llu unexpected=%llu rt=%llu rt_all=%llu bytes=%llu deliveries=%llu complete=%llu "
         "ramp_start=%llu ramp_end=%llu last_delivery=%llu t_pub=%llu",
         W.connected, W.failed, W.open_now, W.closed_by_server, W.dropped, (unsigned long long)W.proto_err,
         (unsigned long long)W.verify_err, (unsigned long long)W.oversize, (unsigned long long)W.pongs,
         (unsigned long long)W.pong_drops, (unsigned long long)W.unexpected, (unsigned long long)W.rt,
         (unsigned long long)W.rt_all, (unsigned long long)W.bytes, (unsigned long long)W.deliveries, (unsigned long long)W.complete,
         (unsigned long long)W.ramp_start, (unsigned long long)W.ramp_end, (unsigned long long)W.last_delivery,
         (unsigned long long)W.t_pub);
  report_codes();
  report("\n");
  report_hist('H');
  report("D\n");
}

static void worker(int wid, long first, long count, int cmd_fd) {
  nconn = count, first_idx = first;
  C = calloc((size_t)count, sizeof(conn));
  if (!C) die("out of memory");
  for (long i = 0; i < count; i++) C[i].fd = -1;
  ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
  epoll_ctl(ep, EPOLL_CTL_ADD, cmd_fd, &ev);
  int conc = (cfg.concurrency + cfg.workers - 1) / cfg.workers;
  long next = 0;
  struct epoll_event evs[1024];
  char cbuf[256];
  size_t clen = 0;
  uint64_t t0 = now_ns(), last_tick = t0, last_prog = t0;
  uint64_t tmo = (uint64_t)(cfg.timeout * 1e9), ramp_deadline = t0 + (uint64_t)(cfg.ramp_timeout * 1e9);
  W.ramp_start = t0;
  W.limit = cfg.stepped ? 0 : count;
  while (!W.stopping) {
    while (!W.ramped && next < W.limit && W.pending < conc) conn_start(&C[next++]);
    int n = epoll_wait(ep, evs, 1024, 100);
    for (int i = 0; i < n; i++) {
      if (evs[i].data.u64 == UINT64_MAX) {
        ssize_t r = read(cmd_fd, cbuf + clen, sizeof cbuf - 1 - clen);
        if (r <= 0) { /* parent gone or closed: stop */
          W.stopping = 1;
          break;
        }
        clen += (size_t)r;
        cbuf[clen] = 0;
        char *nl;
        while ((nl = strchr(cbuf, '\n'))) {
          *nl = 0;
          uint64_t t = now_ns();
          if (!strcmp(cbuf, "go")) {
            W.running = 1;
            if (cfg.scenario == SC_ECHO) {
              for (long j = 0; j < count; j++) {
                conn *c = &C[j];
                if (c->state != ST_OPEN) continue;
                for (int k = 0; k < cfg.window; k++) send_echo_msg(c, t);
                flush(c);
              }
            }
          } else if (!strcmp(cbuf, "mark")) {
            W.measuring = 1;
            W.rt = W.bytes = 0;
            W.deliveries = W.last_delivery = W.untimed = W.big = W.big_first = W.big_last = W.other = 0;
            memset(W.hist, 0, sizeof W.hist);
          } else if (!strcmp(cbuf, "dreport")) { /* serve: deliveries since "mark" */
            report_hist('h');
            report("Q %llu %llu %llu %llu %llu %llu\n", (unsigned long long)W.deliveries, (unsigned long long)W.untimed,
                   (unsigned long long)W.big, (unsigned long long)W.big_first, (unsigned long long)W.big_last,
                   (unsigned long long)W.other);
          } else if (!strcmp(cbuf, "pub")) {
            for (long j = 0; j < count; j++) {
              conn *c = &C[j];
              if (c->state != ST_OPEN) continue;
              char msg[64];
              int ml = snprintf(msg, sizeof msg, cfg.topics > 0 ? "pubt %ld %ld" : "pub %ld %ld", cfg.messages, cfg.size);
              W.pub_done = 1;
              W.t_pub = now_ns();
              put_frame(c, 1, (const uint8_t *)msg, (uint64_t)ml);
              flush(c);
              break;
            }
            report("S %llu\n", (unsigned long long)W.t_pub);
          } else if (!strcmp(cbuf, "arm")) {
            W.pub_done = 1; /* other workers: deliveries count from now on */
          } else if (!strncmp(cbuf, "grow ", 5)) { /* --stepped: may start up to K in all */
            long k = atol(cbuf + 5);
            if (k > count) k = count;
            if (k > W.limit) W.limit = k;
            W.ramped = 0; /* reported again (R) once this step has settled, even if empty */
            ramp_deadline = t + (uint64_t)(cfg.ramp_timeout * 1e9);
          } else if (!strcmp(cbuf, "halt")) { /* no new connections; pending handshakes finish */
            W.limit = next;
          } else if (!strncmp(cbuf, "arm ", 4) && cfg.scenario == SC_HOLD) {
            /* hold: count the next broadcast of M messages of S bytes on every open connection */
            long m = 0, sz = -1;
            if (sscanf(cbuf + 4, "%ld %ld", &m, &sz) == 2 && m > 0 && sz >= 0 && sz <= 16 * 1024 * 1024) {
              cfg.messages = m, cfg.size = sz;
              W.bc_armed = 1, W.pub_done = 1, W.fin_reported = 0;
              W.deliveries = W.complete = W.finished = W.last_delivery = W.t_pub = 0;
              W.bc_expected = 0;
              for (long j = 0; j < count; j++) {
                conn *c = &C[j];
                c->recv_msgs = 0;
                c->done = c->state != ST_OPEN;
                if (!c->done) W.bc_expected++;
              }
            }
          } else if (!strcmp(cbuf, "bcreport")) { /* the broadcast's counts now, finished or not */
            report("B %llu %llu %llu %llu %ld 0\n", (unsigned long long)W.deliveries, (unsigned long long)W.complete,
                   (unsigned long long)W.finished, (unsigned long long)W.last_delivery, W.bc_expected);
          } else if (!strncmp(cbuf, "text ", 5)) { /* one text message on the first open connection */
            int sent = 0;
            size_t tl = strlen(cbuf + 5);
            for (long j = 0; j < count && tl <= 125; j++) {
              conn *c = &C[j];
              if (c->state != ST_OPEN) continue;
              if (put_frame(c, 1, (const uint8_t *)cbuf + 5, tl)) sent = 1;
              flush(c);
              break;
            }
            report("T %d\n", sent);
          } else if (!strcmp(cbuf, "stop")) {
            W.stopping = 1;
          }
          memmove(cbuf, nl + 1, clen - (size_t)(nl + 1 - cbuf) + 1);
          clen -= (size_t)(nl + 1 - cbuf);
        }
        if (clen >= sizeof cbuf - 1) clen = 0; /* garbage: drop */
        continue;
      }
      conn *c = &C[evs[i].data.u64];
      if (c->fd >= 0) on_event(c, evs[i].events);
    }
    uint64_t t = now_ns();
    if (t - last_tick >= 100000000ull) { /* timeouts, 10 times a second */
      last_tick = t;
      int ramp_over = !W.ramped && t > ramp_deadline;
      /* the scan touches every connection: skip it while none can time out (idle holds) */
      for (long j = 0; j < count && (W.pending > 0 || W.closing > 0); j++) {
        conn *c = &C[j];
        if ((c->state == ST_CONNECTING || c->state == ST_HS || (c->state == ST_OPEN && c->await)) &&
            (t - c->t_start > tmo || ramp_over))
          conn_fail(c, ramp_over ? F_RAMP : F_TIMEOUT);
        else if (c->state == ST_CLOSING && t - c->t_start > tmo)
          conn_close(c, ST_CLOSED);
      }
      if (ramp_over)
        for (; next < W.limit; next++) C[next].state = ST_FAILED, W.failed++, W.fail[F_RAMP]++;
    }
    /* --topics: ramped once every open connection's "sub K" is acknowledged (or the ramp time is up) */
    if (!W.ramped && next >= W.limit && W.pending == 0 && (W.sub_wait <= 0 || t > ramp_deadline)) {
      W.ramped = 1;
      W.ramp_end = t;
      report("R %ld %ld open=%ld", W.connected, W.failed, W.open_now);
      report_codes();
      report("\n");
    }
    if (W.bc_armed && !W.fin_reported && W.finished >= (uint64_t)W.bc_expected) {
      report("B %llu %llu %llu %llu %ld 1\n", (unsigned long long)W.deliveries, (unsigned long long)W.complete,
             (unsigned long long)W.finished, (unsigned long long)W.last_delivery, W.bc_expected);
      W.fin_reported = 1;
    }
    if (cfg.scenario == SC_SUB && W.pub_done && W.ramped && !W.fin_reported && W.finished >= (uint64_t)W.connected) {
      report("F %llu\n", (unsigned long long)W.complete);
      W.fin_reported = 1;
    }
    if (t - last_prog >= 1000000000ull) {
      last_prog = t;
      report("P %ld %ld %llu %llu %ld %llu\n", W.connected, W.failed, (unsigned long long)W.rt_all,
             (unsigned long long)W.deliveries, W.open_now, (unsigned long long)W.pongs);
    }
  }
  (void)wid;
  final_report();
  _exit(0);
}

/* ------------------------------------------------------------------ parent */

static volatile sig_atomic_t got_stop;
static void on_sig(int s) { (void)s, got_stop = 1; }

typedef struct {
  pid_t pid;
  int cmd, rep;
  char buf[8192];
  size_t len;
  int ramped, finished, done, dead;
  long first, count; /* this worker's connections: global indexes first .. first + count - 1 */
  long connected, failed, open, fail[F_NR];
  uint64_t rt, deliv, pongs;
  /* hold broadcast ("B" line): deliveries, complete connections, finished, last delivery, expected */
  int bc_in;
  uint64_t bc_deliv, bc_complete, bc_last;
  long bc_expected;
  code_count codes[CODE_SLOTS]; /* serve: its error codes as of its last R or E line */
  int q_in;                     /* serve: its answer to "deliveries" came */
} child;

static child K[MAX_WORKERS];
static int nk;
static struct {
  long connected, failed, open, closed_by_server, dropped, fail[F_NR];
  uint64_t proto_err, verify_err, oversize, pongs, pong_drops, unexpected, rt, rt_all, bytes, deliveries, complete;
  uint64_t ramp_start, ramp_end, last_delivery, t_pub;
  uint64_t hist[NB];
} A;
/* serve: the workers' answers to "deliveries", summed */
static struct {
  uint64_t deliveries, untimed, big, big_first, big_last, other;
  uint64_t hist[NB];
} Q;

static uint64_t kv(const char *line, const char *key) {
  char k[32];
  snprintf(k, sizeof k, " %s=", key);
  const char *p = strstr(line, k);
  return p ? strtoull(p + strlen(k), NULL, 10) : 0;
}

static void parse_hist(const char *line, uint64_t *hist) {
  for (char *p = (char *)line + 1; *p;) {
    char *e;
    long i = strtol(p, &e, 10);
    if (e == p || *e != ':') break;
    uint64_t v = strtoull(e + 1, &p, 10);
    if (i >= 0 && i < NB) hist[i] += v;
  }
}

/* A worker's error codes (" c=NAME:n" in its R and E lines: cumulative, so they replace the last) */
static void parse_codes(child *k, const char *line) {
  memset(k->codes, 0, sizeof k->codes);
  for (const char *p = strstr(line, " c="); p; p = strstr(p + 3, " c=")) {
    const char *colon = strchr(p + 3, ':');
    if (colon) add_code(k->codes, p + 3, (size_t)(colon - p - 3), atol(colon + 1));
  }
}

/* {"CODE":count,...} summed over the workers */
static void print_codes(void) {
  code_count sum[CODE_SLOTS];
  memset(sum, 0, sizeof sum);
  for (int i = 0; i < nk; i++)
    for (int j = 0; j < CODE_SLOTS && K[i].codes[j].name[0]; j++) add_code(sum, K[i].codes[j].name, strlen(K[i].codes[j].name), K[i].codes[j].n);
  printf("{");
  for (int j = 0; j < CODE_SLOTS && sum[j].name[0]; j++) printf("%s\"%s\":%ld", j ? "," : "", sum[j].name, sum[j].n);
  printf("}");
}

static void on_child_line(child *k, char *line) {
  switch (line[0]) {
  case 'P':
    {
    unsigned long long a = 0, b = 0, d = 0;
    long o = k->open;
    sscanf(line + 2, "%ld %ld %llu %llu %ld %llu", &k->connected, &k->failed, &a, &b, &o, &d);
    k->rt = a, k->deliv = b, k->open = o, k->pongs = d;
  }
    break;
  case 'R':
    sscanf(line + 2, "%ld %ld", &k->connected, &k->failed);
    if (strstr(line, " open=")) k->open = (long)kv(line, "open");
    for (int i = 0; i < F_NR; i++) {
      char key[8];
      snprintf(key, sizeof key, "f%d", i);
      k->fail[i] = (long)kv(line, key);
    }
    parse_codes(k, line);
    k->ramped = 1;
    break;
  case 'h':
    parse_hist(line, Q.hist);
    break;
  case 'Q': {
    unsigned long long d = 0, u = 0, b = 0, bf = 0, bl = 0, o = 0;
    if (sscanf(line + 2, "%llu %llu %llu %llu %llu %llu", &d, &u, &b, &bf, &bl, &o) == 6) {
      Q.deliveries += d, Q.untimed += u, Q.big += b, Q.other += o;
      if (bf && (!Q.big_first || bf < Q.big_first)) Q.big_first = bf;
      if (bl > Q.big_last) Q.big_last = bl;
    }
    k->q_in = 1;
    break;
  }
  case 'B':
    {
    unsigned long long a = 0, b = 0, f = 0, l = 0;
    long e = 0;
    int fin = 0;
    if (sscanf(line + 2, "%llu %llu %llu %llu %ld %d", &a, &b, &f, &l, &e, &fin) >= 5)
      k->bc_deliv = a, k->bc_complete = b, k->bc_last = l, k->bc_expected = e, k->bc_in = 1;
    (void)fin;
  }
    break;
  case 'T':
    break;
  case 'S':
    A.t_pub = strtoull(line + 2, NULL, 10);
    break;
  case 'F':
    k->finished = 1;
    break;
  case 'E': {
    A.connected += (long)kv(line, "connected"), A.failed += (long)kv(line, "failed");
    A.open += (long)kv(line, "open"), A.closed_by_server += (long)kv(line, "closed_by_server");
    A.dropped += (long)kv(line, "dropped");
    A.proto_err += kv(line, "proto_err"), A.verify_err += kv(line, "verify_err"), A.oversize += kv(line, "oversize");
    A.pongs += kv(line, "pongs"), A.pong_drops += kv(line, "pong_drops"), A.unexpected += kv(line, "unexpected");
    A.rt += kv(line, "rt"), A.rt_all += kv(line, "rt_all"), A.bytes += kv(line, "bytes"), A.deliveries += kv(line, "deliveries");
    A.complete += kv(line, "complete");
    uint64_t rs = kv(line, "ramp_start"), re = kv(line, "ramp_end"), ld = kv(line, "last_delivery");
    if (rs && (!A.ramp_start || rs < A.ramp_start)) A.ramp_start = rs;
    if (re > A.ramp_end) A.ramp_end = re;
    if (ld > A.last_delivery) A.last_delivery = ld;
    for (int i = 0; i < F_NR; i++) {
      char key[8];
      snprintf(key, sizeof key, "f%d", i);
      A.fail[i] += (long)kv(line, key);
    }
    parse_codes(k, line);
    break;
  }
  case 'H':
    parse_hist(line, A.hist);
    break;
  case 'D':
    k->done = 1;
    break;
  }
}

/* {"reason":count,...} of the non-zero counts */
static void print_reasons(const long *f) {
  printf("{");
  for (int i = 0, n = 0; i < F_NR; i++)
    if (f[i]) printf("%s\"%s\":%ld", n++ ? "," : "", f_names[i], f[i]);
  printf("}");
}

static void tell_all(const char *cmd) {
  for (int i = 0; i < nk; i++)
    if (!K[i].dead && write(K[i].cmd, cmd, strlen(cmd)) < 0) K[i].dead = 1;
}

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen --port P [options]\n"
          "  --host H            server address, IPv4 loopback (127.0.0.1)\n"
          "  --path /            request target\n"
          "  -c, --connections N connections (1); > %ld forks workers of <= %ld each\n"
          "  --src-ips K         bind sources to 127.0.0.1..127.0.0.K round robin (ceil(N/20000))\n"
          "  --concurrency C     pending handshakes at most (500)\n"
          "  --scenario S        hold | echo | subscribe (hold)\n"
          "  --duration D        seconds: hold time (0 = until stop) / echo measuring time (10)\n"
          "  --warmup W          echo: seconds before measuring (1)\n"
          "  --window W          echo: messages in flight per connection (1)\n"
          "  --size S            payload bytes (32); larger incoming frames are skipped by length\n"
          "  --text              echo: text frames instead of binary\n"
          "  --verify            echo: check echoed bytes; subscribe: check sizes\n"
          "  --messages M        subscribe: M in \"pub M S\" (100)\n"
          "  --topics T          subscribe: each connection i sends \"sub <i %% T>\" after its handshake and\n"
          "                      waits for the server's text acknowledgement; then \"pubt M S\" (M messages\n"
          "                      to every topic) instead of \"pub M S\" (0 = off)\n"
          "  --timeout T         seconds: handshake, close, and subscribe completion (10)\n"
          "  --ramp-timeout R    seconds for the whole ramp (120)\n"
          "  --workers K         worker processes (auto)\n"
          "  --quiet             no progress lines\n"
          "  --stdin-eof-stop    end of stdin stops too (a controlling process that dies)\n"
          "  --src-first K       first source address is 127.0.0.1 + K (0); sources go on past .254 into 127.0.1.x\n"
          "  --stepped           hold, serve: open nothing until \"grow N\" on stdin (the ramp harness)\n"
          "  --rooms R           serve: connection i subscribes to room:<i %% R> (10000)\n"
          "  --big-room B        serve: connections 0..B-1 also subscribe to room:big (10000)\n"
          "  --print-token I     serve: print the token of connection I and exit\n"
          "serve: connection i upgrades on --path (/ws) with ?token= its own token (user-<i>, minted with\n"
          "  MURMUR_SECRET), waits for the welcome, subscribes to its room, joins its presence when i %% 10 == 0,\n"
          "  and counts as connected once every reply came back ok (an error reply fails it, by its code)\n"
          "stop early: SIGUSR1, SIGINT, or the line \"stop\" on stdin\n"
          "hold, after READY, lines on stdin:\n"
          "  grow N      (--stepped) open connections up to N in all; then one JSON line {\"event\":\"step\",...}\n"
          "  halt        start no more connections in this step (pending handshakes finish)\n"
          "  pub M S     one connection sends \"pub M S\"; every open connection counts M binary messages;\n"
          "              then {\"event\":\"broadcast\",...} (--timeout bounds the wait)\n"
          "  text T      one open connection sends the text message T (125 bytes at most)\n"
          "  status      {\"event\":\"status\",...}: connected, failed, open, pongs (pings answered), deliveries\n"
          "serve, after READY: grow N (--stepped), halt, status, and\n"
          "  mark        count deliveries afresh from now\n"
          "  deliveries  {\"event\":\"deliveries\",...} since mark: stamped messages (publish-to-delivery p50/p90/p99/max\n"
          "              from the CLOCK_MONOTONIC ms in their data's \"t\"), room:big deliveries and the first and last\n"
          "              one's CLOCK_MONOTONIC ns, other text frames\n",
          MAX_PER_WORKER, MAX_PER_WORKER);
  exit(2);
}

int main(int argc, char **argv) {
  static struct option o[] = {{"host", 1, 0, 'h'},        {"port", 1, 0, 'p'},        {"path", 1, 0, 'P'},
                              {"connections", 1, 0, 'c'}, {"src-ips", 1, 0, 'i'},    {"concurrency", 1, 0, 'C'},
                              {"scenario", 1, 0, 's'},    {"duration", 1, 0, 'd'},    {"warmup", 1, 0, 'w'},
                              {"window", 1, 0, 'W'},      {"size", 1, 0, 'S'},        {"text", 0, 0, 't'},
                              {"verify", 0, 0, 'v'},      {"messages", 1, 0, 'm'},    {"timeout", 1, 0, 'T'},
                              {"ramp-timeout", 1, 0, 'R'}, {"workers", 1, 0, 'k'},    {"quiet", 0, 0, 'q'},
                              {"stdin-eof-stop", 0, 0, 'E'}, {"topics", 1, 0, 'o'},
                              {"stepped", 0, 0, 'G'},     {"src-first", 1, 0, 'F'},
                              {"rooms", 1, 0, 'r'},       {"big-room", 1, 0, 'b'},    {"print-token", 1, 0, 'x'},
                              {"help", 0, 0, '?'},        {0, 0, 0, 0}};
  int ch;
  long print_token = -1;
  while ((ch = getopt_long(argc, argv, "c:", o, NULL)) != -1) {
    switch (ch) {
    case 'h': cfg.host = optarg; break;
    case 'p': cfg.port = atoi(optarg); break;
    case 'P': cfg.path = optarg; break;
    case 'c': cfg.conns = atol(optarg); break;
    case 'i': cfg.src_ips = atoi(optarg); break;
    case 'C': cfg.concurrency = atoi(optarg); break;
    case 's':
      if (!strcmp(optarg, "hold")) cfg.scenario = SC_HOLD;
      else if (!strcmp(optarg, "echo")) cfg.scenario = SC_ECHO;
      else if (!strcmp(optarg, "subscribe")) cfg.scenario = SC_SUB;
      else if (!strcmp(optarg, "serve")) cfg.scenario = SC_SERVE;
      else die("unknown scenario %s", optarg);
      break;
    case 'd': cfg.duration = atof(optarg); break;
    case 'w': cfg.warmup = atof(optarg); break;
    case 'W': cfg.window = atoi(optarg); break;
    case 'S': cfg.size = atol(optarg); break;
    case 't': cfg.text = 1; break;
    case 'v': cfg.verify = 1; break;
    case 'm': cfg.messages = atol(optarg); break;
    case 'T': cfg.timeout = atof(optarg); break;
    case 'R': cfg.ramp_timeout = atof(optarg); break;
    case 'k': cfg.workers = atoi(optarg); break;
    case 'q': cfg.quiet = 1; break;
    case 'E': cfg.eof_stop = 1; break;
    case 'o': cfg.topics = atol(optarg); break;
    case 'G': cfg.stepped = 1; break;
    case 'F': cfg.src_first = atoi(optarg); break;
    case 'r': cfg.rooms = atol(optarg); break;
    case 'b': cfg.big_room = atol(optarg); break;
    case 'x': print_token = atol(optarg); break;
    default: usage();
    }
  }
  const char *secret = getenv("MURMUR_SECRET");
  if ((cfg.scenario == SC_SERVE || print_token >= 0) && (!secret || !*secret)) die("serve tokens need MURMUR_SECRET (the server's)");
  if (secret) hmac_key(secret);
  if (print_token >= 0) { /* the token connection i would present (a check against src/app/token.ts) */
    char token[512];
    mint_token(print_token, token);
    printf("%s\n", token);
    return 0;
  }
  if (!cfg.path) cfg.path = cfg.scenario == SC_SERVE ? "/ws" : "/";
  if (cfg.rooms < 1) die("--rooms must be >= 1");
  if (cfg.port <= 0 || cfg.port > 65535) usage();
  if (!strcmp(cfg.host, "localhost")) cfg.host = "127.0.0.1";
  if (inet_pton(AF_INET, cfg.host, &dst_addr) != 1 || (ntohl(dst_addr.s_addr) >> 24) != 127)
    die("--host must be an IPv4 loopback address (127.0.0.0/8)");
  if (cfg.conns < 1 || cfg.conns > MAX_PER_WORKER * MAX_WORKERS) die("--connections out of range");
  if (cfg.window < 1 || cfg.window > 4096) die("--window must be 1..4096");
  if (cfg.size < 0 || cfg.size > 16 * 1024 * 1024) die("--size must be 0..16777216");
  if ((uint64_t)cfg.window * (uint64_t)(cfg.size + 14) > 256ull * 1024 * 1024) die("--window x --size too large");
  if (cfg.concurrency < 1) cfg.concurrency = 1;
  if (cfg.timeout <= 0) cfg.timeout = 10;
  if (cfg.messages < 1) cfg.messages = 1;
  if (cfg.duration < 0 || cfg.warmup < 0) die("negative time");
  if (cfg.scenario == SC_ECHO && cfg.duration <= 0) die("echo needs --duration > 0");
  if (cfg.src_ips <= 0) cfg.src_ips = (int)((cfg.conns + 19999) / 20000);
  /* sources run on past 127.0.0.254 into 127.0.1.x ...: all of 127.0.0.0/8 is local */
  if (cfg.src_ips > 4000) cfg.src_ips = 4000;
  if (cfg.src_first < 0 || cfg.src_first > 60000) die("--src-first must be 0..60000");
  if (cfg.stepped && cfg.scenario != SC_HOLD && cfg.scenario != SC_SERVE) die("--stepped is for --scenario hold or serve");
  int need = (int)((cfg.conns + MAX_PER_WORKER - 1) / MAX_PER_WORKER);
  if (cfg.workers < need) cfg.workers = need;
  if (cfg.workers > cfg.conns) cfg.workers = (int)cfg.conns;
  if (cfg.workers > MAX_WORKERS) die("too many workers");

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    long per = (cfg.conns + cfg.workers - 1) / cfg.workers;
    if ((long)rl.rlim_cur < per + 16)
      fprintf(stderr, "loadgen: warning: descriptor limit %ld < %ld per worker\n", (long)rl.rlim_cur, per + 16);
  }
  signal(SIGPIPE, SIG_IGN);

  /* payload pattern: message k carries pat[k % 251 ...]; text uses ASCII letters */
  pat = malloc((size_t)cfg.size + PAT_SPREAD + 8);
  if (!pat) die("out of memory");
  for (long i = 0; i < cfg.size + PAT_SPREAD + 8; i++)
    pat[i] = cfg.text ? (uint8_t)('a' + (i * 7 + i / 26) % 26) : (uint8_t)((uint32_t)(i * 2654435761u) >> 13);

  long per = cfg.conns / cfg.workers, extra = cfg.conns % cfg.workers, first = 0;
  nk = cfg.workers;
  for (int w = 0; w < nk; w++) {
    long cnt = per + (w < extra ? 1 : 0);
    int cp[2], rp[2];
    if (pipe2(cp, O_CLOEXEC) < 0 || pipe2(rp, O_CLOEXEC) < 0) die("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() == 1) _exit(3);
      signal(SIGINT, SIG_IGN), signal(SIGUSR1, SIG_IGN), signal(SIGTERM, SIG_DFL);
      for (int j = 0; j < w; j++) close(K[j].cmd), close(K[j].rep);
      close(cp[1]), close(rp[0]);
      int devnull = open("/dev/null", O_RDONLY);
      if (devnull >= 0) dup2(devnull, 0), close(devnull);
      rep_fd = rp[1];
      worker(w, first, cnt, cp[0]);
    }
    close(cp[0]), close(rp[1]);
    K[w].pid = pid, K[w].cmd = cp[1], K[w].rep = rp[0], K[w].first = first, K[w].count = cnt;
    first += cnt;
  }

  struct sigaction sa = {.sa_handler = on_sig};
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  enum { PH_RAMP, PH_RUN, PH_STOPPING } ph = PH_RAMP;
  uint64_t t0 = now_ns(), t_go = 0, t_mark = 0, t_stop = 0, deadline = 0, last_prog = t0, hard = 0;
  long last_conn = 0;
  uint64_t last_rt = 0, last_deliv = 0;
  int stdin_open = 1, marked = 0;
  char inbuf[512];
  size_t inlen = 0;
  /* --stepped: a "grow" in progress; hold: a "pub M S" being counted */
  int growing = 0, halted = 0, bc_active = 0, bc_asked = 0, q_active = 0;
  uint64_t q_deadline = 0;
  long grow_target = 0, grow_conn0 = 0, grow_fail0[F_NR] = {0}, bc_m = 0, bc_s = 0;
  uint64_t t_grow = 0, bc_deadline = 0;
  /* a hard bound on everything: the workers' ramp bound plus the scenario's own time */
  uint64_t hard_total = (uint64_t)((cfg.ramp_timeout + cfg.timeout + 30) * 1e9);

  for (;;) {
    struct pollfd pf[MAX_WORKERS + 1];
    int np = 0;
    for (int i = 0; i < nk; i++) pf[np].fd = K[i].dead || K[i].done ? -1 : K[i].rep, pf[np++].events = POLLIN;
    pf[np].fd = stdin_open ? 0 : -1, pf[np++].events = POLLIN;
    int pr = poll(pf, (nfds_t)np, 100);
    uint64_t t = now_ns();
    if (pr > 0) {
      for (int i = 0; i < nk; i++) {
        if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        child *k = &K[i];
        ssize_t r = read(k->rep, k->buf + k->len, sizeof k->buf - 1 - k->len);
        if (r <= 0) {
          if (r < 0 && errno == EINTR) continue;
          if (!k->done) {
            fprintf(stderr, "loadgen: worker %d ended without a result\n", i);
            k->dead = 1;
          }
          continue;
        }
        k->len += (size_t)r;
        k->buf[k->len] = 0;
        char *s = k->buf, *nl;
        while ((nl = strchr(s, '\n'))) *nl = 0, on_child_line(k, s), s = nl + 1;
        k->len -= (size_t)(s - k->buf);
        memmove(k->buf, s, k->len);
        if (k->len >= sizeof k->buf - 1) k->len = 0;
      }
      if (stdin_open && (pf[nk].revents & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t r = read(0, inbuf + inlen, sizeof inbuf - 1 - inlen);
        if (r <= 0) { /* EOF is a stop only with --stdin-eof-stop: /dev/null is a normal stdin */
          stdin_open = 0;
          if (cfg.eof_stop) got_stop = 1;
        }
        else {
          inlen += (size_t)r;
          inbuf[inlen] = 0;
          char *ln = inbuf, *nl;
          while ((nl = strchr(ln, '\n'))) {
            *nl = 0;
            if (nl > ln && nl[-1] == '\r') nl[-1] = 0;
            long a = 0, b = 0;
            int live = -1; /* the first worker holding an open connection */
            for (int i = 0; i < nk && live < 0; i++)
              if (!K[i].dead && K[i].open > 0) live = i;
            if (!strcmp(ln, "stop")) got_stop = 1;
            else if (ph != PH_RUN) fprintf(stderr, "loadgen: \"%s\" ignored before READY\n", ln);
            else if (sscanf(ln, "grow %ld", &a) == 1 && cfg.stepped && (cfg.scenario == SC_HOLD || cfg.scenario == SC_SERVE)) {
              /* shares proportional to each worker's size, summing exactly to the target */
              grow_target = a < 0 ? 0 : a > cfg.conns ? cfg.conns : a;
              grow_conn0 = 0;
              memset(grow_fail0, 0, sizeof grow_fail0);
              for (int i = 0; i < nk; i++) {
                long lo = (long)((double)grow_target * (double)K[i].first / (double)cfg.conns);
                long hi = (long)((double)grow_target * (double)(K[i].first + K[i].count) / (double)cfg.conns);
                char cmd[48];
                snprintf(cmd, sizeof cmd, "grow %ld\n", hi - lo);
                grow_conn0 += K[i].connected;
                for (int f = 0; f < F_NR; f++) grow_fail0[f] += K[i].fail[f];
                if (!K[i].dead) {
                  K[i].ramped = 0;
                  if (write(K[i].cmd, cmd, strlen(cmd)) < 0) K[i].dead = 1;
                }
              }
              growing = 1, halted = 0, t_grow = t;
            } else if (!strcmp(ln, "mark") && cfg.scenario == SC_SERVE) {
              tell_all("mark\n");
            } else if (!strcmp(ln, "deliveries") && cfg.scenario == SC_SERVE && !q_active) {
              memset(&Q, 0, sizeof Q);
              for (int i = 0; i < nk; i++) K[i].q_in = 0;
              tell_all("dreport\n");
              q_active = 1, q_deadline = t + 5000000000ull;
            } else if (!strcmp(ln, "halt")) {
              tell_all("halt\n");
              halted = 1;
            } else if (sscanf(ln, "pub %ld %ld", &a, &b) == 2 && cfg.scenario == SC_HOLD && a > 0 && b >= 0) {
              char cmd[64];
              snprintf(cmd, sizeof cmd, "arm %ld %ld\n", a, b);
              tell_all(cmd);
              for (int i = 0; i < nk; i++) K[i].bc_in = 0;
              A.t_pub = 0;
              bc_m = a, bc_s = b, bc_active = 1, bc_asked = 0;
              bc_deadline = t + (uint64_t)(cfg.timeout * 1e9);
              if (live < 0 || write(K[live].cmd, "pub\n", 4) < 0) {
                printf("{\"event\":\"broadcast\",\"error\":\"no open connection to publish from\"}\n");
                fflush(stdout);
                bc_active = 0;
              }
            } else if (!strncmp(ln, "text ", 5) && strlen(ln + 5) <= 125) {
              char cmd[160];
              snprintf(cmd, sizeof cmd, "text %s\n", ln + 5);
              if (live < 0 || write(K[live].cmd, cmd, strlen(cmd)) < 0) fprintf(stderr, "loadgen: no open connection for \"%s\"\n", ln);
            } else if (!strcmp(ln, "status")) {
              long c = 0, f = 0, o = 0;
              unsigned long long pg = 0, dl = 0;
              for (int i = 0; i < nk; i++) c += K[i].connected, f += K[i].failed, o += K[i].open, pg += K[i].pongs, dl += K[i].deliv;
              printf("{\"event\":\"status\",\"connected\":%ld,\"failed\":%ld,\"open\":%ld,\"pongs\":%llu,\"deliveries\":%llu}\n", c, f,
                     o, pg, dl);
              fflush(stdout);
            } else if (*ln) fprintf(stderr, "loadgen: unknown command \"%s\"\n", ln);
            ln = nl + 1;
          }
          inlen -= (size_t)(ln - inbuf);
          memmove(inbuf, ln, inlen + 1);
          if (!strncmp(inbuf, "stop", 4)) got_stop = 1; /* a "stop" without its newline yet */
          if (inlen >= sizeof inbuf - 1) inlen = 0;
        }
      }
    }
    int all_ramped = 1, all_done = 1, all_fin = 1;
    long conn = 0, fail = 0;
    uint64_t rt = 0, deliv = 0;
    for (int i = 0; i < nk; i++) {
      if (!K[i].dead && !K[i].ramped) all_ramped = 0;
      if (!K[i].dead && !K[i].done) all_done = 0;
      if (!K[i].dead && !K[i].finished) all_fin = 0;
      conn += K[i].connected, fail += K[i].failed, rt += K[i].rt, deliv += K[i].deliv;
    }
    if (all_done) break;
    if (got_stop && ph != PH_STOPPING) {
      ph = PH_STOPPING, t_stop = t, hard = t + 30000000000ull;
      tell_all("stop\n");
    }
    if (ph == PH_RAMP && all_ramped) {
      fprintf(stderr, "READY connected=%ld failed=%ld\n", conn, fail);
      ph = PH_RUN, t_go = t;
      if (cfg.scenario == SC_SUB) {
        tell_all("arm\n");
        if (!K[0].dead) (void)!write(K[0].cmd, "pub\n", 4);
        deadline = t + (uint64_t)(cfg.timeout * 1e9);
      } else {
        tell_all("go\n");
        if (cfg.scenario == SC_ECHO) deadline = t + (uint64_t)((cfg.warmup + cfg.duration) * 1e9);
        else deadline = t + (uint64_t)((cfg.duration > 0 ? cfg.duration : 3600) * 1e9); /* 0: until stop, 1 h at most */
      }
    }
    if (ph == PH_RUN && growing && all_ramped) { /* --stepped: every worker has settled this step */
      long c = 0, f = 0, o = 0, fr[F_NR] = {0};
      for (int i = 0; i < nk; i++) {
        c += K[i].connected, f += K[i].failed, o += K[i].open;
        for (int j = 0; j < F_NR; j++) fr[j] += K[i].fail[j];
      }
      for (int j = 0; j < F_NR; j++) fr[j] -= grow_fail0[j];
      double dt = (double)(t - t_grow) / 1e9;
      printf("{\"event\":\"step\",\"target\":%ld,\"connected\":%ld,\"failed\":%ld,\"open\":%ld,\"step_connected\":%ld,"
             "\"step_s\":%.3f,\"handshakes_per_s\":%.0f,\"halted\":%s,\"step_fail_reasons\":",
             grow_target, c, f, o, c - grow_conn0, dt, dt > 0 ? (double)(c - grow_conn0) / dt : 0, halted ? "true" : "false");
      print_reasons(fr);
      if (cfg.scenario == SC_SERVE) printf(",\"error_codes\":"), print_codes();
      printf("}\n");
      fflush(stdout);
      growing = 0;
    }
    if (ph == PH_RUN && bc_active) { /* hold: a broadcast being counted */
      int all_in = 1;
      for (int i = 0; i < nk; i++)
        if (!K[i].dead && !K[i].bc_in) all_in = 0;
      if (!all_in && !bc_asked && t > bc_deadline) { /* too slow: take the counts as they are */
        tell_all("bcreport\n");
        bc_asked = 1, bc_deadline = t + 5000000000ull;
      }
      if (all_in || (bc_asked && t > bc_deadline)) {
        unsigned long long d = 0, cc = 0, last = 0;
        long e = 0;
        for (int i = 0; i < nk; i++) {
          d += K[i].bc_deliv, cc += K[i].bc_complete, e += K[i].bc_expected;
          if (K[i].bc_last > last) last = K[i].bc_last;
        }
        double span = A.t_pub && last > A.t_pub ? (double)(last - A.t_pub) / 1e9 : 0;
        printf("{\"event\":\"broadcast\",\"messages\":%ld,\"size\":%ld,\"connections\":%ld,\"expected_deliveries\":%llu,"
               "\"deliveries\":%llu,\"complete_conns\":%llu,\"fanout_s\":%.4f,\"deliveries_per_s\":%.0f,\"timed_out\":%s}\n",
               bc_m, bc_s, e, (unsigned long long)e * (unsigned long long)bc_m, d, cc, span, span > 0 ? (double)d / span : 0,
               bc_asked ? "true" : "false");
        fflush(stdout);
        bc_active = 0;
      }
    }
    if (q_active) { /* serve: "deliveries" answered by every live worker (or 5 s passed) */
      int all_in = 1;
      for (int i = 0; i < nk; i++)
        if (!K[i].dead && !K[i].q_in) all_in = 0;
      if (all_in || t > q_deadline) {
        printf("{\"event\":\"deliveries\",\"deliveries\":%llu,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
               "\"untimed\":%llu,\"big\":%llu,\"big_first_ns\":%llu,\"big_last_ns\":%llu,\"other\":%llu,\"complete\":%s}\n",
               (unsigned long long)Q.deliveries, hpct(Q.hist, 0.5) / 1e6, hpct(Q.hist, 0.9) / 1e6, hpct(Q.hist, 0.99) / 1e6,
               hmax(Q.hist) / 1e6, (unsigned long long)Q.untimed, (unsigned long long)Q.big, (unsigned long long)Q.big_first,
               (unsigned long long)Q.big_last, (unsigned long long)Q.other, all_in ? "true" : "false");
        fflush(stdout);
        q_active = 0;
      }
    }
    if (ph == PH_RUN) {
      if (cfg.scenario == SC_ECHO && !marked && t >= t_go + (uint64_t)(cfg.warmup * 1e9)) {
        tell_all("mark\n");
        marked = 1, t_mark = t;
      }
      int end = deadline && t >= deadline;
      if (cfg.scenario == SC_SUB && all_fin) end = 1;
      if (end) {
        ph = PH_STOPPING, t_stop = t, hard = t + 30000000000ull;
        tell_all("stop\n");
      }
    }
    if (t - t0 > hard_total && ph == PH_RAMP) { /* workers bound their ramp; this is a backstop */
      ph = PH_STOPPING, t_stop = t, hard = t + 10000000000ull;
      tell_all("stop\n");
    }
    if (ph == PH_STOPPING && t > hard) {
      fprintf(stderr, "loadgen: workers did not report in time; killing them\n");
      for (int i = 0; i < nk; i++)
        if (!K[i].done) kill(K[i].pid, SIGKILL), K[i].dead = 1;
      break;
    }
    if (!cfg.quiet && t - last_prog >= 1000000000ull) {
      double dt = (double)(t - last_prog) / 1e9;
      if (ph == PH_RAMP)
        fprintf(stderr, "[loadgen] %.0fs connected %ld/%ld failed %ld rate %.0f/s\n", (double)(t - t0) / 1e9, conn,
                cfg.conns, fail, (double)(conn - last_conn) / dt);
      else if (cfg.scenario == SC_ECHO)
        fprintf(stderr, "[loadgen] %.0fs %s msgs/s %.0f\n", (double)(t - t0) / 1e9, marked ? "measuring" : "warmup",
                (double)(rt - last_rt) / dt);
      else if (cfg.scenario == SC_SUB)
        fprintf(stderr, "[loadgen] %.0fs deliveries %lu (%.0f/s)\n", (double)(t - t0) / 1e9, (unsigned long)deliv,
                (double)(deliv - last_deliv) / dt);
      else if (growing)
        fprintf(stderr, "[loadgen] %.0fs connected %ld/%ld failed %ld rate %.0f/s\n", (double)(t - t0) / 1e9, conn,
                grow_target, fail, (double)(conn - last_conn) / dt);
      else
        fprintf(stderr, "[loadgen] %.0fs holding %ld connections\n", (double)(t - t0) / 1e9, conn);
      last_prog = t, last_conn = conn, last_rt = rt, last_deliv = deliv;
    }
  }
  for (int i = 0; i < nk; i++) {
    int st;
    if (K[i].dead && !K[i].done) kill(K[i].pid, SIGKILL);
    waitpid(K[i].pid, &st, 0);
  }
  if (!t_stop) t_stop = now_ns();

  /* ---- one JSON line */
  double ramp_s = A.ramp_end > A.ramp_start ? (double)(A.ramp_end - A.ramp_start) / 1e9 : 0;
  int dead = 0;
  for (int i = 0; i < nk; i++) dead += K[i].dead && !K[i].done;
  printf("{\"scenario\":\"%s\",\"host\":\"%s\",\"port\":%d,\"requested\":%ld,\"connections\":%ld,\"failed\":%ld,"
         "\"fail_reasons\":{",
         sc_names[cfg.scenario], cfg.host, cfg.port, cfg.conns, A.connected, A.failed);
  for (int i = 0, f = 0; i < F_NR; i++)
    if (A.fail[i]) printf("%s\"%s\":%ld", f++ ? "," : "", f_names[i], A.fail[i]);
  printf("},\"workers\":%d,\"dead_workers\":%d,\"src_ips\":%d,\"ramp_s\":%.3f,\"handshakes_per_s\":%.0f,"
         "\"open_at_end\":%ld,\"closed_by_server\":%ld,\"dropped\":%ld,\"protocol_errors\":%llu,\"pongs\":%llu,"
         "\"pong_drops\":%llu,\"unexpected_msgs\":%llu",
         nk, dead, cfg.src_ips, ramp_s, ramp_s > 0 ? (double)A.connected / ramp_s : 0, A.open, A.closed_by_server,
         A.dropped, (unsigned long long)A.proto_err, (unsigned long long)A.pongs, (unsigned long long)A.pong_drops,
         (unsigned long long)A.unexpected);
  if (cfg.scenario == SC_HOLD) printf(",\"held_s\":%.3f", t_go ? (double)(t_stop - t_go) / 1e9 : 0);
  if (cfg.scenario == SC_ECHO) {
    double d = t_mark && t_stop > t_mark ? (double)(t_stop - t_mark) / 1e9 : 0;
    double p50 = hpct(A.hist, 0.50), p90 = hpct(A.hist, 0.90), p99 = hpct(A.hist, 0.99), p999 = hpct(A.hist, 0.999);
    double mx = hmax(A.hist);
    printf(",\"window\":%d,\"size\":%ld,\"opcode\":\"%s\",\"warmup_s\":%.3f,\"duration_s\":%.3f,\"round_trips\":%llu,\"round_trips_total\":%llu,"
           "\"msgs_per_s\":%.0f,\"mb_per_s\":%.2f,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
           "\"max_us\":%.1f,\"verify\":%s,\"verify_errors\":%llu,\"oversize\":%llu",
           cfg.window, cfg.size, cfg.text ? "text" : "binary", cfg.warmup, d, (unsigned long long)A.rt,
           (unsigned long long)A.rt_all,
           d > 0 ? (double)A.rt / d : 0, d > 0 ? (double)A.bytes / d / 1e6 : 0, p50 / 1e3, p90 / 1e3, p99 / 1e3,
           p999 / 1e3, mx / 1e3, cfg.verify ? "true" : "false", (unsigned long long)A.verify_err,
           (unsigned long long)A.oversize);
  }
  if (cfg.scenario == SC_SUB) {
    double span = A.t_pub && A.last_delivery > A.t_pub ? (double)(A.last_delivery - A.t_pub) / 1e9 : 0;
    printf(",\"topics\":%ld", cfg.topics);
    printf(",\"messages\":%ld,\"size\":%ld,\"deliveries\":%llu,\"expected_deliveries\":%llu,\"complete_conns\":%llu,"
           "\"fanout_s\":%.4f,\"deliveries_per_s\":%.0f,\"verify_errors\":%llu,\"oversize\":%llu",
           cfg.messages, cfg.size, (unsigned long long)A.deliveries,
           (unsigned long long)((uint64_t)A.connected * (uint64_t)cfg.messages), (unsigned long long)A.complete, span,
           span > 0 ? (double)A.deliveries / span : 0, (unsigned long long)A.verify_err,
           (unsigned long long)A.oversize);
  }
  if (cfg.scenario == SC_SERVE) {
    printf(",\"rooms\":%ld,\"big_room\":%ld,\"error_codes\":", cfg.rooms, cfg.big_room);
    print_codes();
    printf(",\"deliveries\":%llu,\"p50_ms\":%.3f,\"p99_ms\":%.3f", (unsigned long long)A.deliveries, hpct(A.hist, 0.5) / 1e6,
           hpct(A.hist, 0.99) / 1e6);
  }
  printf("}\n");
  fflush(stdout);
  return A.connected > 0 && !dead ? 0 : 1;
}
