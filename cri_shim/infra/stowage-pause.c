/*
 * stowage-pause: the process that holds a pod's PID namespace when its containers share one.
 *
 * With --new-pidns [--pid-fd N] it unshares a PID namespace, forks, writes the child's pid
 * and start time to the open file N, prints the pid (as seen from the caller's namespace) and
 * exits: the child is pid 1 of the new namespace and
 * the one long-lived process of the pod. Without the flag it just pauses. Either way pid 1
 * reaps the orphans re-parented to it and exits 0 on SIGTERM or SIGINT.
 *
 * With --setup-pod it does a new pod's one-time set-up and exits: a child creates the pod's
 * namespaces (--user, --net, --ipc, --uts FILE each; the user namespace first, with the
 * --uid-map/--gid-map lines written by the parent, so that it owns the others), sets the
 * hostname (--hostname), brings loopback up (--lo: what the CNI loopback plugin would do,
 * without a plugin process); the parent, still in the host's namespaces, pins each namespace
 * by bind-mounting it onto its FILE and mounts the pod's /dev/shm tmpfs (--shm, --shm-size).
 *
 * With --idmap-bind USERNS SRC DST [SRC DST ...] it binds each SRC onto DST as a mount
 * id-mapped for the user namespace pinned at USERNS (the layers of a user-namespaced
 * container's rootfs).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <sys/syscall.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* Writes "PID STARTTIME\n" (STARTTIME: field 22 of /proc/PID/stat, against pid reuse) to fd
 * in one write(2), so that a reader sees the whole line or nothing of it. */
static int write_pid_fd(int fd, pid_t pid) {
    char stat_path[64], buf[4096], line[128];
    snprintf(stat_path, sizeof stat_path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(stat_path, "r");
    if (f == NULL) {
        fprintf(stderr, "stowage-pause: %s: %s\n", stat_path, strerror(errno));
        return -1;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    char *field = p == NULL ? NULL : strtok(p + 1, " "); /* field 3, the state */
    for (int i = 3; field != NULL && i < 22; i++) {
        field = strtok(NULL, " ");
    }
    if (field == NULL) {
        fprintf(stderr, "stowage-pause: %s: no start time\n", stat_path);
        return -1;
    }
    int len = snprintf(line, sizeof line, "%d %s\n", (int)pid, field);
    if (len <= 0 || len >= (int)sizeof line || write(fd, line, (size_t)len) != len) {
        fprintf(stderr, "stowage-pause: writing the pid: %s\n", strerror(errno));
        return -1;
    }
    close(fd);
    return 0;
}

static void on_term(int sig) {
    (void)sig;
    _exit(0);
}

static void on_chld(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

static int hold(void) {
    struct sigaction term = {.sa_handler = on_term};
    struct sigaction chld = {.sa_handler = on_chld, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
    sigaction(SIGTERM, &term, NULL);
    sigaction(SIGINT, &term, NULL);
    sigaction(SIGCHLD, &chld, NULL);
    for (;;) {
        pause();
    }
    return 0;
}

static int lo_up(void) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    int rc = ioctl(fd, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
    }
    close(fd);
    return rc;
}

struct pod_opts {
    const char *pin[4]; /* user, net, ipc, uts */
    const char *uid_map;
    const char *gid_map;
    const char *hostname;
    int lo;
    const char *shm;
    const char *shm_size;
};

static const char *const ns_names[4] = {"user", "net", "ipc", "uts"};

static int wait_byte(int fd) {
    char c;
    return read(fd, &c, 1) == 1 ? 0 : -1;
}

static int write_file(pid_t pid, const char *name, const char *text) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    int rc = fprintf(f, "%s\n", text) < 0 ? -1 : 0;
    return fclose(f) != 0 ? -1 : rc;
}

/* The child: creates the namespaces (the user namespace first, so that it owns the others)
 * and configures them from inside, then waits until the parent has pinned them. */
static void pod_child(const struct pod_opts *o, int from_parent, int to_parent) {
    if (o->pin[0] != NULL) {
        if (unshare(CLONE_NEWUSER) != 0) {
            fprintf(stderr, "stowage-pause: unshare user: %s\n", strerror(errno));
            _exit(1);
        }
        if (write(to_parent, "u", 1) != 1 || wait_byte(from_parent) != 0) {
            _exit(1);
        }
    }
    int flags = (o->pin[1] ? CLONE_NEWNET : 0) | (o->pin[2] ? CLONE_NEWIPC : 0) |
                (o->pin[3] ? CLONE_NEWUTS : 0);
    if (flags != 0 && unshare(flags) != 0) {
        fprintf(stderr, "stowage-pause: unshare: %s\n", strerror(errno));
        _exit(1);
    }
    if (o->hostname != NULL && o->pin[3] != NULL &&
        sethostname(o->hostname, strlen(o->hostname)) != 0) {
        fprintf(stderr, "stowage-pause: sethostname: %s\n", strerror(errno));
        _exit(1);
    }
    if (o->lo && o->pin[1] != NULL && lo_up() != 0) {
        fprintf(stderr, "stowage-pause: loopback up: %s\n", strerror(errno));
        _exit(1);
    }
    if (write(to_parent, "r", 1) != 1) {
        _exit(1);
    }
    wait_byte(from_parent); /* EOF: the parent is done with us */
    _exit(0);
}

static int setup_pod(int argc, char **argv) {
    struct pod_opts o = {.shm_size = "67108864"};
    for (int i = 2; i < argc; i++) {
        int known = 0;
        for (int k = 0; k < 4; k++) {
            char flag[16];
            snprintf(flag, sizeof(flag), "--%s", ns_names[k]);
            if (strcmp(argv[i], flag) == 0 && i + 1 < argc) {
                o.pin[k] = argv[++i];
                known = 1;
            }
        }
        if (known) {
            continue;
        } else if (strcmp(argv[i], "--uid-map") == 0 && i + 1 < argc) {
            o.uid_map = argv[++i];
        } else if (strcmp(argv[i], "--gid-map") == 0 && i + 1 < argc) {
            o.gid_map = argv[++i];
        } else if (strcmp(argv[i], "--hostname") == 0 && i + 1 < argc) {
            o.hostname = argv[++i];
        } else if (strcmp(argv[i], "--lo") == 0) {
            o.lo = 1;
        } else if (strcmp(argv[i], "--shm") == 0 && i + 1 < argc) {
            o.shm = argv[++i];
        } else if (strcmp(argv[i], "--shm-size") == 0 && i + 1 < argc) {
            o.shm_size = argv[++i];
        } else {
            fprintf(stderr, "stowage-pause: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (o.pin[0] != NULL && (o.uid_map == NULL || o.gid_map == NULL)) {
        fprintf(stderr, "stowage-pause: --user needs --uid-map and --gid-map\n");
        return 2;
    }
    int down[2], up[2];
    if (pipe2(down, O_CLOEXEC) != 0 || pipe2(up, O_CLOEXEC) != 0) {
        fprintf(stderr, "stowage-pause: pipe: %s\n", strerror(errno));
        return 1;
    }
    pid_t child = fork();
    if (child < 0) {
        fprintf(stderr, "stowage-pause: fork: %s\n", strerror(errno));
        return 1;
    }
    if (child == 0) {
        close(down[1]);
        close(up[0]);
        pod_child(&o, down[0], up[1]);
    }
    close(down[0]);
    close(up[1]);
    int rc = 1;
    if (o.pin[0] != NULL) {
        /* Only a process outside the new user namespace may write its id maps. */
        if (wait_byte(up[0]) != 0) {
            goto out;
        }
        if (write_file(child, "uid_map", o.uid_map) != 0 ||
            write_file(child, "gid_map", o.gid_map) != 0) {
            fprintf(stderr, "stowage-pause: writing id maps: %s\n", strerror(errno));
            goto out;
        }
        if (write(down[1], "g", 1) != 1) {
            goto out;
        }
    }
    if (wait_byte(up[0]) != 0) {
        goto out;
    }
    for (int k = 0; k < 4; k++) {
        if (o.pin[k] == NULL) {
            continue;
        }
        char src[64];
        snprintf(src, sizeof(src), "/proc/%d/ns/%s", (int)child, ns_names[k]);
        if (mount(src, o.pin[k], NULL, MS_BIND, NULL) != 0) {
            fprintf(stderr, "stowage-pause: pinning %s: %s\n", ns_names[k], strerror(errno));
            goto out;
        }
    }
    if (o.shm != NULL) {
        char opts[64];
        snprintf(opts, sizeof(opts), "mode=1777,size=%s", o.shm_size);
        if (mount("shm", o.shm, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) != 0) {
            fprintf(stderr, "stowage-pause: mount %s: %s\n", o.shm, strerror(errno));
            goto out;
        }
    }
    rc = 0;
out:
    close(down[1]);
    waitpid(child, NULL, 0);
    close(up[0]);
    return rc;
}

/* Binds SRC onto DST as an id-mapped mount through the user namespace pinned at USERNS, for
 * each SRC DST pair. Overlayfs cannot itself be id-mapped, but its layers can: a
 * user-namespaced container's rootfs is an overlay of id-mapped layers, so its root owns the
 * files host root owns, without a single chown of the image. */
static int idmap_bind(const char *userns, int pairs, char **paths) {
    int ns = open(userns, O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
        fprintf(stderr, "stowage-pause: open %s: %s\n", userns, strerror(errno));
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < pairs && rc == 0; i++) {
        const char *src = paths[2 * i], *dst = paths[2 * i + 1];
        int tree = (int)syscall(SYS_open_tree, AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (tree < 0) {
            fprintf(stderr, "stowage-pause: open_tree %s: %s\n", src, strerror(errno));
            rc = 1;
            break;
        }
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (__u64)ns};
        if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)) != 0) {
            fprintf(stderr, "stowage-pause: id-mapping %s: %s\n", src, strerror(errno));
            rc = 1;
        } else if (syscall(SYS_move_mount, tree, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) != 0) {
            fprintf(stderr, "stowage-pause: move_mount %s: %s\n", dst, strerror(errno));
            rc = 1;
        }
        close(tree);
    }
    close(ns);
    return rc;
}

int main(int argc, char **argv) {
    if (argc >= 5 && argc % 2 == 1 && strcmp(argv[1], "--idmap-bind") == 0) {
        return idmap_bind(argv[2], (argc - 3) / 2, argv + 3);
    }
    if (argc > 1 && strcmp(argv[1], "--setup-pod") == 0) {
        return setup_pod(argc, argv);
    }
    if (argc > 1 && strcmp(argv[1], "--new-pidns") == 0) {
        if (unshare(CLONE_NEWPID) != 0) {
            fprintf(stderr, "stowage-pause: unshare: %s\n", strerror(errno));
            return 1;
        }
        pid_t child = fork();
        if (child < 0) {
            fprintf(stderr, "stowage-pause: fork: %s\n", strerror(errno));
            return 1;
        }
        if (child > 0) {
            /* --pid-fd: the record is written here, not by the caller, so that the caller's
             * death at any moment cannot lose track of a running infra process. */
            if (argc > 3 && strcmp(argv[2], "--pid-fd") == 0 &&
                write_pid_fd(atoi(argv[3]), child) != 0) {
                kill(child, SIGKILL);
                return 1;
            }
            printf("%d\n", (int)child);
            return 0;
        }
        if (argc > 3 && strcmp(argv[2], "--pid-fd") == 0) {
            close(atoi(argv[3]));
        }
        /* Detach from the caller's session and stdio so it survives the daemon. */
        setsid();
        freopen("/dev/null", "r", stdin);
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
    }
    return hold();
}
