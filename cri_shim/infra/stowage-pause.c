/*
 * stowage-pause: the process that holds a pod's PID namespace when its containers share one.
 *
 * With --new-pidns it unshares a PID namespace, forks, prints the child's pid (as seen from
 * the caller's namespace) on stdout and exits: the child is pid 1 of the new namespace and
 * the one long-lived process of the pod. Without the flag it just pauses. Either way pid 1
 * reaps the orphans re-parented to it and exits 0 on SIGTERM or SIGINT.
 *
 * With --setup-pod it does a new pod's one-time set-up and exits, run by
 * `unshare --net=FILE --ipc=FILE --uts=FILE` so it is already inside the pod's new
 * namespaces: --hostname NAME sets the hostname, --lo brings the loopback interface up (what
 * the CNI loopback plugin would do, without a plugin process), --shm PATH mounts the pod's
 * /dev/shm tmpfs (in the host's mount namespace, which unshare left alone) with --shm-size.
 */
#define _GNU_SOURCE
#include <errno.h>
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

static int setup_pod(int argc, char **argv) {
    const char *shm = NULL;
    const char *shm_size = "67108864";
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--hostname") == 0 && i + 1 < argc) {
            const char *name = argv[++i];
            if (sethostname(name, strlen(name)) != 0) {
                fprintf(stderr, "stowage-pause: sethostname: %s\n", strerror(errno));
                return 1;
            }
        } else if (strcmp(argv[i], "--lo") == 0) {
            if (lo_up() != 0) {
                fprintf(stderr, "stowage-pause: loopback up: %s\n", strerror(errno));
                return 1;
            }
        } else if (strcmp(argv[i], "--shm") == 0 && i + 1 < argc) {
            shm = argv[++i];
        } else if (strcmp(argv[i], "--shm-size") == 0 && i + 1 < argc) {
            shm_size = argv[++i];
        } else {
            fprintf(stderr, "stowage-pause: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (shm != NULL) {
        char opts[64];
        snprintf(opts, sizeof(opts), "mode=1777,size=%s", shm_size);
        if (mount("shm", shm, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) != 0) {
            fprintf(stderr, "stowage-pause: mount %s: %s\n", shm, strerror(errno));
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
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
            printf("%d\n", (int)child);
            return 0;
        }
        /* Detach from the caller's session and stdio so it survives the daemon. */
        setsid();
        freopen("/dev/null", "r", stdin);
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
    }
    return hold();
}
