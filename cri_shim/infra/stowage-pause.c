/*
 * stowage-pause: the process that holds a pod's PID namespace when its containers share one.
 *
 * With --new-pidns it unshares a PID namespace, forks, prints the child's pid (as seen from
 * the caller's namespace) on stdout and exits: the child is pid 1 of the new namespace and
 * the one long-lived process of the pod. Without the flag it just pauses. Either way pid 1
 * reaps the orphans re-parented to it and exits 0 on SIGTERM or SIGINT.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int main(int argc, char **argv) {
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
