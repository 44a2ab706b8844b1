// Page identity: which page an address of this process reaches, in the terms the kernel's struct page
// would tell pages apart (docs/design.md#memory).
//
// The kernel's selftest checks (MD_CHECK_MAP, MD_CHECK_REFS, the ACCESS_PAGES compare) compare struct
// pages, so one memfd page is one page whether it is reached through IOMMU_IOAS_MAP of an mmap of the
// memfd, through IOMMU_IOAS_MAP_FILE, or through a second mmap of the same file. User space has no struct
// page; this header gives the closest stand-in:
//   - a page of a shared file mapping (memfd, shmem, hugetlbfs, MAP_SHARED|MAP_ANONYMOUS, a regular file)
//     is (device, inode, page-aligned file offset);
//   - a page of private memory (anonymous, the heap, a stack) is (0, 0, page-aligned virtual address);
//   - a page of a MAP_PRIVATE file mapping is the file's page until a write has given the process its own
//     copy, then private: read from /proc/self/pagemap (a present page that is not a file page is the
//     copy). Where pagemap cannot be read the file's page is assumed.
// Addresses nothing maps resolve as private (their VA), so an address compares equal to itself whatever
// the state of the mapping.
//
// Deviation (documented, not cheap to remove): identity is resolved when asked, not when a page was pinned.
// A read-only pin of an unwritten MAP_PRIVATE file page holds the file's page in the kernel; if the process
// writes the page afterwards, the kernel's pin still holds the file page while we resolve the pinned VA to
// the new private copy. Likewise a pinned VA that is munmapped and mapped again resolves to what is mapped
// now. Devices and inodes come from /proc/self/maps, which is what the kernel's own superblock says; for
// memfd/shmem/hugetlbfs that equals fstat()'s st_dev / st_ino (on btrfs or overlayfs the two may differ).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace uiommufd {

struct PageIdentity {
  // Both 0 for private memory; otherwise the backing file's device (as makedev(major, minor)) and inode.
  std::uint64_t dev = 0;
  std::uint64_t ino = 0;
  // Page-aligned: the file offset of the page, or its virtual address for private memory.
  std::uint64_t offset = 0;

  bool is_file() const { return dev != 0 || ino != 0; }
  // Whether the two name the same backing (the same file, or both private).
  bool same_space(const PageIdentity& o) const { return dev == o.dev && ino == o.ino; }
  friend bool operator==(const PageIdentity&, const PageIdentity&) = default;
};

// A run of pages whose identities are consecutive: page k of the run is `first` with offset + k pages.
struct IdentityRun {
  std::uint64_t addr;    // page-aligned address the run starts at
  std::uint64_t npages;  // >= 1
  PageIdentity first;
};

// One read of /proc/self/maps, kept to resolve many addresses against the same picture of the address
// space. Mappings that change after take() are not seen; take a new one per check.
//
// Cost: take() reads and parses the whole maps file once (tens of microseconds for a few hundred
// mappings) and keeps only the file-backed mappings; a lookup is a binary search, plus one pread of
// /proc/self/pagemap per MAP_PRIVATE file mapping a resolve() touches.
//
// Never fails: if /proc/self/maps cannot be read (no /proc, out of file descriptors) the snapshot knows no
// file mappings and every address resolves as private memory, which is the identity model before file
// identities existed. Thread safety: a const snapshot may be used from several threads.
class Mm;

class MapsSnapshot {
 public:
  // This process's maps; take(mm) those of the process behind `mm` (/proc/<pid>/maps and pagemap of
  // another process, readable by the ptrace rules Mm::for_process relies on). A private page's identity
  // carries its Mm's tag (Mm::phys_of), so private pages of two processes never compare equal.
  static MapsSnapshot take();
  static MapsSnapshot take(const Mm& mm);
  // For tests: whether the maps file was read.
  bool complete() const { return complete_; }

  // The identity of the page holding `addr`.
  PageIdentity identity(std::uint64_t addr) const;

  // The identities of the pages covering [addr, addr + length) as maximal runs, in address order.
  // addr is rounded down and the end up to whole pages; length 0 gives no runs. A range wrapping past
  // 2^64 is resolved up to the last page.
  std::vector<IdentityRun> resolve(std::uint64_t addr, std::uint64_t length) const;

  // Whether [a, a + length) and [b, b + length) reach the same pages at the same offsets in them:
  // a and b lie at the same offset in their pages, and each page of one range is the same page as the
  // matching page of the other. length 0 is true.
  bool same_pages(std::uint64_t a, std::uint64_t b, std::uint64_t length) const;
  // The same for `a` of one snapshot's process and `b` of another's.
  static bool same_pages(const MapsSnapshot& sa, std::uint64_t a, const MapsSnapshot& sb, std::uint64_t b,
                         std::uint64_t length);

  // Parses maps text (exposed for tests). Lines that do not parse are skipped.
  static MapsSnapshot parse(const char* text, std::uint64_t size);

 private:
  struct FileMapping {
    std::uint64_t start;   // page-aligned, inclusive
    std::uint64_t end;     // page-aligned, exclusive
    std::uint64_t offset;  // file offset of `start`
    std::uint64_t dev;
    std::uint64_t ino;
    bool shared;
  };
  // Appends the runs of [first_page, last_page] (page numbers) of the private file mapping `m`.
  void resolve_private(const FileMapping& m, std::uint64_t first_page, std::uint64_t last_page,
                       std::vector<IdentityRun>* out) const;

  std::vector<FileMapping> files_;  // sorted by start, disjoint
  bool complete_ = false;
  int pid_ = 0;                    // 0: this process
  std::uint64_t private_tag_ = 0;  // Mm::phys_of(0) of the snapshot's process
};

}  // namespace uiommufd
