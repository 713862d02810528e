/*
 * The sandbox ("pause") process of a pod, written for the offline kind node image
 * (scripts/kind/node-image.sh). A pod's sandbox holds the pod's namespaces open: it must run
 * forever doing nothing, reap any zombie that is re-parented to it (it is PID 1 of the pod's PID
 * namespace when that namespace is shared), and exit promptly on SIGINT or SIGTERM.
 * Built statically with gcc, so the image needs nothing but this binary.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
  (void)sig;
  _exit(0);
}

static void on_child(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    puts("pause (spiffe-broker offline kind node image)");
    return 0;
  }
  struct sigaction stop = {0}, child = {0};
  stop.sa_handler = on_stop;
  child.sa_handler = on_child;
  child.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0 ||
      sigaction(SIGCHLD, &child, NULL) < 0) {
    perror("sigaction");
    return 1;
  }
  for (;;) pause();
}
