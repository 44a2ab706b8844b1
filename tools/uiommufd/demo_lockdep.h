// `uiommufd demo`: the lock validator catching the access-unmap driver bug.
#pragma once

namespace uiommufd::tools {

// Narrates the bug on stdout (the validator's own report goes to stderr), runs a buggy and a correct
// stand-in driver on real threads with the validator in report mode, and returns the process exit code:
// 0 when the buggy driver was reported as a circular locking dependency and the correct one produced no
// report, 1 otherwise, 77 when the validator is compiled out of this build (UIOMMUFD_LOCKDEP=OFF).
//
// Not reentrant: it resets the validator's graph (lockdep::reset_for_testing), so no other thread may be
// using instrumented locks while it runs.
int run_lockdep_demo();

}  // namespace uiommufd::tools
