/* abi_errno_name() (tests/abi/abi.h): every Linux errno by name, anything else as a distinct E<number>, so
 * a step line can never show two different errnos alike. */
#include "abi.h"

static int failures;

static void expect(int e, const char* want) {
  const char* got = abi_errno_name(e);
  if (strcmp(got, want) != 0) {
    printf("FAIL abi_errno_name(%d): want %s, got %s\n", e, want, got);
    failures++;
  }
}

int main(void) {
  expect(0, "0");
  expect(1, "EPERM");
  expect(22, "EINVAL");
  expect(11, "EAGAIN");
  expect(35, "EDEADLK");
  expect(95, "EOPNOTSUPP");
  expect(133, "EHWPOISON");
  expect(41, "E41"); /* a hole in Linux's numbering */
  expect(58, "E58");
  expect(ABI_ERRNO_MAX + 1, "E135");
  expect(512, "E512"); /* ERESTARTSYS: kernel-internal, must never reach user space */
  expect(-3, "E-3");
  /* Several unknown names alive at once (one printf line) stay distinct. */
  const char* a = abi_errno_name(600);
  const char* b = abi_errno_name(601);
  if (strcmp(a, "E600") || strcmp(b, "E601")) {
    printf("FAIL two unknown errnos in one line: %s %s\n", a, b);
    failures++;
  }
  /* Every name in the table is unique and every named number is below the bound. */
  for (int i = 1; i <= ABI_ERRNO_MAX; i++)
    for (int j = i + 1; j <= ABI_ERRNO_MAX; j++)
      if (abi_errno_names[i] && abi_errno_names[j] && !strcmp(abi_errno_names[i], abi_errno_names[j])) {
        printf("FAIL %d and %d both named %s\n", i, j, abi_errno_names[i]);
        failures++;
      }
  /* Where the C library knows the number too, it agrees with the table. */
  if (EINVAL != 22 || EBADF != 9 || ENOTTY != 25 || EOVERFLOW != 75) {
    printf("FAIL libc errno numbers are not Linux's\n");
    failures++;
  }
  printf("result: %s\n", failures ? "FAIL" : "PASS");
  return failures ? 1 : 0;
}
