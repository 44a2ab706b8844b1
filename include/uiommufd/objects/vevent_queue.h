// VeventQueue: the kernel's IOMMUFD_OBJ_VEVENTQ (drivers/iommu/iommufd/eventq.c, driver.c
// iommufd_viommu_report_event()), an EventQueue of virtual events that a vIOMMU reports for its guest: each
// record is a header {flags, sequence} followed by the driver's payload (the mock's: the device's virtual
// id). At most `depth` events wait; one more is not queued but counted as lost, which a reader sees as a
// header with IOMMU_VEVENTQ_FLAG_LOST_EVENTS and no payload. Sequence numbers count every report, queued
// or lost, modulo 2^31, so a gap tells what was lost. docs/semantics.md#vevent-queues has the rules.
//
// A vIOMMU has at most one queue of each type; the queue holds its vIOMMU (a user) and is on its list
// until destroyed. Reports find the queue through the vIOMMU (Viommu::report_event()).
//
// Thread safety: every method may be called from any thread. No lock is held across a user copy; the
// deliver lock (EventQueue::lock()) guards the list, the count and the sequence.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "uiommufd/base/result.h"
#include "uiommufd/lockdep/engine_lock_order.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/objects/event_queue.h"

namespace uiommufd {

class Viommu;

// enum iommu_veventq_type and flags (include/uapi/linux/iommufd.h, iommufd_test.h).
inline constexpr std::uint32_t kVeventqTypeDefault = 0;
inline constexpr std::uint32_t kVeventqTypeSelftest = 0xbeefbeef;
inline constexpr std::uint32_t kVeventqFlagLostEvents = 1u << 0;
// The largest depth (the kernel's VEVENTQ_MAX_DEPTH).
inline constexpr std::uint32_t kVeventqMaxDepth = 1u << 19;

// struct iommufd_vevent_header.
struct VeventHeader {
  std::uint32_t flags;
  std::uint32_t sequence;
};
static_assert(sizeof(VeventHeader) == 8);

class VeventQueue final : public EventQueue {
 public:
  // The object part of IOMMU_VEVENTQ_ALLOC (iommufd_veventq_alloc()), reserved but unpublished and already
  // on `viommu`'s list, where reports do not see it until publish(). The caller publishes it or calls
  // abort_reserved(). Errors in the kernel's order: EOPNOTSUPP flags or the DEFAULT type; EINVAL a depth of
  // 0 or above kVeventqMaxDepth; EEXIST the vIOMMU has a queue of this type; ENOMEM/ENOSPC.
  static Result<VeventQueue*> create_reserved(Viommu& viommu, std::uint32_t flags, std::uint32_t type,
                                              std::uint32_t depth);
  // A published queue, for library users; its id. Errors as create_reserved.
  static Result<std::uint32_t> create(Viommu& viommu, std::uint32_t type, std::uint32_t depth);
  void publish();
  void abort_reserved();

  // Queues one event with `len` bytes of payload, or, when `depth` events wait or the record cannot be
  // allocated (fault site "vevent.alloc", then ENOMEM), the lost-events header instead. The sequence
  // advances either way. The kernel's iommufd_viommu_report_event() after the queue lookup.
  Status report(const void* data, std::size_t len) EXCLUDES(lock_);

  // read(2) of the queue's file (iommufd_veventq_fops_read()): whole records in order, as many as fit, the
  // bytes written returned; 0 when nothing waits (reads never block). Errors only when nothing was written:
  //   EINVAL  count below a header, or the first waiting event does not fit;
  //   ENOMEM  the copy of the lost-events header (fault site "vevent.read");
  //   EFAULT  the buffer cannot be written (the record goes back to the head).
  Result<std::size_t> read(std::uint64_t uptr, std::size_t count) EXCLUDES(lock_);

  std::uint32_t queue_type() const { return type_; }
  std::uint32_t depth() const { return depth_; }
  // For tests: events waiting (the lost-events header not counted).
  std::uint32_t event_count() EXCLUDES(lock_);

  // The C++ face: a handler, if set, runs after each report to this queue, on the reporting thread with no
  // engine lock held (typically it calls read()). Null removes it. Or poll an EventfdReadiness.
  using Handler = std::function<void(VeventQueue&)>;
  void set_handler(Handler handler) EXCLUDES(lock_);
  // Runs the handler, if any (the reporting vIOMMU calls this after reporting, its locks released).
  void run_handler() EXCLUDES(lock_);

  ~VeventQueue() override;

 protected:
  void destroy() override;

 private:
  VeventQueue(Context& ctx, Viommu& viommu, std::uint32_t type, std::uint32_t depth);
  // Off the vIOMMU's list, every waiting event freed, the vIOMMU's user given back (iommufd_veventq_abort()).
  void unlink();
  bool has_records_locked() const override REQUIRES(lock_) { return waiting_locked() != 0 || lost_; }
  std::size_t waiting_locked() const REQUIRES(lock_) { return ends_.size() - ends_first_; }
  // Drops the first `n` entries of ends_ (constant time; the vector is compacted when half is dropped).
  void drop_ends_locked(std::size_t n) REQUIRES(lock_);
  // Signals the readiness when whether records wait has changed.
  void update_readable_locked() REQUIRES(lock_);
  // Appends `len` bytes at the tail of the stream, growing it by chunks. ENOMEM: nothing appended.
  Status append_bytes_locked(const void* a, std::size_t alen, const void* b, std::size_t blen)
      REQUIRES(lock_);
  // Where stream position `pos` is, and how many bytes follow it in its chunk.
  unsigned char* at_locked(std::uint64_t pos, std::size_t* room) const REQUIRES(lock_);
  // Drops [head_, pos) from the stream, freeing the chunks wholly before `pos`.
  void consume_locked(std::uint64_t pos) REQUIRES(lock_);
  // Copies stream bytes [from, to) to the caller's memory at `uptr`, chunk by chunk. The bytes are the
  // reader's (claimed under the lock; only the serialised reader frees chunks), so no lock is held.
  Status copy_out(std::uint64_t from, std::uint64_t to, std::uint64_t uptr);

  Viommu* viommu_;  // with a user, until unlink()
  const std::uint32_t type_;
  const std::uint32_t depth_;
  // The waiting events are one stream of bytes, each record exactly as a read hands it out (header, then
  // payload), in chunks of kChunk bytes; a record may span two chunks. So a read of many records is one
  // claim under the lock and one copy per chunk, with no per-record work but a binary search. Stream
  // positions count every byte ever appended: [head_, tail_) waits, chunk k holds [k·kChunk, (k+1)·kChunk).
  static constexpr std::size_t kChunk = 64 * 1024;
  std::deque<std::unique_ptr<unsigned char[]>> chunks_ GUARDED_BY(lock_);
  std::uint64_t first_chunk_ GUARDED_BY(lock_) = 0;  // the chunk index of chunks_.front()
  std::uint64_t head_ GUARDED_BY(lock_) = 0, tail_ GUARDED_BY(lock_) = 0;
  // The stream position after each waiting event: entries [ends_first_, size) of the vector.
  std::vector<std::uint64_t> ends_ GUARDED_BY(lock_);
  std::size_t ends_first_ GUARDED_BY(lock_) = 0;
  // The lost-events header. Whatever is reported next takes its place at the tail, so when it waits it is
  // always the last record: a flag and its sequence number are all it needs.
  bool lost_ GUARDED_BY(lock_) = false;
  std::uint32_t lost_sequence_ GUARDED_BY(lock_) = 0;
  bool signalled_ GUARDED_BY(lock_) = false;  // what the readiness was last told
  std::uint32_t sequence_ GUARDED_BY(lock_) = 0;
  std::shared_ptr<const Handler> handler_ GUARDED_BY(lock_);
  // Serialises readers, which copy out of the stream with the queue's lock released (the kernel's
  // per-record fetch and restore give concurrent readers no order either).
  lockdep::Mutex read_mu_{lock_order::kVeventRead};
  bool linked_ = false;
};

}  // namespace uiommufd
