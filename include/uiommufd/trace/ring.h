// The trace ring (docs/trace.md#ring): records of every traced thread of every traced process go into one
// shared-memory ring, and `uiommufd trace` (the consumer, a process of its own) writes them out. A record
// costs its producer a copy and two atomic operations, no system call; and what a process had recorded
// survives its crash, since the memory is the consumer's too.
//
// The ring is a memfd the consumer makes (create()) and every traced process maps (attach(), from the fd
// it inherits). It is a bounded multi-producer, single-consumer queue of fixed-size slots: a producer takes
// the next position with one fetch_add, waits (rarely: only when the consumer is a whole ring behind) for
// the slot of that position to be free for this lap, claims it, copies the record in and commits it. The
// consumer takes committed slots in position order, which is the order the records were put. A producer
// that dies between its fetch_add and its commit would stop the consumer at that slot for ever; the consumer
// skips a slot that has stayed uncommitted for a second while later ones are committed, and a producer
// that finds its slot taken back (or waits for a free one for a second) reports false, so the caller
// writes the record another way.
//
// Thread and process safety: put() from any thread of any process that has attached; drain() from one
// thread of one process (the consumer).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "uiommufd/base/result.h"

namespace uiommufd::trace {

class Ring {
 public:
  static constexpr std::size_t kSlotSize = 1024;  // a record, with its 16-byte slot header
  static constexpr std::size_t kSlots = 8192;
  static constexpr std::size_t kMaxRecord = kSlotSize - 16;

  // A new ring: a memfd (not close-on-exec, so that exec'd programs inherit it) and the consumer's mapping.
  // Errors: those of memfd_create, ftruncate and mmap (EMFILE, ENOMEM, ...).
  static Result<Ring> create();
  // The ring behind an inherited fd. EINVAL when the fd is not a ring (wrong size or magic).
  static Result<Ring> attach(int fd);

  Ring(Ring&& o) noexcept;
  Ring& operator=(Ring&&) = delete;
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring();

  int fd() const { return fd_; }
  // Forgets the fd without closing it (a producer keeps only the mapping).
  void release_fd() { fd_ = -1; }

  // Puts one record. kTooLong (more than kMaxRecord bytes) and kNoSlot (see above: the consumer is not
  // keeping up or has gone) leave it to the caller to write some other way.
  enum class Put : std::uint8_t { kOk, kTooLong, kNoSlot };
  Put put(std::string_view record);

  // Hands every committed record, in order, to `out`, and frees its slot. A slot whose producer has not
  // committed it for `stuck_ns` while later slots are committed is skipped (`out` gets a note saying so).
  // Returns how many records were handed.
  std::size_t drain(void (*out)(void* ctx, std::string_view record), void* ctx,
                    std::uint64_t stuck_ns = 1000000000);

 private:
  struct Header;
  struct Slot;
  Ring(int fd, void* base) : fd_(fd), base_(base) {}
  Header& header() const;
  Slot& slot(std::uint64_t pos) const;

  int fd_ = -1;
  void* base_ = nullptr;
  // Consumer only: the position it has been waiting at and since when.
  std::uint64_t waiting_pos_ = ~std::uint64_t{0};
  std::uint64_t waiting_since_ = 0;
};

}  // namespace uiommufd::trace
