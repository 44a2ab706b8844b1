#!/usr/bin/env bash
# The Debian packages the reference kernel, its initramfs and the VM need: installed when root, otherwise
# the exact apt-get line is printed and this fails (the rule of tools/ensure-deps.sh, which does the work).
set -euo pipefail
exec "$(dirname "$0")/../ensure-deps.sh" flex bison bc libelf-dev libssl-dev cpio gzip qemu-system-x86 \
  busybox-static gcc make debian-archive-keyring
