// `uiommufd lockdep-graph`: the lock validator's class graph (uiommufd/lockdep/dot.h) rendered as SVG by
// Graphviz.
#pragma once

namespace uiommufd::tools {

// args: what followed "lockdep-graph" on the command line: FILE.dot [-o OUTPUT]. Checks that FILE.dot can
// be read, finds Graphviz's `dot` on PATH and runs `dot -Tsvg FILE.dot -o OUTPUT`. OUTPUT "-" is standard
// output; without -o it is FILE.dot with ".dot" replaced by ".svg" (or ".svg" appended).
// Returns 0 when dot succeeded; 1 when FILE.dot cannot be read, dot is not on PATH (the message names the
// Debian package graphviz and the apt-get line that installs it) or dot failed (its own messages are on
// stderr); 2 usage error (printed with `usage`).
int lockdep_graph(int argc, char** args, const char* usage);

}  // namespace uiommufd::tools
