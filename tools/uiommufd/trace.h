// `uiommufd trace`: runs a program on uiommufd and prints every /dev/iommu call it makes, decoded
// (docs/trace.md).
#pragma once

namespace uiommufd::tools {

// args: what followed "trace": [--json] [-o FILE] [-e NAME,...] then `run`'s own options and arguments
// ([--lockdep=MODE] [--shared | --server=ADDR] -- program [args...]). Sets the preload's trace settings
// (UIOMMUFD_TRACE, UIOMMUFD_TRACE_FORMAT, UIOMMUFD_TRACE_FILTER, UIOMMUFD_TRACE_T0) and runs the program as
// run_program() does. -o FILE is created (or emptied) here; every process of the run appends to it.
// Returns as run_program(); 2 for a usage error (an unknown option, a name -e does not know), 1 when FILE
// cannot be created.
int trace_program(int argc, char** args, const char* usage);

}  // namespace uiommufd::tools
