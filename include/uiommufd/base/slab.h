// Slab: a cache of equal-sized, cache-line-aligned objects carved from 2 MiB-aligned chunks, for the
// objects that large trees are made of (iopt's areas).
//
// Why: an IOVA tree of a million areas is walked from the root on every map, unmap and pin, and nearly every
// node it reads sits on its own 4 KiB page. Each read is then a TLB miss, which under virtualisation costs
// a two-dimensional page walk before the cache miss even starts. The kernel does not pay this: its
// objects live in the direct map, which is mapped with huge pages. A slab chunk is a 2 MiB-aligned region
// that, once the cache has outgrown its first chunk, is advised for transparent huge pages, so a tree's
// nodes share a few hundred translations instead of a quarter of a million. The first chunk of each cache
// stays on 4 KiB pages and is carved front to back, so a program that maps a handful of areas touches a
// few pages, not 2 MiB.
//
// Emptied chunks go back to the system, except one kept spare so that a count hovering at a chunk
// boundary does not map and unmap a chunk per call. Allocation and release take a process-wide lock
// (a leaf: nothing is called under it), held across fork so that a child never inherits it held.
//
// Under AddressSanitizer and ThreadSanitizer objects come from the ordinary heap instead, so that the
// sanitizers still see every use after free and every race on a freed object.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>

namespace uiommufd {

class Slab {
 public:
  static constexpr std::size_t kChunkBytes = std::size_t{2} << 20;
  static constexpr std::size_t kAlign = 64;

  // Where objects come from: chunks, except under the sanitizers (kDefault); chunks always (kChunks, for
  // the slab's own tests, so that the sanitizers check the chunk code too).
  enum class Source { kDefault, kChunks };

  // Objects of `object_size` bytes (rounded up to kAlign), aligned to kAlign. Meant to be a static: a
  // cache must be empty when it is destroyed.
  explicit Slab(std::size_t object_size, Source source = Source::kDefault);
  Slab(const Slab&) = delete;
  Slab& operator=(const Slab&) = delete;
  ~Slab();

  // An uninitialised object, or null when no memory can be had.
  void* alloc();
  // `p` must have come from alloc() of this cache.
  void free(void* p);

  // For tests and figures.
  std::size_t object_size() const { return object_size_; }
  std::size_t objects_per_chunk() const { return per_chunk_; }
  std::size_t live_objects() const;  // allocated and not yet freed
  std::size_t chunks() const;        // mapped, including the spare
  // Whether objects come from chunks (by default, false under the sanitizers).
  bool uses_chunks() const { return chunked_; }

 private:
  struct Chunk;
  Chunk* new_chunk();
  void release_chunk(Chunk* c);

  const std::size_t object_size_;
  const std::size_t first_offset_;  // of the first object from the chunk's start (after the header)
  const std::size_t per_chunk_;
  const bool chunked_;
  // Chunks with at least one free object; full chunks are on no list.
  Chunk* partial_ = nullptr;
  Chunk* spare_ = nullptr;  // empty, kept mapped
  std::size_t chunks_ = 0;
  std::size_t live_ = 0;
};

// Gives a class operator new/delete from a Slab of its own:
//   class Area : public SlabAllocated<Area> { ... };
// A failed allocation throws std::bad_alloc, as the ordinary operator new does.
template <typename T>
class SlabAllocated {
 public:
  static void* operator new(std::size_t size);
  // Null instead of std::bad_alloc.
  static void* operator new(std::size_t size, const std::nothrow_t&) noexcept;
  static void operator delete(void* p, std::size_t size) noexcept;
  static Slab& slab();
};

namespace slab_internal {
[[noreturn]] void throw_bad_alloc();
}

template <typename T>
Slab& SlabAllocated<T>::slab() {
  // Never destroyed: an object may outlive static destruction (held by a thread still running at exit).
  static Slab* const s = new Slab(sizeof(T));
  return *s;
}

template <typename T>
void* SlabAllocated<T>::operator new(std::size_t size) {
  // A derived class of T with more members would not fit the cache's objects.
  if (size != sizeof(T)) return ::operator new(size);
  void* p = slab().alloc();
  if (p == nullptr) slab_internal::throw_bad_alloc();
  return p;
}

template <typename T>
void* SlabAllocated<T>::operator new(std::size_t size, const std::nothrow_t&) noexcept {
  if (size != sizeof(T)) return ::operator new(size, std::nothrow);
  return slab().alloc();
}

template <typename T>
void SlabAllocated<T>::operator delete(void* p, std::size_t size) noexcept {
  if (p == nullptr) return;
  if (size != sizeof(T)) return ::operator delete(p);
  slab().free(p);
}

}  // namespace uiommufd
