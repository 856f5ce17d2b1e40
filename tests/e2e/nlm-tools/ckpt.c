/*
 * ckpt: a checkpoint writer for the failover end-to-end test (tests/e2e/nlm-kclient.sh
 * --cluster, scenario w). Built statically on the host and copied into the kclient VM.
 *
 *   ckpt write FILE MIB [options]   writes MIB MiB in 1 MiB write(2)s, a known pattern
 *   ckpt verify FILE MIB            reads the file back and checks every byte of the pattern
 *
 * write options:
 *   --fsync-every N    fsync after every N MiB (and always at the end)
 *   --lock             take an fcntl write lock on the whole file first (F_SETLKW), keep it
 *                      until the end
 *   --signal-at N PATH write "<ns> <pid>" to PATH once N MiB were written
 *   --hold-until PATH  after the last fsync, keep the lock until PATH exists (max 300 s)
 *   --release-signal PATH  write PATH just before the unlock
 *
 * Output (stdout, unbuffered): "LOCKED", "WROTE mib=N max_gap_ms=G gap_at_mib=M total_ms=T",
 * "RELEASED", "VERIFY_OK" or "VERIFY_BAD offset=O", "ERROR what errno=E". A failed write,
 * fsync, lock or unlock exits 1; a bad pattern exits 3; usage errors exit 2.
 * The gap is the longest time between two completed writes (fsyncs included): the stall a
 * failover caused.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024 * 1024)

static long long mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void signal_file(const char *path) {
  char tmp[4096];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) return;
  fprintf(f, "%lld %d\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec, (int)getpid());
  fclose(f);
  rename(tmp, path);
}

/* Block i of the file: 8-byte words, each (i << 32 | word index) ^ a constant. */
static void fill(uint64_t *buf, uint64_t block) {
  for (uint64_t w = 0; w < MIB / 8; w++) buf[w] = ((block << 32) | w) ^ 0x5a5aa5a5c3c33c3cULL;
}

static int fail(const char *what) {
  printf("ERROR %s errno=%d (%s)\n", what, errno, strerror(errno));
  return 1;
}

static int do_write(const char *file, long mib, int argc, char **argv) {
  long fsync_every = 0, signal_at = -1;
  const char *signal_path = NULL, *hold_until = NULL, *release_signal = NULL;
  int lock = 0;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--fsync-every") && i + 1 < argc) fsync_every = atol(argv[++i]);
    else if (!strcmp(argv[i], "--lock")) lock = 1;
    else if (!strcmp(argv[i], "--signal-at") && i + 2 < argc) {
      signal_at = atol(argv[++i]);
      signal_path = argv[++i];
    } else if (!strcmp(argv[i], "--hold-until") && i + 1 < argc) hold_until = argv[++i];
    else if (!strcmp(argv[i], "--release-signal") && i + 1 < argc) release_signal = argv[++i];
    else {
      fprintf(stderr, "ckpt: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  int fd = open(file, O_CREAT | O_TRUNC | O_WRONLY, 0644);
  if (fd < 0) return fail("open");
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  if (lock) {
    if (fcntl(fd, F_SETLKW, &fl) < 0) return fail("lock");
    printf("LOCKED\n");
  }
  uint64_t *buf = aligned_alloc(4096, MIB);
  if (!buf) return fail("alloc");
  long long start = mono_ms(), last = start, max_gap = 0;
  long gap_at = 0;
  for (long i = 0; i < mib; i++) {
    fill(buf, (uint64_t)i);
    size_t done = 0;
    while (done < MIB) {
      ssize_t n = write(fd, (char *)buf + done, MIB - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        printf("at mib=%ld\n", i);
        return fail("write");
      }
      done += (size_t)n;
    }
    if (fsync_every > 0 && (i + 1) % fsync_every == 0 && fsync(fd) < 0) {
      printf("at mib=%ld\n", i);
      return fail("fsync");
    }
    long long t = mono_ms();
    if (t - last > max_gap) {
      max_gap = t - last;
      gap_at = i;
    }
    last = t;
    if (signal_path && i + 1 == signal_at) signal_file(signal_path);
  }
  if (fsync(fd) < 0) return fail("final fsync");
  long long t = mono_ms();
  if (t - last > max_gap) {
    max_gap = t - last;
    gap_at = mib;
  }
  printf("WROTE mib=%ld max_gap_ms=%lld gap_at_mib=%ld total_ms=%lld\n", mib, max_gap, gap_at,
         t - start);
  if (hold_until) {
    for (int w = 0; w < 6000 && access(hold_until, F_OK) != 0; w++) usleep(50000);
  }
  if (lock) {
    if (release_signal) signal_file(release_signal);
    fl.l_type = F_UNLCK;
    if (fcntl(fd, F_SETLK, &fl) < 0) return fail("unlock");
    printf("RELEASED\n");
  }
  if (close(fd) < 0) return fail("close");
  return 0;
}

static int do_verify(const char *file, long mib) {
  int fd = open(file, O_RDONLY);
  if (fd < 0) return fail("open");
  uint64_t *want = aligned_alloc(4096, MIB), *got = aligned_alloc(4096, MIB);
  if (!want || !got) return fail("alloc");
  for (long i = 0; i < mib; i++) {
    fill(want, (uint64_t)i);
    size_t done = 0;
    while (done < MIB) {
      ssize_t n = read(fd, (char *)got + done, MIB - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return fail("read");
      }
      if (n == 0) {
        printf("VERIFY_BAD offset=%ld (short file)\n", i * (long)MIB + (long)done);
        return 3;
      }
      done += (size_t)n;
    }
    if (memcmp(want, got, MIB) != 0) {
      long w = 0;
      while (want[w] == got[w]) w++;
      printf("VERIFY_BAD offset=%ld\n", i * (long)MIB + w * 8);
      return 3;
    }
  }
  char extra;
  if (read(fd, &extra, 1) != 0) {
    printf("VERIFY_BAD offset=%ld (longer than %ld MiB)\n", mib * (long)MIB, mib);
    return 3;
  }
  printf("VERIFY_OK mib=%ld\n", mib);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc < 4) {
    fprintf(stderr, "usage: ckpt write|verify FILE MIB [options]\n");
    return 2;
  }
  long mib = atol(argv[3]);
  if (mib <= 0) return 2;
  if (!strcmp(argv[1], "write")) return do_write(argv[2], mib, argc - 4, argv + 4);
  if (!strcmp(argv[1], "verify")) return do_verify(argv[2], mib);
  fprintf(stderr, "ckpt: write or verify\n");
  return 2;
}
