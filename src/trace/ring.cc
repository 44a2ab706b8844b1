#include "uiommufd/trace/ring.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <new>

#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace uiommufd::trace {

namespace {

constexpr std::uint64_t kMagic = 0x676e726563617274ull;  // "tracerng", little-endian
// A slot's sequence word: `pos` free for the producer of position pos; pos | kClaimed being written by it;
// pos + 1 committed; pos + kSlots free again, for the next lap.
constexpr std::uint64_t kClaimed = std::uint64_t{1} << 63;

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace

struct Ring::Header {
  std::uint64_t magic;
  std::uint64_t slots;
  std::uint64_t slot_size;
  alignas(64) std::atomic<std::uint64_t> tail;  // the next position a producer takes
  alignas(64) std::atomic<std::uint64_t> head;  // the next position the consumer takes
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "shared between processes");

struct Ring::Slot {
  std::atomic<std::uint64_t> seq;
  std::uint32_t len;
  std::uint32_t reserved;
  char data[kSlotSize - 16];
};

namespace {
constexpr std::size_t kBytes = 4096 + Ring::kSlots * Ring::kSlotSize;
}  // namespace

Ring::Header& Ring::header() const {
  static_assert(sizeof(Header) <= 4096 && sizeof(Slot) == kSlotSize);
  return *static_cast<Header*>(base_);
}
Ring::Slot& Ring::slot(std::uint64_t pos) const {
  return static_cast<Slot*>(static_cast<void*>(static_cast<char*>(base_) + 4096))[pos % kSlots];
}

Result<Ring> Ring::create() {
  const int fd = memfd_create("uiommufd-trace-ring", 0);
  if (fd < 0) return Status::error(errno);
  if (ftruncate(fd, kBytes) != 0) {
    const int err = errno;
    close(fd);
    return Status::error(err);
  }
  void* base = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    const int err = errno;
    close(fd);
    return Status::error(err);
  }
  Ring r(fd, base);
  Header& h = *new (base) Header{};
  h.slots = kSlots;
  h.slot_size = kSlotSize;
  h.tail.store(0, std::memory_order_relaxed);
  h.head.store(0, std::memory_order_relaxed);
  for (std::uint64_t i = 0; i < kSlots; ++i) new (&r.slot(i).seq) std::atomic<std::uint64_t>(i);
  std::atomic_thread_fence(std::memory_order_release);
  h.magic = kMagic;
  return r;
}

Result<Ring> Ring::attach(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return Status::error(errno);
  if (static_cast<std::size_t>(st.st_size) != kBytes) return Status::error(EINVAL);
  void* base = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return Status::error(errno);
  Ring r(fd, base);
  if (r.header().magic != kMagic || r.header().slots != kSlots || r.header().slot_size != kSlotSize) {
    r.release_fd();  // the caller's fd stays the caller's
    return Status::error(EINVAL);
  }
  return r;
}

Ring::Ring(Ring&& o) noexcept : fd_(o.fd_), base_(o.base_) {
  o.fd_ = -1;
  o.base_ = nullptr;
}

Ring::~Ring() {
  if (base_) munmap(base_, kBytes);
  if (fd_ >= 0) close(fd_);
}

Ring::Put Ring::put(std::string_view record) {
  if (record.size() > kMaxRecord) return Put::kTooLong;
  Header& h = header();
  const std::uint64_t pos = h.tail.fetch_add(1, std::memory_order_relaxed);
  Slot& s = slot(pos);
  // Free for this lap unless the consumer is a whole ring behind: then wait, spinning briefly and then
  // yielding, for at most a second.
  std::uint64_t seq = s.seq.load(std::memory_order_acquire);
  std::uint64_t deadline = 0;
  for (unsigned spins = 0; seq != pos; ++spins) {
    if ((seq & ~kClaimed) > pos) return Put::kNoSlot;  // taken back by the consumer
    if (spins > 64) {
      const std::uint64_t t = now_ns();
      if (deadline == 0) deadline = t + 1000000000ull;
      if (t > deadline) return Put::kNoSlot;
      sched_yield();
    }
    seq = s.seq.load(std::memory_order_acquire);
  }
  if (!s.seq.compare_exchange_strong(seq, pos | kClaimed, std::memory_order_acquire)) return Put::kNoSlot;
  std::memcpy(s.data, record.data(), record.size());
  s.len = static_cast<std::uint32_t>(record.size());
  // The next slot is most likely this thread's next record's: its lines are fetched for writing now, while
  // the call that record describes runs, rather than when the record is copied in.
  for (std::size_t line = 0; line < 4; ++line)
    __builtin_prefetch(reinterpret_cast<const char*>(&slot(pos + 1)) + line * 64, 1);
  std::uint64_t claimed = pos | kClaimed;
  // A consumer that gave up on this slot has moved it on: the record then goes another way.
  return s.seq.compare_exchange_strong(claimed, pos + 1, std::memory_order_release) ? Put::kOk : Put::kNoSlot;
}

std::size_t Ring::drain(void (*out)(void* ctx, std::string_view record), void* ctx, std::uint64_t stuck_ns) {
  Header& h = header();
  std::size_t n = 0;
  for (;;) {
    const std::uint64_t pos = h.head.load(std::memory_order_relaxed);
    Slot& s = slot(pos);
    std::uint64_t seq = s.seq.load(std::memory_order_acquire);
    if (seq != pos + 1) {
      // Not committed. Nothing more was put, or its producer is slow, or it died holding the slot.
      if (h.tail.load(std::memory_order_acquire) <= pos) return n;
      const std::uint64_t t = now_ns();
      if (waiting_pos_ != pos) {
        waiting_pos_ = pos;
        waiting_since_ = t;
        return n;
      }
      if (t - waiting_since_ < stuck_ns) return n;
      // Given up on: moved to the next lap, unless its producer commits right now.
      if (!s.seq.compare_exchange_strong(seq, pos + kSlots, std::memory_order_acq_rel)) continue;
      static constexpr char kLost[] =
          "# uiommufd trace: a record was lost (its process stopped while writing it)\n";
      out(ctx, {kLost, sizeof kLost - 1});
      h.head.store(pos + 1, std::memory_order_release);
      continue;
    }
    out(ctx, {s.data, s.len});
    ++n;
    s.seq.store(pos + kSlots, std::memory_order_release);
    h.head.store(pos + 1, std::memory_order_release);
  }
}

}  // namespace uiommufd::trace
