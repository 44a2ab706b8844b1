#!/bin/sh
# trace-job.sh PROGRAM [ARGS...]: one job of the reference VM's plan (init.sh). Runs PROGRAM under
# `uiommufd trace --passthrough` on the VM's kernel and prints the trace, then the program's own output
# (each of its lines after "out: "), so the host side can tell the two apart; exits as the program did.
# The program's output goes to a file rather than the console, where it would interleave with the trace.
trace=/tmp/trace.$$
output=/tmp/output.$$
/progs/trace/uiommufd trace --passthrough --hide-addresses -o "$trace" -- "$@" >"$output" 2>&1
rc=$?
cat "$trace"
sed 's/^/out: /' "$output"
rm -f "$trace" "$output"
exit $rc
