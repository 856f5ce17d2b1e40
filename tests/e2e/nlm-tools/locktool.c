/*
 * locktool: fcntl(2) byte-range locks for the NLM end-to-end test (tests/e2e/nlm-kclient.sh).
 * Built statically on the host and copied into the kclient VM.
 *
 *   locktool FILE {r|w} START LEN {try|wait} HOLD_SECONDS [options]
 *
 *   r|w        F_RDLCK or F_WRLCK            START LEN   l_start, l_len (LEN 0 = to EOF)
 *   try|wait   F_SETLK (non-blocking) or F_SETLKW (blocking)
 *   HOLD       seconds to hold the lock once granted (0 = release at once)
 *
 * Options:
 *   --signal PATH      once granted, write "<ns since epoch> <pid>" to PATH (atomically: tmp+rename)
 *   --until PATH       hold until PATH exists (polled every 50 ms); HOLD is then the maximum
 *   --after-until S    with --until: hold S more seconds after PATH appeared (fractions allowed)
 *   --release-signal PATH  write PATH just BEFORE the unlock (so anyone granted later must see it)
 *   --require PATH     once granted, PATH must already exist, else print ORDER_VIOLATION, exit 5
 *   --pre-signal PATH  write PATH just before the lock call (e.g. "about to block")
 *
 * Output (one line each, stdout, unbuffered): "GRANTED t=NS waited_ms=N", or
 * "DENIED errno=EAGAIN|EACCES|... waited_ms=N" (exit 1), "ORDER_OK"/"ORDER_VIOLATION",
 * "RELEASED t=NS held_ms=N". Other failures exit 2 (open), 3 (unlock), 4 (--until timeout).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static int exists(const char *p) { return access(p, F_OK) == 0; }

static void write_signal(const char *path) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) { fprintf(stderr, "locktool: cannot write %s: %s\n", tmp, strerror(errno)); return; }
  fprintf(f, "%lld %d\n", now_ns(), (int)getpid());
  fflush(f);
  fsync(fileno(f));
  fclose(f);
  if (rename(tmp, path) != 0) fprintf(stderr, "locktool: rename %s: %s\n", path, strerror(errno));
}

static const char *errname(int e) {
  switch (e) {
  case EAGAIN: return "EAGAIN";
#if EACCES != EAGAIN
  case EACCES: return "EACCES";
#endif
  case EINTR: return "EINTR";
  case ENOLCK: return "ENOLCK";
  case EDEADLK: return "EDEADLK";
  case EIO: return "EIO";
  case EBADF: return "EBADF";
  case EINVAL: return "EINVAL";
  default: return "OTHER";
  }
}

static void usage(void) {
  fprintf(stderr, "usage: locktool FILE {r|w} START LEN {try|wait} HOLD_SECONDS [--signal PATH] [--until PATH]\n"
                  "       [--after-until SECONDS] [--release-signal PATH] [--require PATH] [--pre-signal PATH]\n");
  exit(64);
}

int main(int argc, char **argv) {
  if (argc < 7) usage();
  setvbuf(stdout, NULL, _IONBF, 0);
  const char *file = argv[1];
  int write_lock = !strcmp(argv[2], "w");
  if (!write_lock && strcmp(argv[2], "r")) usage();
  long long start = atoll(argv[3]), len = atoll(argv[4]);
  int wait = !strcmp(argv[5], "wait");
  if (!wait && strcmp(argv[5], "try")) usage();
  double hold = atof(argv[6]), after_until = 0;
  const char *sig = NULL, *until = NULL, *relsig = NULL, *require = NULL, *presig = NULL;
  for (int i = 7; i < argc; i++) {
    if (i + 1 >= argc) usage();
    if (!strcmp(argv[i], "--signal")) sig = argv[++i];
    else if (!strcmp(argv[i], "--until")) until = argv[++i];
    else if (!strcmp(argv[i], "--after-until")) after_until = atof(argv[++i]);
    else if (!strcmp(argv[i], "--release-signal")) relsig = argv[++i];
    else if (!strcmp(argv[i], "--require")) require = argv[++i];
    else if (!strcmp(argv[i], "--pre-signal")) presig = argv[++i];
    else usage();
  }

  int fd = open(file, write_lock ? O_RDWR | O_CREAT : O_RDONLY | O_CREAT, 0666);
  if (fd < 0 && !write_lock) fd = open(file, O_RDONLY);
  if (fd < 0) { printf("OPEN_FAILED errno=%s (%s)\n", errname(errno), strerror(errno)); return 2; }

  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = write_lock ? F_WRLCK : F_RDLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = start;
  fl.l_len = len;

  if (presig) write_signal(presig);
  long long t0 = mono_ns();
  int r = fcntl(fd, wait ? F_SETLKW : F_SETLK, &fl);
  long long waited = (mono_ns() - t0) / 1000000;
  if (r != 0) {
    int e = errno;
    printf("DENIED errno=%s (%s) waited_ms=%lld\n", errname(e), strerror(e), waited);
    return 1;
  }
  long long tg = now_ns(), mg = mono_ns();
  printf("GRANTED t=%lld waited_ms=%lld pid=%d\n", tg, waited, (int)getpid());
  int rc = 0;
  if (require) {
    if (exists(require)) printf("ORDER_OK %s existed when the lock was granted\n", require);
    else { printf("ORDER_VIOLATION %s did not exist when the lock was granted\n", require); rc = 5; }
  }
  if (sig) write_signal(sig);

  if (until) {
    long long limit = mg + (long long)(hold * 1e9);
    while (!exists(until) && mono_ns() < limit) sleep_ms(50);
    if (!exists(until)) { printf("UNTIL_TIMEOUT %s\n", until); rc = rc ? rc : 4; }
    else if (after_until > 0) sleep_ms((long)(after_until * 1000));
  } else if (hold > 0) {
    sleep_ms((long)(hold * 1000));
  }

  if (relsig) write_signal(relsig);
  fl.l_type = F_UNLCK;
  if (fcntl(fd, F_SETLK, &fl) != 0) {
    printf("UNLOCK_FAILED errno=%s (%s)\n", errname(errno), strerror(errno));
    return 3;
  }
  printf("RELEASED t=%lld held_ms=%lld\n", now_ns(), (mono_ns() - mg) / 1000000);
  close(fd);
  return rc;
}
