/* capmirror MASK PROG [ARGS...]: runs PROG in the VM with no capability the host side lacks.
 *
 * The host runs `uiommufd run` inside a container whose effective set can lack, for instance,
 * CAP_SYS_RESOURCE, while /init in the VM is root with every capability; programs that branch on a
 * capability (abi_option's RLIMIT_MODE steps) would then take different paths. MASK is the host's CapEff in
 * hex. Every capability outside it is dropped from the bounding set, which a root execve then cannot
 * regain. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: capmirror MASK PROG [ARGS...]\n");
    return 2;
  }
  unsigned long long mask = strtoull(argv[1], NULL, 16);
  for (int cap = 0; cap < 64; cap++) {
    if (mask >> cap & 1) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) && errno != EINVAL) {
      perror("capmirror: PR_CAPBSET_DROP");
      return 2;
    }
  }
  execv(argv[2], argv + 2);
  perror("capmirror: execv");
  return 127;
}
