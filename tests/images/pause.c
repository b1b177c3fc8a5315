/*
 * The sandbox holder of the stowage test images (image pause:3.9).
 *
 * It is pid 1 of a pod's pid namespace when the pod shares one, so it must reap the orphans
 * that get re-parented to it; otherwise it only waits. SIGTERM and SIGINT end it with status 0:
 * as pid 1 it gets no default signal actions, so without handlers a stop would always need
 * SIGKILL.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig)
{
	(void)sig;
	_exit(0);
}

static void on_child(int sig)
{
	int saved = errno; /* the interrupted code may be about to read errno */

	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

int main(int argc, char **argv)
{
	struct sigaction sa;

	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		puts("pause (stowage test image)");
		return 0;
	}
	if (getpid() != 1)
		fputs("pause: warning: not running as pid 1\n", stderr);

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_stop;
	if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
		return 1;
	sa.sa_handler = on_child;
	sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
	if (sigaction(SIGCHLD, &sa, NULL) < 0)
		return 2;

	for (;;)
		pause();
	return 42; /* not reached */
}
