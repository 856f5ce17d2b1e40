/* nfsbench: the small libnfs (userspace NFSv3) helpers that fio's nfs engine cannot do.
 * Built by bench/run.sh with: gcc -O2 -o nfsbench nfsbench.c -lnfs
 *
 *   nfsbench meta   URL N [P]   P clients (processes, default 1), each with its own connection and
 *                               directory: create N empty files, stat each, remove each, one
 *                               synchronous call at a time per client. The phases start together
 *                               (a barrier), and each is timed until its slowest client is done.
 *                               Prints JSON; n is the total, N x P.
 *   nfsbench rtt    URL N       N GETATTRs of the export root, one at a time: the round trip of a
 *                               call that does no work, the floor under every metadata figure.
 *   nfsbench list   URL N       make a directory of N empty files (timed as "fill"), then list it
 *                               with attributes as `ls -l` does (READDIRPLUS, timed as "list"),
 *                               three times. Prints JSON.
 *   nfsbench commit URL FILE... open each file and send COMMIT (nfs_fsync). Prints JSON.
 *   nfsbench memcpy MIB         memcpy of a 64 MiB buffer until MIB MiB were copied. Prints JSON.
 *   nfsbench dataset URL fill|read N KIB P
 *                               a training data set in /dataset: N files of KIB KiB. "fill" writes
 *                               them (each closed after a COMMIT); "read" reads every file whole,
 *                               once (one epoch). P clients (processes, one connection each) take
 *                               every P-th file; timed from a common start until the slowest is
 *                               done. Prints JSON with bytes, seconds and MBps.
 *
 * URL is a libnfs URL of the export, e.g. nfs://127.0.0.1/?version=3&nfsport=2049&mountport=20048
 * Paths (FILE) are relative to the export root. The directory cache is off, so every stat is a
 * LOOKUP + GETATTR on the wire.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <nfsc/libnfs.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static struct nfs_context *connect_url(const char *url) {
  struct nfs_context *nfs = nfs_init_context();
  if (!nfs) { fprintf(stderr, "nfsbench: nfs_init_context failed\n"); exit(2); }
  struct nfs_url *u = nfs_parse_url_dir(nfs, url);
  if (!u) { fprintf(stderr, "nfsbench: bad URL %s: %s\n", url, nfs_get_error(nfs)); exit(2); }
  nfs_set_dircache(nfs, 0);
  if (nfs_mount(nfs, u->server, u->path) != 0) {
    fprintf(stderr, "nfsbench: mount %s failed: %s\n", url, nfs_get_error(nfs));
    exit(2);
  }
  nfs_destroy_url(u);
  return nfs;
}

/* A barrier for `count` processes, in memory the caller shares with its children. */
static void shared_barrier(pthread_barrier_t *bar, int count) {
  pthread_barrierattr_t attr;
  pthread_barrierattr_init(&attr);
  pthread_barrierattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_barrier_init(bar, &attr, count);
}

/* Creates, stats and removes n files in its own directory. With a barrier (several clients),
 * waits on it before each phase and after the last, even after an error, so that the parent's
 * timing never hangs. Returns 0, or 1 after errors. */
static int meta_client(const char *url, int n, pthread_barrier_t *bar, long errs[3]) {
  struct nfs_context *nfs = connect_url(url);
  char dir[64], path[128];
  int ok = 1;
  snprintf(dir, sizeof dir, "/meta.%d", (int)getpid());
  if (nfs_mkdir(nfs, dir) != 0) {
    fprintf(stderr, "nfsbench: mkdir %s: %s\n", dir, nfs_get_error(nfs));
    ok = 0;
    errs[0] = errs[1] = errs[2] = n;
  }
  pthread_barrier_wait(bar);
  for (int i = 0; ok && i < n; i++) {
    struct nfsfh *fh;
    snprintf(path, sizeof path, "%s/f%06d", dir, i);
    if (nfs_creat(nfs, path, 0644, &fh) != 0) {
      if (errs[0]++ < 3) fprintf(stderr, "nfsbench: create %s: %s\n", path, nfs_get_error(nfs));
      continue;
    }
    nfs_close(nfs, fh);
  }
  pthread_barrier_wait(bar);
  for (int i = 0; ok && i < n; i++) {
    struct nfs_stat_64 st;
    snprintf(path, sizeof path, "%s/f%06d", dir, i);
    if (nfs_stat64(nfs, path, &st) != 0 && errs[1]++ < 3)
      fprintf(stderr, "nfsbench: stat %s: %s\n", path, nfs_get_error(nfs));
  }
  pthread_barrier_wait(bar);
  for (int i = 0; ok && i < n; i++) {
    snprintf(path, sizeof path, "%s/f%06d", dir, i);
    if (nfs_unlink(nfs, path) != 0 && errs[2]++ < 3)
      fprintf(stderr, "nfsbench: remove %s: %s\n", path, nfs_get_error(nfs));
  }
  pthread_barrier_wait(bar);
  if (ok && nfs_rmdir(nfs, dir) != 0)
    fprintf(stderr, "nfsbench: rmdir %s: %s\n", dir, nfs_get_error(nfs));
  nfs_destroy_context(nfs); /* no nfs_umount(): libnfs 4.0 can hang in it (see README) */
  return (errs[0] || errs[1] || errs[2]) ? 1 : 0;
}

static int meta(const char *url, int n, int clients) {
  if (n < 1 || clients < 1 || clients > 64) {
    fprintf(stderr, "nfsbench: meta needs N >= 1 and 1 <= P <= 64\n");
    return 2;
  }
  /* Shared with the children: the barrier and each client's error counts. */
  struct shared {
    pthread_barrier_t bar;
    long errs[64][3];
  } *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED) return 2;
  memset(sh, 0, sizeof *sh);
  shared_barrier(&sh->bar, clients + 1);
  alarm(3600); /* a client that dies leaves the others at a barrier: end rather than hang */
  for (int c = 0; c < clients; c++) {
    pid_t pid = fork();
    if (pid < 0) { perror("nfsbench: fork"); return 2; }
    if (pid == 0) { alarm(3600); _exit(meta_client(url, n, &sh->bar, sh->errs[c])); }
  }
  double t[4];
  pthread_barrier_wait(&sh->bar);
  t[0] = now();
  pthread_barrier_wait(&sh->bar);
  t[1] = now();
  pthread_barrier_wait(&sh->bar);
  t[2] = now();
  pthread_barrier_wait(&sh->bar);
  t[3] = now();
  int failed = 0;
  for (int c = 0; c < clients; c++) {
    int st;
    if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) failed = 1;
  }
  long errs[3] = {0, 0, 0};
  for (int c = 0; c < clients; c++)
    for (int k = 0; k < 3; k++) errs[k] += sh->errs[c][k];
  printf("{\"n\":%d,\"clients\":%d,\"create_s\":%.6f,\"stat_s\":%.6f,\"remove_s\":%.6f,"
         "\"create_err\":%ld,\"stat_err\":%ld,\"remove_err\":%ld}\n",
         n * clients, clients, t[1] - t[0], t[2] - t[1], t[3] - t[2], errs[0], errs[1], errs[2]);
  return failed || errs[0] || errs[1] || errs[2] ? 1 : 0;
}

static int rtt(const char *url, int n) {
  struct nfs_context *nfs = connect_url(url);
  struct nfs_stat_64 st;
  int errs = 0;
  double t0 = now();
  for (int i = 0; i < n; i++)
    if (nfs_stat64(nfs, "/", &st) != 0 && errs++ < 3)
      fprintf(stderr, "nfsbench: getattr /: %s\n", nfs_get_error(nfs));
  double s = now() - t0;
  printf("{\"n\":%d,\"seconds\":%.6f,\"ops_per_s\":%.1f,\"errors\":%d}\n", n, s, n / s, errs);
  nfs_destroy_context(nfs);
  return errs ? 1 : 0;
}

static int list(const char *url, int n) {
  struct nfs_context *nfs = connect_url(url);
  char dir[64], path[128];
  snprintf(dir, sizeof dir, "/list.%d", (int)getpid());
  if (nfs_mkdir(nfs, dir) != 0) {
    fprintf(stderr, "nfsbench: mkdir %s: %s\n", dir, nfs_get_error(nfs));
    return 2;
  }
  int errs = 0;
  double t0 = now();
  for (int i = 0; i < n; i++) {
    struct nfsfh *fh;
    snprintf(path, sizeof path, "%s/f%06d", dir, i);
    if (nfs_creat(nfs, path, 0644, &fh) != 0) {
      if (errs++ < 3) fprintf(stderr, "nfsbench: create %s: %s\n", path, nfs_get_error(nfs));
      continue;
    }
    nfs_close(nfs, fh);
  }
  double fill = now() - t0, best = 0, total = 0;
  long seen = 0;
  for (int round = 0; round < 3; round++) {
    struct nfsdir *d;
    double t = now();
    if (nfs_opendir(nfs, dir, &d) != 0) {
      fprintf(stderr, "nfsbench: opendir %s: %s\n", dir, nfs_get_error(nfs));
      errs++;
      break;
    }
    long entries = 0;
    struct nfsdirent *e;
    while ((e = nfs_readdir(nfs, d)) != NULL)
      if (strcmp(e->name, ".") && strcmp(e->name, "..")) entries++;
    nfs_closedir(nfs, d);
    t = now() - t;
    total += t;
    if (best == 0 || t < best) best = t;
    if (entries != n - errs && errs++ < 3)
      fprintf(stderr, "nfsbench: listed %ld entries of %d\n", entries, n);
    seen = entries;
  }
  /* Clean up untimed, so that the next workload starts from an empty export. */
  for (int i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/f%06d", dir, i);
    nfs_unlink(nfs, path);
  }
  nfs_rmdir(nfs, dir);
  printf("{\"n\":%d,\"fill_s\":%.6f,\"list_best_s\":%.6f,\"list_mean_s\":%.6f,"
         "\"entries\":%ld,\"errors\":%d}\n", n, fill, best, total / 3, seen, errs);
  nfs_destroy_context(nfs);
  return errs ? 1 : 0;
}

static int commit(const char *url, int nfiles, char **files) {
  struct nfs_context *nfs = connect_url(url);
  int errs = 0;
  double t0 = now();
  for (int i = 0; i < nfiles; i++) {
    struct nfsfh *fh;
    char path[512];
    snprintf(path, sizeof path, "%s%s", files[i][0] == '/' ? "" : "/", files[i]);
    if (nfs_open(nfs, path, O_WRONLY, &fh) != 0) {
      fprintf(stderr, "nfsbench: open %s: %s\n", path, nfs_get_error(nfs));
      errs++;
      continue;
    }
    if (nfs_fsync(nfs, fh) != 0) {
      fprintf(stderr, "nfsbench: commit %s: %s\n", path, nfs_get_error(nfs));
      errs++;
    }
    nfs_close(nfs, fh);
  }
  printf("{\"files\":%d,\"commit_s\":%.6f,\"errors\":%d}\n", nfiles, now() - t0, errs);
  nfs_destroy_context(nfs); /* no nfs_umount(): libnfs 4.0 can hang in it (see README) */
  return errs ? 1 : 0;
}

static int mcopy(long mib) {
  size_t sz = 64u << 20;
  char *a = malloc(sz), *b = malloc(sz);
  if (!a || !b) return 2;
  memset(a, 1, sz);
  memset(b, 2, sz);
  long rounds = mib / 64 > 0 ? mib / 64 : 1;
  double t0 = now();
  for (long r = 0; r < rounds; r++) {
    memcpy((r & 1) ? a : b, (r & 1) ? b : a, sz);
    __asm__ volatile("" ::: "memory");
  }
  double s = now() - t0;
  printf("{\"bytes\":%ld,\"seconds\":%.6f,\"MBps\":%.1f}\n", rounds * (long)sz, s,
         rounds * (double)sz / s / 1e6);
  return 0;
}

/* One client's share of a data-set pass: files c, c+P, c+2P, ... Returns errors. */
static long dataset_client(const char *url, int fill, int n, int kib, int c, int p,
                           pthread_barrier_t *bar) {
  struct nfs_context *nfs = connect_url(url);
  size_t size = (size_t)kib << 10;
  char *buf = malloc(size), path[128];
  long errs = 0;
  if (!buf) exit(2);
  for (size_t i = 0; i < size; i++) buf[i] = (char)(i * 31 + c);
  pthread_barrier_wait(bar);
  for (int i = c; i < n; i += p) {
    struct nfsfh *fh;
    snprintf(path, sizeof path, "/dataset/f%06d", i);
    if ((fill ? nfs_creat(nfs, path, 0644, &fh) : nfs_open(nfs, path, O_RDONLY, &fh)) != 0) {
      if (errs++ < 3) fprintf(stderr, "nfsbench: open %s: %s\n", path, nfs_get_error(nfs));
      continue;
    }
    size_t done = 0;
    while (done < size) {
      int got = fill ? nfs_write(nfs, fh, size - done, buf + done)
                     : nfs_read(nfs, fh, size - done, buf + done);
      if (got <= 0) {
        if (errs++ < 3) fprintf(stderr, "nfsbench: %s %s: %s\n", fill ? "write" : "read", path,
                                got < 0 ? nfs_get_error(nfs) : "short file");
        break;
      }
      done += (size_t)got;
    }
    if (fill && nfs_fsync(nfs, fh) != 0 && errs++ < 3)
      fprintf(stderr, "nfsbench: commit %s: %s\n", path, nfs_get_error(nfs));
    nfs_close(nfs, fh);
  }
  pthread_barrier_wait(bar);
  free(buf);
  nfs_destroy_context(nfs);
  return errs;
}

static int dataset(const char *url, const char *what, int n, int kib, int clients) {
  int fill = !strcmp(what, "fill");
  if ((!fill && strcmp(what, "read")) || n < 1 || kib < 1 || kib > 65536 || clients < 1 ||
      clients > 64) {
    fprintf(stderr, "nfsbench: dataset needs fill|read, N >= 1, 1 <= KIB <= 65536, 1 <= P <= 64\n");
    return 2;
  }
  if (fill) {
    struct nfs_context *nfs = connect_url(url);
    if (nfs_mkdir(nfs, "/dataset") != 0)
      fprintf(stderr, "nfsbench: mkdir /dataset: %s (going on)\n", nfs_get_error(nfs));
    nfs_destroy_context(nfs);
  }
  struct shared {
    pthread_barrier_t bar;
    long errs[64];
  } *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED) return 2;
  memset(sh, 0, sizeof *sh);
  shared_barrier(&sh->bar, clients + 1);
  alarm(3600);
  for (int c = 0; c < clients; c++) {
    pid_t pid = fork();
    if (pid < 0) { perror("nfsbench: fork"); return 2; }
    if (pid == 0) {
      alarm(3600);
      sh->errs[c] = dataset_client(url, fill, n, kib, c, clients, &sh->bar);
      _exit(sh->errs[c] ? 1 : 0);
    }
  }
  pthread_barrier_wait(&sh->bar);
  double t0 = now();
  pthread_barrier_wait(&sh->bar);
  double secs = now() - t0;
  int failed = 0;
  long errs = 0;
  for (int c = 0; c < clients; c++) {
    int st;
    if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) failed = 1;
    errs += sh->errs[c];
  }
  double bytes = (double)n * ((double)kib * 1024);
  printf("{\"n\":%d,\"kib\":%d,\"clients\":%d,\"phase\":\"%s\",\"bytes\":%.0f,\"seconds\":%.6f,"
         "\"MBps\":%.1f,\"files_per_s\":%.1f,\"errors\":%ld}\n",
         n, kib, clients, what, bytes, secs, bytes / secs / 1e6, n / secs, errs);
  return failed || errs ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc >= 4 && !strcmp(argv[1], "meta"))
    return meta(argv[2], atoi(argv[3]), argc >= 5 ? atoi(argv[4]) : 1);
  if (argc >= 4 && !strcmp(argv[1], "rtt")) return rtt(argv[2], atoi(argv[3]));
  if (argc >= 4 && !strcmp(argv[1], "list")) return list(argv[2], atoi(argv[3]));
  if (argc >= 4 && !strcmp(argv[1], "commit")) return commit(argv[2], argc - 3, argv + 3);
  if (argc >= 3 && !strcmp(argv[1], "memcpy")) return mcopy(atol(argv[2]));
  if (argc >= 7 && !strcmp(argv[1], "dataset"))
    return dataset(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
  fprintf(stderr, "usage: nfsbench meta URL N [P] | rtt URL N | list URL N | commit URL FILE... | "
                  "memcpy MIB | dataset URL fill|read N KIB P\n");
  return 2;
}
