// The list of live IommufdFiles that IommufdFile::live_files() reads (the dump's way to every context of
// the process, docs/dump.md). Intrusive, so that opening a file cannot fail on it.
#include <atomic>
#include <memory>
#include <vector>

#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/uapi/file.h"

namespace uiommufd::uapi {

namespace {

struct LiveFiles {
  lockdep::Mutex mu{"uapi.live_files"};
  IommufdFile* head GUARDED_BY(mu) = nullptr;
  IommufdFile* tail GUARDED_BY(mu) = nullptr;
  std::uint64_t next_serial GUARDED_BY(mu) = 1;
  std::size_t count GUARDED_BY(mu) = 0;
};

std::atomic<void (*)()> g_open_hook{nullptr};

LiveFiles& live() {
  static auto* files = new LiveFiles;  // never destroyed: files may be closed during static destruction
  return *files;
}

}  // namespace

// The links of each file are guarded by the list's lock too (the header cannot name it).
void IommufdFile::register_live() {
  LiveFiles& l = live();
  {
    lockdep::MutexGuard g(l.mu);
    serial_ = l.next_serial++;
    live_prev_ = l.tail;
    (l.tail ? l.tail->live_next_ : l.head) = this;
    l.tail = this;
    ++l.count;
  }
  if (void (*hook)() = g_open_hook.load(std::memory_order_acquire)) hook();
}

void IommufdFile::set_open_hook(void (*hook)()) { g_open_hook.store(hook, std::memory_order_release); }

void IommufdFile::unregister_live() {
  if (serial_ == 0) return;  // never listed: open() failed before it could be
  LiveFiles& l = live();
  lockdep::MutexGuard g(l.mu);
  (live_prev_ ? live_prev_->live_next_ : l.head) = live_next_;
  (live_next_ ? live_next_->live_prev_ : l.tail) = live_prev_;
  live_prev_ = live_next_ = nullptr;
  --l.count;
}

std::vector<std::shared_ptr<IommufdFile>> IommufdFile::live_files() {
  std::vector<std::shared_ptr<IommufdFile>> out;
  LiveFiles& l = live();
  // Room first, with the lock released: nothing under it may throw, since a reference dropped there could
  // be a file's last, whose destructor takes the lock.
  for (;;) {
    std::size_t want = 0;
    {
      lockdep::MutexGuard g(l.mu);
      want = l.count;
    }
    out.reserve(want);
    lockdep::MutexGuard g(l.mu);
    if (l.count > out.capacity()) continue;
    // A file whose last reference has gone stays listed until its destructor takes it off, which waits
    // for this lock: lock() sees it as expired and it is skipped.
    for (IommufdFile* f = l.head; f; f = f->live_next_)
      if (std::shared_ptr<IommufdFile> ref = f->weak_from_this().lock()) out.push_back(std::move(ref));
    return out;
  }
}

}  // namespace uiommufd::uapi
