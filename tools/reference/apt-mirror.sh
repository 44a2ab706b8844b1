#!/usr/bin/env bash
# Prints the Debian archive URI this machine's own apt configuration uses, so the reference kernel's source
# comes from the mirror the machine is set up for and no host name is written into the project.
#
# Looks at deb822 stanzas (/etc/apt/sources.list.d/*.sources: Types, URIs, Suites, Enabled) and one-line
# entries (/etc/apt/sources.list, /etc/apt/sources.list.d/*.list). An entry counts when it is of type `deb`,
# enabled, and its suites are the archive's own (not `*-security`, whose tree has no linux-source). The
# first such URI wins; nothing found is an error with a message saying where it looked.
# UIOMMUFD_APT_ETC overrides /etc/apt (the tests of this script use it).
set -euo pipefail
etc=${UIOMMUFD_APT_ETC:-/etc/apt}

deb822() {
  awk '
    function flush() {
      if (types ~ /(^| )deb( |$)/ && enabled != "no" && suites !~ /-security/ && uris != "") {
        split(uris, u, " "); print u[1]; found = 1; exit
      }
      types = ""; uris = ""; suites = ""; enabled = ""
    }
    /^[ \t]*#/ { next }
    /^[ \t]*$/ { flush(); next }
    { key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "")
      if (key == "types") types = $0; else if (key == "uris") uris = $0
      else if (key == "suites") suites = $0; else if (key == "enabled") enabled = tolower($0) }
    END { if (!found) flush() }
  ' "$@"
}

one_line() {
  # deb [options] URI suite components...
  awk '
    /^[ \t]*#/ || NF < 3 || $1 != "deb" { next }
    { i = 2; if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) ~ /-security/) next
      print $i; exit }
  ' "$@"
}

for f in "$etc"/sources.list.d/*.sources; do
  [[ -f $f ]] || continue
  uri=$(deb822 "$f")
  [[ -n $uri ]] && { echo "${uri%/}"; exit 0; }
done
for f in "$etc"/sources.list "$etc"/sources.list.d/*.list; do
  [[ -f $f ]] || continue
  uri=$(one_line "$f")
  [[ -n $uri ]] && { echo "${uri%/}"; exit 0; }
done
echo "apt-mirror: no enabled 'deb' archive entry in $etc/sources.list.d/*.sources, $etc/sources.list or" \
  "$etc/sources.list.d/*.list; set UIOMMUFD_REF_MIRROR to a Debian archive URI" >&2
exit 1
