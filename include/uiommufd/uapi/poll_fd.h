// The real kernel fds behind queue files, and how their readiness is set (PollFace, file.h).
//
// A queue's fd must poll as the kernel's iommufd_eventq_fops_poll() answers, without poll, select or epoll
// being interposed, so the fd is a kernel object whose own readiness we drive:
//   kReadWrite: a pipe reopened O_RDWR (a FIFO open both ways), moved onto the number the pipe's read end
//               had. It polls EPOLLIN | EPOLLRDNORM exactly while it holds bytes, as the kernel's fault fd
//               does while records wait, and EPOLLOUT always (with EPOLLWRNORM, which the kernel's does
//               not report: the one difference). set_readable() writes 8 bytes and reads them back. An
//               eventfd would poll EPOLLIN without EPOLLRDNORM, and a reader waiting for POLLRDNORM would
//               never wake; it serves only where /proc cannot be opened.
//   kReadOnly:  a timerfd that is never armed. It is never writable and is readable (EPOLLIN, without
//               EPOLLRDNORM: the one difference) exactly while its tick count is non-zero; set_readable()
//               sets the count with TFD_IOC_SET_TICKS (which wakes pollers at once) and zeroes it by
//               disarming. Without that ioctl (CONFIG_CHECKPOINT_RESTORE off) the timer is armed to expire
//               after 1 ns instead, so readiness comes a timer interrupt later. Chosen over a pipe (never
//               without EPOLLOUT unless full) and over an epoll fd with an eventfd inside (exact, EPOLLIN |
//               EPOLLRDNORM, but a second fd of our own per queue, which shifts the program's fd numbers
//               and which closefrom() in the program would close under us).
// Both report F_GETFL O_RDWR, as the kernel's anon-inode file does (the FIFO adds O_LARGEFILE), and are
// close-on-exec. Both are fds the program sees; the runtime keeps no private fd per queue, and signals
// through whichever of the program's fds stand for the file (the fd table knows them).
#pragma once

#include "uiommufd/base/result.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::uapi {

// A new real fd for `face`, not readable. EMFILE, ENFILE, ENOMEM, ENODEV.
Result<int> make_poll_fd(PollFace face);
// Makes `fd` (from make_poll_fd(face)) readable or not. Keeps errno. Callers signal changes only (a
// second `true` would add a second count, which one `false` does not take back for the FIFO).
void set_poll_fd_readable(int fd, PollFace face, bool readable);

}  // namespace uiommufd::uapi
