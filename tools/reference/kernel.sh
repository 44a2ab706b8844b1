#!/usr/bin/env bash
# Builds (or reuses) the reference Linux kernel that tests/abi and the differential runner are compared with.
#
# The source comes from Debian unstable's linux-source-7.2 package, fetched with `apt-get download` through a
# private apt configuration: its own sources list (naming the mirror of the machine's apt configuration, see
# apt-mirror.sh), lists, cache and state directories under the cache, so the system's apt state is never
# touched. Download and build live outside the repository, keyed by the package
# version and a hash of the config fragment below, so changing either builds a fresh tree.
#
# Prints the path of the bzImage on its last line of stdout. Everything else goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache_root=${UIOMMUFD_REF_CACHE:-$HOME/.cache/uiommufd-ref}
package=${UIOMMUFD_REF_PACKAGE:-linux-source-7.2}
jobs=${UIOMMUFD_REF_JOBS:-3}
niceness=${UIOMMUFD_REF_NICE:-10}

log() { echo "reference-kernel: $*" >&2; }

"$here/deps.sh" >&2

# The machine's own Debian mirror (its apt configuration), unless one is given.
if [[ -n ${UIOMMUFD_REF_MIRROR:-} ]]; then
  mirror=$UIOMMUFD_REF_MIRROR
else
  mirror=$("$here/apt-mirror.sh") || { log "no Debian mirror in this machine's apt configuration"; exit 1; }
fi
log "mirror: $mirror"

# ---- private apt ----------------------------------------------------------------------------------------
apt_dir=$cache_root/apt
mkdir -p "$apt_dir"/{lists/partial,archives/partial,state,etc/preferences.d,etc/apt.conf.d,etc/trusted.gpg.d,download}
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror sid main" >"$apt_dir/etc/sources.list"
: >"$apt_dir/state/status"
apt_opts=(
  -o "Dir::Etc::SourceList=$apt_dir/etc/sources.list"
  -o "Dir::Etc::SourceParts=-"
  -o "Dir::Etc::Parts=$apt_dir/etc/apt.conf.d"
  -o "Dir::Etc::PreferencesParts=$apt_dir/etc/preferences.d"
  -o "Dir::Etc::Preferences=$apt_dir/etc/preferences"
  -o "Dir::State=$apt_dir/state"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::State::status=$apt_dir/state/status"
  -o "Dir::Cache=$apt_dir/cache"
  -o "Dir::Cache::Archives=$apt_dir/archives"
  -o "APT::Architecture=amd64"
  -o "Debug::NoLocking=1"
  -o "Acquire::Languages=none"
  -o "APT::Sandbox::User=root"
)

# Refresh the index at most once a day; the download itself is kept for as long as its version is current.
stamp=$apt_dir/lists/.updated
if [[ ! -f $stamp || -n $(find "$stamp" -mmin +1440 2>/dev/null) ]]; then
  log "updating the private sid index"
  mkdir -p "$apt_dir/cache"
  # Offline, the previous index (and so the cached build) still serves.
  if apt-get "${apt_opts[@]}" -qq update >&2; then
    touch "$stamp"
  else
    log "could not update the sid index; using the previous one if there is one"
  fi
fi
version=$(apt-cache "${apt_opts[@]}" show "$package" 2>/dev/null | sed -n 's/^Version: //p' | head -1)
[[ -n $version ]] || { log "$package not found in sid"; exit 1; }

# ---- config fragment: the key of the build --------------------------------------------------------------
enable=(IOMMU_SUPPORT IOMMUFD IOMMUFD_TEST RUNTIME_TESTING_MENU DEBUG_KERNEL FAULT_INJECTION FAILSLAB
  FAIL_PAGE_ALLOC FAULT_INJECTION_DEBUG_FS DEBUG_FS HUGETLBFS HUGETLB_PAGE TRANSPARENT_HUGEPAGE MEMFD_CREATE
  EVENTFD SHMEM TMPFS DEVTMPFS DEVTMPFS_MOUNT BLK_DEV_INITRD SERIAL_8250 SERIAL_8250_CONSOLE VFIO VFIO_GROUP
  AMD_IOMMU IOMMU_PT_AMDV1 RD_GZIP)
disable=(MODULES DRM SOUND WLAN WIRELESS USB_SUPPORT DEBUG_INFO)
fragment="defconfig=x86_64_defconfig enable=${enable[*]} disable=${disable[*]}"
config_hash=$(printf '%s' "$fragment" | sha256sum | cut -c1-12)
work=$cache_root/$version-$config_hash
bzimage=$work/linux/arch/x86/boot/bzImage
mkdir -p "$work"

# One build per tree at a time: a second run (another checkout, CI) waits for the first and reuses it.
exec 9>"$work/.lock"
if ! flock -n 9; then
  log "another run is building $work; waiting for it"
  flock 9
fi

if [[ -f $work/built && -f $bzimage ]]; then
  log "reusing $bzimage"
  echo "$bzimage"
  exit 0
fi

# ---- source ---------------------------------------------------------------------------------------------
deb=$(ls "$apt_dir"/download/"${package}_${version//:/%3a}"_*.deb 2>/dev/null | head -1 || true)
if [[ -z $deb ]]; then
  log "downloading $package $version"
  (cd "$apt_dir/download" && apt-get "${apt_opts[@]}" -qq download "$package=$version" >&2)
  deb=$(ls "$apt_dir"/download/"${package}"_*.deb | head -1)
fi

if [[ ! -f $work/unpacked ]]; then
  log "unpacking $deb"
  rm -rf "$work/pkg" "$work/linux"
  mkdir -p "$work/pkg"
  dpkg-deb -x "$deb" "$work/pkg"
  tarball=$(ls "$work"/pkg/usr/src/linux-source-*.tar.* | head -1)
  mkdir -p "$work/linux"
  tar -xf "$tarball" -C "$work/linux" --strip-components=1
  rm -rf "$work/pkg"
  touch "$work/unpacked"
fi

# ---- configure and build --------------------------------------------------------------------------------
cd "$work/linux"
log "configuring ($fragment)"
make -s x86_64_defconfig >&2
args=()
for o in "${enable[@]}"; do args+=(--enable "$o"); done
for o in "${disable[@]}"; do args+=(--disable "$o"); done
scripts/config "${args[@]}"
make -s olddefconfig >&2
for o in IOMMUFD IOMMUFD_TEST FAULT_INJECTION_DEBUG_FS HUGETLBFS VFIO_GROUP DEVTMPFS; do
  grep -q "^CONFIG_$o=y" .config || { log "CONFIG_$o=y did not survive olddefconfig"; exit 1; }
done
cp .config "$work/config"

log "building bzImage with -j$jobs (about 15 minutes on 2 cores); log in $work/build.log"
if ! nice -n "$niceness" make -j"$jobs" bzImage >"$work/build.log" 2>&1; then
  tail -30 "$work/build.log" >&2
  log "kernel build failed"
  exit 1
fi
touch "$work/built"
echo "$version" >"$work/version"
log "built $bzimage"
echo "$bzimage"
