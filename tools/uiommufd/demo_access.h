// `uiommufd demo`: the seed story on the real engine, then the lock validator catching the access-unmap
// driver bug.
#pragma once

namespace uiommufd::tools {

// Part 1: a VMM maps guest memory into an IOAS with a software domain; an emulated device (an access)
// pins a DMA buffer, reads and writes through IOVA; the VMM unmaps; the device's callback unpins; the
// unmap completes; everything is torn down with no pin left and no validator report.
// Part 2: a driver that holds its own lock across Access::destroy, run in a child process with the
// validator in abort mode (with the newest semantics that destroy would really deadlock on its own
// callback); the parent captures the child's stderr and checks the report.
//
// Narrates on stdout (the child's report is captured and reprinted there) and returns the process exit
// code: 0 when part 1 behaved exactly as expected and part 2 was reported; 1 otherwise; 77 when the
// validator is compiled out (UIOMMUFD_LOCKDEP=OFF): part 1 still runs, part 2 cannot be reported and is
// skipped (part 1 failing still gives 1).
//
// Call it from a single-threaded process: it forks.
int run_demo();

}  // namespace uiommufd::tools
