#include "uiommufd/base/slab.h"

#include <new>
#include <utility>

#include <sys/mman.h>

#include "uiommufd/base/assert.h"
#include "uiommufd/base/base_lock.h"
#include "uiommufd/base/fork.h"
#include "uiommufd/base/sanitizers.h"
#include "uiommufd/base/thread_annotations.h"

namespace uiommufd {

namespace slab_internal {
void throw_bad_alloc() { throw std::bad_alloc(); }
}  // namespace slab_internal

namespace {

// One lock for every cache: allocations are rare next to the work done with the objects, and a single
// lock is one thing to hold across fork.
constinit BaseMutex g_lock{BaseLockId::kSlab};

// The fork handlers (base/fork.h, level kSlab). The child's only thread is the copy of the forking one,
// which holds the lock there too: it releases it. Every cache's state belongs to no thread, so there is
// nothing else to reset. The analysis cannot follow a lock taken in one handler and released in another.
void lock_before_fork() NO_THREAD_SAFETY_ANALYSIS { g_lock.lock(); }
void unlock_after_fork() NO_THREAD_SAFETY_ANALYSIS { g_lock.unlock(); }

[[maybe_unused]] const bool g_fork_handlers_set = [] {
  set_fork_handlers(ForkLevel::kSlab, {lock_before_fork, unlock_after_fork, unlock_after_fork});
  return true;
}();

constexpr std::size_t round_up(std::size_t v, std::size_t a) { return (v + a - 1) & ~(a - 1); }

}  // namespace

// Lives at the start of its chunk; the chunk of an object is its address rounded down to kChunkBytes.
struct Slab::Chunk {
  Chunk* prev = nullptr;  // on the partial list
  Chunk* next = nullptr;
  void* free_list = nullptr;  // freed objects, linked through their first word
  std::size_t carved = 0;     // objects handed out at least once, front to back
  std::size_t live = 0;
  bool on_partial = false;
};

Slab::Slab(std::size_t object_size, Source source)
    : object_size_(round_up(object_size == 0 ? 1 : object_size, kAlign)),
      first_offset_(round_up(sizeof(Chunk), kAlign)),
      per_chunk_((kChunkBytes - first_offset_) / object_size_),
#if defined(UIOMMUFD_SANITIZED)
      chunked_(source == Source::kChunks) {
#else
      chunked_(true) {
  (void)source;
#endif
  UIOMMUFD_ASSERT(per_chunk_ >= 1);
}

Slab::~Slab() {
  // Only an empty cache can go (tests make their own); its spare chunk goes with it.
  BaseGuard g(g_lock);
  UIOMMUFD_ASSERT(live_ == 0);
  if (spare_ != nullptr) release_chunk(spare_);
}

Slab::Chunk* Slab::new_chunk() {
  // Twice the size, then trimmed, for the 2 MiB alignment that both the huge page and the object-to-chunk
  // rounding need.
  const std::size_t span = 2 * kChunkBytes;
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const auto base = reinterpret_cast<std::uintptr_t>(raw);
  const std::uintptr_t aligned = round_up(base, kChunkBytes);
  if (aligned > base) munmap(raw, aligned - base);
  const std::uintptr_t end = base + span, chunk_end = aligned + kChunkBytes;
  if (end > chunk_end) munmap(reinterpret_cast<void*>(chunk_end), end - chunk_end);
  // Only a cache that has already filled a chunk is large enough to be worth a huge page per chunk.
  if (chunks_ >= 1) madvise(reinterpret_cast<void*>(aligned), kChunkBytes, MADV_HUGEPAGE);
  ++chunks_;
  return new (reinterpret_cast<void*>(aligned)) Chunk();
}

void Slab::release_chunk(Chunk* c) {
  c->~Chunk();
  munmap(c, kChunkBytes);
  --chunks_;
}

void* Slab::alloc() {
  BaseGuard g(g_lock);
  if (!chunked_) {
    void* heap = ::operator new (object_size_, std::align_val_t{kAlign}, std::nothrow);
    if (heap != nullptr) ++live_;
    return heap;
  }
  Chunk* c = partial_;
  if (c == nullptr) {
    c = spare_ != nullptr ? std::exchange(spare_, nullptr) : new_chunk();
    if (c == nullptr) return nullptr;
    c->on_partial = true;
    c->next = nullptr;
    partial_ = c;
  }
  void* p;
  if (c->free_list != nullptr) {
    p = c->free_list;
    c->free_list = *static_cast<void**>(p);
  } else {
    p = reinterpret_cast<char*>(c) + first_offset_ + c->carved * object_size_;
    ++c->carved;
  }
  ++c->live;
  ++live_;
  if (c->live == per_chunk_) {
    // Full: off the list until something in it is freed.
    partial_ = c->next;
    if (partial_ != nullptr) partial_->prev = nullptr;
    c->prev = c->next = nullptr;
    c->on_partial = false;
  }
  return p;
}

void Slab::free(void* p) {
  BaseGuard g(g_lock);
  if (!chunked_) {
    UIOMMUFD_DCHECK(live_ > 0);
    --live_;
    ::operator delete (p, std::align_val_t{kAlign});
    return;
  }
  auto* c = reinterpret_cast<Chunk*>(reinterpret_cast<std::uintptr_t>(p) & ~(kChunkBytes - 1));
  UIOMMUFD_DCHECK(c->live > 0 && live_ > 0);
  *static_cast<void**>(p) = c->free_list;
  c->free_list = p;
  --c->live;
  --live_;
  if (!c->on_partial) {
    c->on_partial = true;
    c->prev = nullptr;
    c->next = partial_;
    if (partial_ != nullptr) partial_->prev = c;
    partial_ = c;
  }
  if (c->live != 0) return;
  // Empty: off the list, and kept as the spare or given back.
  if (c->prev != nullptr)
    c->prev->next = c->next;
  else
    partial_ = c->next;
  if (c->next != nullptr) c->next->prev = c->prev;
  c->prev = c->next = nullptr;
  c->on_partial = false;
  c->free_list = nullptr;
  c->carved = 0;
  if (spare_ == nullptr) {
    spare_ = c;
  } else {
    release_chunk(c);
  }
}

std::size_t Slab::live_objects() const {
  BaseGuard g(g_lock);
  return live_;
}

std::size_t Slab::chunks() const {
  BaseGuard g(g_lock);
  return chunks_;
}

}  // namespace uiommufd
