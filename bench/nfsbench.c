/* nfsbench: the small libnfs (userspace NFSv3) helpers that fio's nfs engine cannot do.
 * Built by bench/run.sh with: gcc -O2 -o nfsbench nfsbench.c -lnfs
 *
 *   nfsbench meta   URL N       create N empty files in a fresh directory, stat each, remove each;
 *                               one synchronous call at a time (latency-bound). Prints JSON.
 *   nfsbench commit URL FILE... open each file and send COMMIT (nfs_fsync). Prints JSON.
 *   nfsbench memcpy MIB         memcpy of a 64 MiB buffer until MIB MiB were copied. Prints JSON.
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

static int meta(const char *url, int n) {
  struct nfs_context *nfs = connect_url(url);
  char dir[64], path[128];
  snprintf(dir, sizeof dir, "/meta.%d", (int)getpid());
  if (nfs_mkdir(nfs, dir) != 0) {
    fprintf(stderr, "nfsbench: mkdir %s: %s\n", dir, nfs_get_error(nfs));
    return 2;
  }
  long errs[3] = {0, 0, 0};
  double t[4];
  t[0] = now();
  for (int i = 0; i < n; i++) {
    struct nfsfh *fh;
    snprintf(path, sizeof path, "%s/f%06d", dir, i);
    if (nfs_creat(nfs, path, 0644, &fh) != 0) {
      if (errs[0]++ < 3) fprintf(stderr, "nfsbench: create %s: %s\n", path, nfs_get_error(nfs));
      continue;
    }
    nfs_close(nfs, fh);
  }
  t[1] = now();
  for (int i = 0; i < n; i++) {
    struct nfs_stat_64 st;
    snprintf(path, sizeof path, "%s/f%06d", dir, i);
    if (nfs_stat64(nfs, path, &st) != 0 && errs[1]++ < 3)
      fprintf(stderr, "nfsbench: stat %s: %s\n", path, nfs_get_error(nfs));
  }
  t[2] = now();
  for (int i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/f%06d", dir, i);
    if (nfs_unlink(nfs, path) != 0 && errs[2]++ < 3)
      fprintf(stderr, "nfsbench: remove %s: %s\n", path, nfs_get_error(nfs));
  }
  t[3] = now();
  if (nfs_rmdir(nfs, dir) != 0)
    fprintf(stderr, "nfsbench: rmdir %s: %s\n", dir, nfs_get_error(nfs));
  printf("{\"n\":%d,\"create_s\":%.6f,\"stat_s\":%.6f,\"remove_s\":%.6f,"
         "\"create_err\":%ld,\"stat_err\":%ld,\"remove_err\":%ld}\n",
         n, t[1] - t[0], t[2] - t[1], t[3] - t[2], errs[0], errs[1], errs[2]);
  nfs_destroy_context(nfs); /* no nfs_umount(): libnfs 4.0 can hang in it (see README) */
  return (errs[0] || errs[1] || errs[2]) ? 1 : 0;
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

int main(int argc, char **argv) {
  if (argc >= 4 && !strcmp(argv[1], "meta")) return meta(argv[2], atoi(argv[3]));
  if (argc >= 4 && !strcmp(argv[1], "commit")) return commit(argv[2], argc - 3, argv + 3);
  if (argc >= 3 && !strcmp(argv[1], "memcpy")) return mcopy(atol(argv[2]));
  fprintf(stderr, "usage: nfsbench meta URL N | commit URL FILE... | memcpy MIB\n");
  return 2;
}
