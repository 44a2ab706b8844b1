#!/usr/bin/env bash
# Checks that the Debian packages the build needs are installed. As root it installs the missing ones;
# otherwise it prints the exact apt-get line and fails. Nothing is fetched from anywhere but Debian.
set -euo pipefail

packages=(make cmake ninja-build g++ clang libclang-rt-14-dev libgtest-dev libgmock-dev libbenchmark-dev pkg-config
          python3 graphviz)
# Other targets (tools/reference/deps.sh) name their own packages and get the same install-or-explain rule.
[[ $# -gt 0 ]] && packages=("$@")

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -eq 0 ]]; then
  echo "uiommufd: installing missing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "uiommufd: missing Debian packages. Install them with:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
