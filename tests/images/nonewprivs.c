/*
 * The entrypoint of the nonewprivs test image, installed setuid root.
 *
 * critest runs it as uid 1000 and reads the line below: with no_new_privs set the setuid bit
 * must be ignored ("Effective uid: 1000"), without it the kernel grants euid 0.
 */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	printf("Effective uid: %d\n", (int)geteuid());
	return 0;
}
