// The lock validator's class graph as a Graphviz picture.
//
// The picture is a DOT digraph: one node per lock class, labelled with the class name (a box for a Mutex,
// a double box for a SharedMutex, a dashed ellipse for a pseudo-lock such as a LockdepMap, grey while no
// lock of the class has been constructed, e.g. a class known only from a declared order), one edge
// A -> B per recorded dependency "B was acquired while A was held", and the chain of every report made so
// far in red: the recorded edges along it, and, dashed, the acquisition that closed the cycle (the
// validator does not record that one). Nodes that a report names without a chain (bad unlock, held lock
// freed, nest lock not held, assertion) are orange. The graph's label lists the reports. Render it with
// `uiommufd lockdep-graph FILE.dot -o FILE.svg` or Graphviz's `dot -Tsvg`.
//
// The environment variable UIOMMUFD_LOCKDEP_DOT=FILE makes every process that starts with it write FILE
// at exit and again after each report (so UIOMMUFD_LOCKDEP=abort still leaves the picture of the report
// that stopped it). In FILE, "%p" stands for the process id and "%%" for '%'. Without "%p", processes
// that share FILE (a parent and the children it forks, a program and the tool that started it) each
// replace it whole, and the last one to write wins.
//
// Writing reads the graph under the validator's graph lock, copies it, and formats and writes the copy
// with the lock released. Any thread may write at any time, while other threads take locks; the writing
// thread is marked as inside the validator meanwhile, so locks taken while writing (by an interposed
// write(2), say) are neither validated nor recorded. Holding instrumented locks while writing is fine.
//
// With the validator compiled out (UIOMMUFD_LOCKDEP=OFF) the picture is an empty graph whose comment and
// label say so.
#pragma once

#include <cstdio>
#include <string>

#include "uiommufd/base/status.h"

namespace uiommufd::lockdep {

// Writes the picture to `out` and flushes it. EIO (or the errno the stream reports) when writing fails;
// EINVAL for a null stream; ENOMEM when the copy cannot be made.
Status write_dot(std::FILE* out);

// Writes the picture to the file `path` ("%p" is not expanded here), replacing the file atomically
// through a temporary file in the same directory and rename(2): a reader sees a whole picture, the old
// or the new. Errors: EINVAL for an empty path, ENOMEM, and what open(2), write(2) and rename(2) report
// (ENOENT for a missing directory, EACCES, ENOSPC, EISDIR, ...).
Status write_dot_file(const std::string& path);

// The file UIOMMUFD_LOCKDEP_DOT names for this process ("%p" expanded), or "" when it is unset or empty;
// a pattern given to set_dot_file() takes its place.
std::string dot_file_from_environment();
// From now on this process writes the picture to `pattern` (as UIOMMUFD_LOCKDEP_DOT would: "%p" expanded,
// at exit and after each report), in place of what the environment said. For programs that decide where
// the picture goes after start-up (`uiommufd demo`). EINVAL for an empty pattern; ENOMEM.
Status set_dot_file(const std::string& pattern);

}  // namespace uiommufd::lockdep
