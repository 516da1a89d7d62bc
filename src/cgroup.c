/* A cgroup v2 per local service (see cgroup.h). */
#include "herd/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The cgroup2 mount point, from /proc/self/mountinfo (malloc'd), or NULL. */
static char *cg_mount(void) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f) return NULL;
  char line[4096], *found = NULL;
  while (!found && fgets(line, sizeof line, f)) {
    /* id parent major:minor root mountpoint options... - fstype source superoptions */
    char *sep = strstr(line, " - ");
    if (!sep || strncmp(sep + 3, "cgroup2 ", 8)) continue;
    char *p = line;
    for (int i = 0; i < 4 && p; i++) p = strchr(p, ' ') ? strchr(p, ' ') + 1 : NULL;
    if (!p) continue;
    char *end = strchr(p, ' ');
    if (end) found = strndup(p, (size_t)(end - p));
  }
  fclose(f);
  return found;
}

/* herd's own cgroup v2 path ("/..." from the "0::" line of /proc/self/cgroup), or NULL. */
static char *cg_self(void) {
  FILE *f = fopen("/proc/self/cgroup", "re");
  if (!f) return NULL;
  char line[4096], *found = NULL;
  while (!found && fgets(line, sizeof line, f)) {
    if (strncmp(line, "0::", 3)) continue;
    line[strcspn(line, "\n")] = '\0';
    found = xstrdup(line + 3);
  }
  fclose(f);
  return found;
}

static bool is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *cg_root(const char *stored, const char *herd_id, char *whybuf, size_t whylen) {
  char *probe;
  if (stored && is_dir(stored)) {
    probe = xasprintf("%s/cgroup.procs", stored);
    bool ok = access(probe, W_OK) == 0;
    free(probe);
    if (ok) return xstrdup(stored);
  }
  char *mnt = cg_mount(), *self = cg_self();
  char *root = NULL;
  if (!mnt) {
    snprintf(whybuf, whylen, "no cgroup2 file system is mounted");
  } else if (!self) {
    snprintf(whybuf, whylen, "herd's own cgroup (v2) is unknown (/proc/self/cgroup)");
  } else {
    const char *rel = strcmp(self, "/") ? self : "";
    /* A deleted cgroup (" (deleted)") or one we cannot see into is no place to build. */
    root = xasprintf("%s%s/herd-%s", mnt, rel, herd_id);
    if (mkdir(root, 0755) < 0 && errno != EEXIST) {
      snprintf(whybuf, whylen, "cannot make %s: %s (under systemd: Delegate=yes)", root, strerror(errno));
      free(root);
      root = NULL;
    } else {
      probe = xasprintf("%s/cgroup.kill", root);
      bool can_kill = access(probe, W_OK) == 0;
      free(probe);
      if (!can_kill) {
        snprintf(whybuf, whylen, "%s has no writable cgroup.kill (a kernel before 5.14?)", root);
        rmdir(root);
        free(root);
        root = NULL;
      }
    }
  }
  free(mnt);
  free(self);
  return root;
}

char *cg_service_path(const char *root, const char *name) { return xasprintf("%s/svc-%s", root, name); }

int cg_make(const char *path) { return mkdir(path, 0755) < 0 && errno != EEXIST ? -errno : 0; }

static int write_file(const char *dir, const char *file, const char *text) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n = write(fd, text, strlen(text));
  int rc = n < 0 ? -errno : 0;
  close(fd);
  return rc;
}

int cg_attach(const char *path, int pid) {
  char num[24];
  snprintf(num, sizeof num, "%d", pid);
  return write_file(path, "cgroup.procs", num);
}

/* Call fn for each pid in the cgroup; returns how many or -errno. */
static int each_pid(const char *path, void (*fn)(int pid, void *arg), void *arg) {
  char p[4096];
  snprintf(p, sizeof p, "%s/cgroup.procs", path);
  FILE *f = fopen(p, "re");
  if (!f) return errno == ENOENT ? 0 : -errno;
  int n = 0, pid;
  while (fscanf(f, "%d", &pid) == 1) {
    if (fn) fn(pid, arg);
    n++;
  }
  fclose(f);
  return n;
}

static void send_sig(int pid, void *arg) { kill(pid, *(int *)arg); }

int cg_signal(const char *path, int sig) {
  if (sig != SIGKILL) return each_pid(path, send_sig, &sig);
  int n = each_pid(path, NULL, NULL);
  if (n > 0) {
    int rc = write_file(path, "cgroup.kill", "1");
    if (rc < 0) return rc;
  }
  return n;
}

struct first_arg {
  int except, first;
};

static void note_first(int pid, void *arg) {
  struct first_arg *a = arg;
  if (pid != a->except && (!a->first || pid < a->first)) a->first = pid;
}

int cg_count(const char *path, int except, int *first) {
  struct first_arg a = {.except = except};
  int n = each_pid(path, note_first, &a);
  if (first) *first = a.first;
  return n < 0 ? 0 : n;
}

int cg_remove(const char *path) { return rmdir(path) < 0 && errno != ENOENT ? -errno : 0; }

int cg_sweep(const char *root, bool (*keep)(void *arg, const char *name), void *arg) {
  DIR *dir = opendir(root);
  if (!dir) return 0;
  int killed = 0;
  struct dirent *e;
  while ((e = readdir(dir))) {
    if (strncmp(e->d_name, "svc-", 4) || keep(arg, e->d_name + 4)) continue;
    char *path = xasprintf("%s/%s", root, e->d_name);
    int n = cg_signal(path, SIGKILL);
    if (n > 0) killed += n;
    /* The kill is asynchronous: the cgroup is removed once empty, here or at a later start. */
    if (n <= 0) cg_remove(path);
    free(path);
  }
  closedir(dir);
  return killed;
}
