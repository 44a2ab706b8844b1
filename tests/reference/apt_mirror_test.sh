#!/usr/bin/env bash
# tools/reference/apt-mirror.sh against fixture apt configurations (UIOMMUFD_APT_ETC): the URI it must
# print for deb822 and one-line entries, and the failure with its message when no usable entry exists.
set -euo pipefail
script=${1:-$(cd "$(dirname "$0")/../.." && pwd)/tools/reference/apt-mirror.sh}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

# expect <case> <want URI or FAIL>: runs the script on $tmp/<case>.
expect() {
  local out rc=0
  out=$(UIOMMUFD_APT_ETC=$tmp/$1 "$script" 2>"$tmp/$1.err") || rc=$?
  if [[ $2 == FAIL ]]; then
    if [[ $rc -ne 0 && -z $out ]] && grep -q "no enabled 'deb' archive entry" "$tmp/$1.err"; then
      echo "ok   $1: fails with the message"
    else
      echo "FAIL $1: wanted a failure with its message, got rc=$rc out='$out' err='$(cat "$tmp/$1.err")'"
      failures=$((failures + 1))
    fi
  elif [[ $rc -eq 0 && $out == "$2" ]]; then
    echo "ok   $1: $out"
  else
    echo "FAIL $1: wanted $2, got rc=$rc out='$out' err='$(cat "$tmp/$1.err")'"
    failures=$((failures + 1))
  fi
}

mk() { mkdir -p "$tmp/$1/sources.list.d"; }

# deb822: a disabled stanza, a deb-src stanza and a security stanza come first; the usable one wins.
mk deb822
cat >"$tmp/deb822/sources.list.d/debian.sources" <<'X'
# a comment
Types: deb
URIs: http://disabled.example/debian
Suites: sid
Components: main
Enabled: no

Types: deb-src
URIs: http://src.example/debian
Suites: sid
Components: main

Types: deb
URIs: http://security.example/debian-security
Suites: trixie-security
Components: main

Types: deb deb-src
URIs: http://mirror.example/debian/ http://second.example/debian
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
X
expect deb822 http://mirror.example/debian

# deb822 field names are case-insensitive, and the last stanza needs no trailing blank line.
mk deb822-case
printf 'types: deb\nuris: http://case.example/debian\nsuites: sid\nenabled: yes' \
  >"$tmp/deb822-case/sources.list.d/x.sources"
expect deb822-case http://case.example/debian

# one-line sources.list, with options in brackets and a security line first.
mk one-line
cat >"$tmp/one-line/sources.list" <<'X'
# deb http://commented.example/debian sid main
deb-src http://src.example/debian sid main
deb http://security.example/debian-security bookworm-security main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://oneline.example/debian bookworm main
X
expect one-line http://oneline.example/debian

# deb822 wins over one-line entries.
mk both
cp "$tmp/one-line/sources.list" "$tmp/both/sources.list"
cp "$tmp/deb822/sources.list.d/debian.sources" "$tmp/both/sources.list.d/"
expect both http://mirror.example/debian

# A *.list file under sources.list.d counts too.
mk list-d
echo "deb http://listd.example/debian sid main" >"$tmp/list-d/sources.list.d/extra.list"
expect list-d http://listd.example/debian

# Only security entries: no archive to take linux-source from.
mk security-only
printf 'Types: deb\nURIs: http://security.example/debian-security\nSuites: trixie-security\n' \
  >"$tmp/security-only/sources.list.d/s.sources"
echo "deb http://security.example/debian-security trixie-security main" >"$tmp/security-only/sources.list"
expect security-only FAIL

# Every stanza disabled.
mk disabled
printf 'Types: deb\nURIs: http://off.example/debian\nSuites: sid\nEnabled: no\n' \
  >"$tmp/disabled/sources.list.d/off.sources"
expect disabled FAIL

# Nothing at all.
mk none
expect none FAIL
mkdir -p "$tmp/missing-dir"
expect missing-dir FAIL

if ((failures)); then
  echo "$failures case(s) failed"
  exit 1
fi
echo "all apt-mirror cases pass"
