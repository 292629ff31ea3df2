/*
 * C reference for the micro-benchmarks: what the machine does for unmasking and copying when
 * no JavaScript is involved. run.mjs builds it with the system compiler:
 *
 *   gcc -O2 -o native-bench/build/cref native-bench/micro/cref.c
 *   native-bench/build/cref [--quick]
 *
 * Two loops over the same sizes as frames.mjs (2 B ... 1 MiB), each on a 64-byte aligned
 * buffer that stays in place (so, like the JS figures, the data is cache-warm):
 *   unmask  RFC 6455 5.3 XOR with a 4-byte key, 8 bytes at a time in the middle and byte by
 *           byte at the edges: the same shape as murmur's mask.ts and gobwas/ws's cipher.
 *           Plain C at -O2: no intrinsics (gcc may or may not vectorise it; that is the point
 *           of a "plain C" reference).
 *   memcpy  glibc memcpy (SIMD), the ceiling for touching every byte once.
 *
 * Each figure is the median of 31 samples; a sample repeats the operation until it has taken
 * at least 1 ms (0.2 ms with --quick). Output: one JSON object per line on stdout,
 * {"op":"unmask","bytes":N,"ns_per_op":T,"bytes_per_s":B,"samples":31}.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SAMPLES 31

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Keeps the compiler from dropping or merging repeated calls: buf may have been read. */
static inline void clobber(void *p) { __asm__ volatile("" : : "g"(p) : "memory"); }

/* XOR buf[0..n) with key (key byte i & 3 on byte i). noinline: one call per operation, as in JS. */
__attribute__((noinline)) static void unmask(uint8_t *buf, size_t n, const uint8_t key[4]) {
  size_t i = 0;
  /* Bytes up to 8-byte alignment (rotating the key accordingly). */
  while (i < n && ((uintptr_t)(buf + i) & 7) != 0) {
    buf[i] ^= key[i & 3];
    i++;
  }
  if (n - i >= 8) {
    uint8_t k8[8];
    for (int j = 0; j < 8; j++) k8[j] = key[(i + j) & 3];
    uint64_t k;
    memcpy(&k, k8, 8);
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      memcpy(&w, buf + i, 8);
      w ^= k;
      memcpy(buf + i, &w, 8);
    }
  }
  for (; i < n; i++) buf[i] ^= key[i & 3];
}

__attribute__((noinline)) static void copy(uint8_t *dst, const uint8_t *src, size_t n) { memcpy(dst, src, n); }

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median ns per operation of op(kind) on n bytes. */
static double bench(int kind, uint8_t *a, uint8_t *b, size_t n, double sample_ns) {
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  double samples[SAMPLES];
  /* Calibrate: how many repetitions fill one sample. */
  long reps = 1;
  for (;;) {
    double t0 = now_ns();
    for (long r = 0; r < reps; r++) {
      if (kind == 0) unmask(a, n, key);
      else copy(b, a, n);
      clobber(a);
      clobber(b);
    }
    double el = now_ns() - t0;
    if (el >= sample_ns) break;
    reps = el <= 0 ? reps * 10 : (long)(reps * (sample_ns * 1.2 / el)) + 1;
  }
  for (int s = 0; s < SAMPLES; s++) {
    double t0 = now_ns();
    for (long r = 0; r < reps; r++) {
      if (kind == 0) unmask(a, n, key);
      else copy(b, a, n);
      clobber(a);
      clobber(b);
    }
    samples[s] = (now_ns() - t0) / (double)reps;
  }
  qsort(samples, SAMPLES, sizeof samples[0], cmp_double);
  return samples[SAMPLES / 2];
}

/* The naive reference the optimised loop must match, at every size and alignment tried. */
static int self_check(void) {
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  uint8_t x[300], y[300];
  for (size_t off = 0; off < 8; off++) {
    for (size_t n = 0; n + off <= 280; n += 7) {
      for (size_t i = 0; i < sizeof x; i++) x[i] = y[i] = (uint8_t)(i * 131 + 7);
      unmask(x + off, n, key);
      for (size_t i = 0; i < n; i++) y[off + i] ^= key[i & 3];
      if (memcmp(x, y, sizeof x) != 0) return 0;
    }
  }
  return 1;
}

int main(int argc, char **argv) {
  int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
  double sample_ns = quick ? 0.2e6 : 1e6;
  static const size_t sizes[] = {2, 20, 125, 1024, 16384, 65536, 1048576};
  const size_t max = 1048576;
  if (!self_check()) {
    fprintf(stderr, "cref: unmask self-check failed\n");
    return 1;
  }
  uint8_t *a = aligned_alloc(64, max);
  uint8_t *b = aligned_alloc(64, max);
  if (a == NULL || b == NULL) return 1;
  for (size_t i = 0; i < max; i++) a[i] = b[i] = (uint8_t)(i * 131 + 7);
  const char *names[] = {"unmask", "memcpy"};
  for (int kind = 0; kind < 2; kind++) {
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
      size_t n = sizes[s];
      double ns = bench(kind, a, b, n, sample_ns);
      printf("{\"op\":\"%s\",\"bytes\":%zu,\"ns_per_op\":%.3f,\"bytes_per_s\":%.0f,\"samples\":%d}\n", names[kind], n, ns,
             (double)n / ns * 1e9, SAMPLES);
    }
  }
  free(a);
  free(b);
  return 0;
}
