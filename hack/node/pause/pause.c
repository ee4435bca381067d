/*
 * The pod sandbox's pause process: PID 1 of the pod, it holds the pod's
 * namespaces open, exits cleanly on SIGINT/SIGTERM and reaps the zombies of
 * processes reparented to it. Built static (gcc -static) into a scratch image
 * by hack/node/images.sh.
 */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
	(void)sig;
	_exit(0);
}

static void reap(int sig) {
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
}

int main(void) {
	struct sigaction on_stop = {.sa_handler = stop};
	struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART};

	if (getpid() != 1) {
		fprintf(stderr, "pause: warning: not PID 1, children of other processes are not reaped\n");
	}
	if (sigaction(SIGINT, &on_stop, NULL) < 0 || sigaction(SIGTERM, &on_stop, NULL) < 0 ||
	    sigaction(SIGCHLD, &on_child, NULL) < 0) {
		perror("pause: sigaction");
		return 1;
	}
	for (;;) {
		pause();
	}
}
