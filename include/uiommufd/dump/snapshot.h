// A snapshot of the engine's state, for people: every object of a Context, each IOAS's areas, reserved
// and allowed ranges, pinned runs and domains, and the accounting (docs/dump.md has what each field means
// and how the formats show it). Plain data: built under the engine's locks, formatted after they are
// released (dump/format.h).
//
// Consistency: each IOAS is read at one instant (its ioas.mutex, then both of its I/O page-table locks for
// reading, then each area's pages.mutex in turn: the engine's order, docs/locking.md), and so is each other
// object, but different objects are read one after another, so an operation that runs meanwhile may show in
// one and not yet in another. While an object is being read the snapshot holds one user of it, as an ioctl
// in flight does: an IOMMU_DESTROY of that object at that instant is EBUSY, as against a concurrent ioctl.
// Fault injection is paused on the calling thread for the duration (a dump consumes no fail-nth count).
//
// Cost: proportional to objects, areas, reserved and allowed ranges, and pin runs (never to pages), with
// pin runs and access records capped per Pages (kMaxRunsPerPages; the rest is counted, not listed).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <sys/types.h>

#include "uiommufd/base/interval.h"
#include "uiommufd/base/result.h"
#include "uiommufd/mm/accounting.h"
#include "uiommufd/objects/object.h"
#include "uiommufd/pages/pages.h"

namespace uiommufd {
class Context;
}

namespace uiommufd::dump {

// The lifecycle state of an area, which the formats colour.
enum class AreaState : std::uint8_t {
  kBuilding,      // half-built: being mapped, its pages being filled into the domains
  kUnmapping,     // being unmapped: accesses are being asked to unpin, or its pages were taken away
  kMapped,        // fully built, no page of it pinned (no domain, no access pin)
  kPartlyPinned,  // fully built, some of its pages pinned
  kPinned,        // fully built, every page of it pinned
  kDmaBuf,        // a dma-buf range: mapped into the domains, never pinned
  kRevoked,       // a dma-buf range whose exporter revoked the buffer: in no domain
};
const char* area_state_name(AreaState state);

const char* pages_kind_name(PagesKind kind);
const char* account_mode_name(AccountMode mode);

// A run of page indices [first, last] (inclusive) of one Pages, and how many users hold each of them.
struct PageRun {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  std::uint32_t users = 0;
};

// One backing (Pages). Numbered within its context's snapshot (ids from 1); areas refer to it by id.
struct PagesSnapshot {
  std::uint32_t id = 0;
  PagesKind kind = PagesKind::kUser;
  // kUser: the process whose memory it is (this process for in-process mode) and the user address of the
  // first mapped byte. kFile: the file (st_dev, st_ino) and the offset of the first mapped byte.
  // kDmaBuf: the buffer (numbered within the snapshot, from 1) and the offset of the first byte.
  pid_t pid = 0;
  std::uint64_t source_addr = 0;
  std::uint64_t file_dev = 0;
  std::uint64_t file_ino = 0;
  std::uint32_t dmabuf = 0;
  bool revoked = false;
  std::uint64_t start_offset = 0;  // of the first byte inside page 0
  std::uint64_t length = 0;        // bytes, as created
  std::uint64_t npages = 0;
  bool writable = false;
  bool lock_pinned = false;
  AccountMode account_mode = AccountMode::kNone;
  pid_t account_pid = 0;  // the process charged (0: none, for a dma-buf)
  std::uint64_t npinned = 0;
  // Stored runs of the pin bookkeeping (touching runs with different counts stay apart), in order.
  std::vector<PageRun> pin_runs;
  std::uint64_t pin_runs_omitted = 0;  // runs past kMaxRunsPerPages
  // Access pin records ([first, last] with their users), in order.
  std::vector<PageRun> access_records;
  std::uint64_t access_records_omitted = 0;
};
inline constexpr std::size_t kMaxRunsPerPages = 4096;

struct AreaSnapshot {
  Interval iova;
  AreaState state = AreaState::kMapped;
  std::uint32_t pages = 0;        // PagesSnapshot::id; 0 when unmap has taken the backing away
  std::uint64_t start_byte = 0;   // offset of the first byte from page 0 of the backing
  // What the first byte maps, in the backing's terms: the user address (kUser), the file offset (kFile) or
  // the offset in the buffer (kDmaBuf); 0 when the backing was taken away.
  std::uint64_t source_addr = 0;
  std::uint64_t first_index = 0;  // backing page indices the area covers, inclusive
  std::uint64_t last_index = 0;
  bool readable = false;
  bool writeable = false;
  std::uint64_t pinned_pages = 0;  // of [first_index, last_index]
  std::uint32_t access_pins = 0;   // access pin records on the area
  std::uint32_t locks = 0;         // of those, internal ones that lock it against unmap
  bool prevent_access = false;     // an unmap has begun asking accesses to unpin
  // Per domain (index into IoasSnapshot::domains): bytes mapped from the area's first byte on, up to the
  // first hole (length of the area when fully filled).
  std::vector<std::uint64_t> filled;
};

// Who reserved a range, as the engine records it.
enum class ReservedOwner : std::uint8_t {
  kUser,    // IOMMU_TEST_OP_IOAS_ADD_RESERVED (the engine records no owner)
  kDomain,  // outside a domain's aperture, reserved when the domain was added
  kOther,   // another owner (a device's reserved region)
};
const char* reserved_owner_name(ReservedOwner owner);

struct ReservedSnapshot {
  Interval iova;
  ReservedOwner owner = ReservedOwner::kUser;
  std::uint32_t hwpt = 0;  // kDomain: the paging HWPT whose domain it is (0 if none is listed)
};

struct DeviceAttachment {
  std::uint32_t device = 0;
  std::uint32_t pasid = 0;
};

struct DomainSnapshot {
  std::uint32_t hwpt = 0;  // the paging HWPT owning the domain; 0 when none on the IOAS's list owns it
  bool auto_domain = false;
  bool nest_parent = false;
  bool dirty_tracking = false;
  std::uint64_t granule = 0;
  Interval aperture;
  std::uint64_t mapped_bytes = 0;
  std::uint64_t table_bytes = 0;
  std::vector<DeviceAttachment> devices;  // attached straight to this HWPT
};

struct IoasSnapshot {
  std::uint32_t id = 0;
  std::uint64_t iova_alignment = 0;
  bool large_pages = true;
  bool lock_pinned = false;
  std::uint32_t accesses = 0;             // on the I/O page table's notify list
  std::vector<std::uint32_t> access_ids;  // Access objects attached to this IOAS
  std::vector<DomainSnapshot> domains;
  std::vector<AreaSnapshot> areas;
  std::vector<ReservedSnapshot> reserved;
  std::vector<Interval> allowed;
};

// A reference from one object to another ("ioas" 3, "hwpt" 5 at PASID 0, "parent" 4, ...).
struct Link {
  std::string role;
  std::uint32_t id = 0;
  bool has_pasid = false;
  std::uint32_t pasid = 0;
};

struct ObjectSnapshot {
  std::uint32_t id = 0;
  ObjectType type = ObjectType::kAny;
  // Long-term users as the object table counts them (1: only the table holds it), without the
  // snapshot's own reference.
  std::uint32_t users = 0;
  std::vector<Link> links;
};

// The counters of one process charged by this context's pages (mm/accounting.h): kUser is per user id,
// kMm and pinned_vm per process; they count every context of the engine, not only this one.
struct MmCounters {
  pid_t pid = 0;
  uid_t uid = 0;
  std::uint64_t user_locked = 0;
  std::uint64_t mm_locked = 0;
  std::uint64_t pinned_vm = 0;
};

struct ContextSnapshot {
  std::uint64_t number = 0;  // the caller's name for the context (the runtime: its open's serial)
  AccountMode account_mode = AccountMode::kNone;  // of new pages
  bool mm_account_mode = false;                   // IOMMU_OPTION RLIMIT_MODE
  std::uint32_t vfio_ioas = 0;                    // the VFIO-compatibility IOAS, 0 when none
  std::vector<ObjectSnapshot> objects;            // in id order
  std::vector<IoasSnapshot> ioases;               // in id order
  std::vector<PagesSnapshot> pages;               // by id
  std::uint64_t pinned_pages = 0;                 // sum of npinned over `pages`
  std::uint64_t charged_pages = 0;                // the same over pages charged to kUser or kMm
  std::vector<MmCounters> mms;
};

// A piece of an IOAS's IOVA space derived from page runs of its areas' backings (PagesSnapshot::pin_runs or
// access_records), clipped to each area: the IOVA the run's pages back there.
struct IovaRun {
  Interval iova;
  std::uint32_t pages = 0;  // PagesSnapshot::id
  std::uint32_t users = 0;
};
// The backing of `area` in `ctx`, or null (taken away by unmap, or an id `ctx` does not have).
const PagesSnapshot* backing_of(const ContextSnapshot& ctx, const AreaSnapshot& area);

// In IOVA order. A backing shared by several areas (COPY, a split) shows under each of them.
std::vector<IovaRun> pinned_iova_runs(const ContextSnapshot& ctx, const IoasSnapshot& ioas);
std::vector<IovaRun> access_iova_runs(const ContextSnapshot& ctx, const IoasSnapshot& ioas);

// Reads `ctx`. Must not be called with any engine lock held. ENOMEM when memory runs out (what was
// taken is released).
Result<ContextSnapshot> snapshot_context(Context& ctx, std::uint64_t number);

// What triggered a dump.
enum class Reason : std::uint8_t { kRequest, kSignal, kExit };
const char* reason_name(Reason reason);

// One dump: every context of a process (or server) at one time.
struct Dump {
  pid_t pid = 0;
  Reason reason = Reason::kRequest;
  std::uint64_t sequence = 0;  // 1 for the process's first dump, and so on
  std::vector<ContextSnapshot> contexts;
  std::uint64_t process_pinned_pages = 0;  // Pages::total_pinned_pages(), every context's and any other
};

// What a dump at exit reports as leaked: a context still open that holds objects, pins or charges (the
// kernel would tear them down at close; a program that leaves them to exit has not released them). An open
// context that holds nothing is not reported.
struct Leak {
  std::uint64_t context = 0;
  std::size_t objects = 0;
  std::string object_summary;  // "ioas 1, device 2, hwpt_paging 3"
  std::uint64_t pinned_pages = 0;
  std::uint64_t charged_pages = 0;
};
// Empty unless dump.reason is kExit.
std::vector<Leak> leaks(const Dump& dump);
// "LEAK: context 1 still holds 3 objects (ioas 1, device 2, hwpt_paging 3), 16 pinned pages, 16 pages
// charged"
std::string leak_line(const Leak& leak);

}  // namespace uiommufd::dump
