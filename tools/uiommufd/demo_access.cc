// `uiommufd demo`: the seed story on the real engine (Context, Ioas, Device, Access), then the lock
// validator catching the access-unmap driver bug in a child process. See demo_access.h.

#include "demo_access.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lockdep_graph.h"

#include "uiommufd/base/page.h"
#include "uiommufd/base/result.h"
#include "uiommufd/base/status.h"
#include "uiommufd/base/thread_annotations.h"
#include "uiommufd/dump/format.h"
#include "uiommufd/dump/snapshot.h"
#include "uiommufd/lockdep/config.h"
#include "uiommufd/lockdep/dot.h"
#include "uiommufd/lockdep/lockdep.h"
#include "uiommufd/lockdep/mutex.h"
#include "uiommufd/objects/access.h"
#include "uiommufd/objects/context.h"
#include "uiommufd/objects/device.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/objects/pinned_ranges.h"
#include "uiommufd/pages/pages.h"

namespace uiommufd::tools {

// The drivers live in a named namespace, not an anonymous one, and their lock-taking functions are
// neither inlined nor cloned (g++ would otherwise emit a local ".isra" copy), so the frames in the
// validator's report, symbolised with dladdr, which sees only exported symbols, name them.
#if defined(__clang__)
#define UIOMMUFD_DEMO_FRAME [[gnu::noinline]]
#else
#define UIOMMUFD_DEMO_FRAME [[gnu::noinline, gnu::noclone]]
#endif

namespace demo {

using u64 = std::uint64_t;
using Clock = std::chrono::steady_clock;

// Where the pictures of the two parts go: a fresh directory under $TMPDIR (or /tmp); empty when it could
// not be made (the demo then says so and goes on without pictures).
std::string g_picture_dir;

void make_picture_dir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/uiommufd-demo-XXXXXX";
  if (mkdtemp(templ.data())) g_picture_dir = templ;
}

// Part 1's picture: the IOAS as the engine holds it now (dump/format.h's SVG). Empty on failure.
std::string write_ioas_picture(Context& ctx, std::uint32_t ioas_id) {
  if (g_picture_dir.empty()) return {};
  Result<dump::ContextSnapshot> snap = dump::snapshot_context(ctx, 1);
  if (!snap.ok()) return {};
  for (const dump::IoasSnapshot& ioas : snap->ioases) {
    if (ioas.id != ioas_id) continue;
    const std::string path = g_picture_dir + "/part1-ioas.svg";
    std::ofstream out(path);
    out << dump::format_svg(*snap, ioas, getpid(), 1);
    return out.good() ? path : std::string();
  }
  return {};
}
std::string g_part1_picture;

// Graphviz's dot on PATH, to render part 2's lock graph (lockdep-graph says how to get it when it is not).
bool have_dot() {
  const char* path = std::getenv("PATH");
  for (std::string_view rest = path ? path : ""; !rest.empty();) {
    const std::size_t colon = rest.find(':');
    const std::string dir(rest.substr(0, colon));
    if (!dir.empty() && access((dir + "/dot").c_str(), X_OK) == 0) return true;
    rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
  }
  return false;
}

constexpr u64 kMiB = u64{1} << 20;
constexpr u64 kKiB = u64{1} << 10;
// Guest RAM: 4 MiB (within the default 8 MiB RLIMIT_MEMLOCK of an unprivileged user), mapped as 4 areas
// of 1 MiB, as a VMM maps memory slots, at guest physical address = IOVA 1 GiB.
constexpr u64 kSlot = kMiB;
constexpr u64 kSlots = 4;
constexpr u64 kGuestSize = kSlots * kSlot;
constexpr u64 kGuestBase = 0x40000000;
// The device's DMA buffer: 64 KiB inside slot 2.
constexpr u64 kBufSlot = 2;
constexpr u64 kBufIova = kGuestBase + kBufSlot * kSlot + 0x10000;
constexpr u64 kBufSize = 64 * kKiB;
constexpr std::uint32_t kMapRW = Ioas::kReadable | Ioas::kWriteable | Ioas::kFixedIova;
constexpr int kChildTimeoutSeconds = 10;

unsigned long long ull(u64 v) { return static_cast<unsigned long long>(v); }
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// "1 MiB", "64 KiB", "4296 bytes".
std::string size_str(u64 n) {
  if (n % kMiB == 0) return std::to_string(n / kMiB) + " MiB";
  if (n % kKiB == 0) return std::to_string(n / kKiB) + " KiB";
  return std::to_string(n) + " bytes";
}

// What part 1 did, for the summary.
struct Counters {
  u64 maps = 0, pins = 0, rw_calls = 0, rw_bytes = 0, unmaps = 0, callbacks = 0, pinned_peak = 0;
};
Counters g_ops;

u64 pinned_now() {
  const u64 n = Pages::total_pinned_pages();
  g_ops.pinned_peak = std::max(g_ops.pinned_peak, n);
  return n;
}

bool ok(const Status& st, const char* what) {
  if (st.ok()) return true;
  std::printf("  !! %s failed: %s\n", what, st.to_string().c_str());
  if (st.error() == ENOMEM) {
    rlimit lim{};
    getrlimit(RLIMIT_MEMLOCK, &lim);
    std::printf("  !! pinning is charged to RLIMIT_MEMLOCK (soft limit %llu KiB here) unless the process has\n"
                "  !! CAP_IPC_LOCK; the demo pins %llu MiB: raise it (ulimit -l %llu) and run again\n",
                ull(lim.rlim_cur == RLIM_INFINITY ? 0 : lim.rlim_cur / kKiB), ull(kGuestSize / kMiB),
                ull(2 * kGuestSize / kKiB));
  }
  return false;
}

bool expect(bool cond, const char* what) {
  if (!cond) std::printf("  !! not as expected: %s\n", what);
  return cond;
}

// Guest RAM as the VMM allocates it: anonymous memory. Must outlive the Context that maps it.
class GuestRam {
 public:
  explicit GuestRam(u64 size) : size_(size) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mem_ = p == MAP_FAILED ? nullptr : static_cast<unsigned char*>(p);
  }
  ~GuestRam() {
    if (mem_) munmap(mem_, size_);
  }
  GuestRam(const GuestRam&) = delete;
  GuestRam& operator=(const GuestRam&) = delete;
  unsigned char* at(u64 iova) const { return mem_ + (iova - kGuestBase); }
  u64 uptr(u64 offset) const { return reinterpret_cast<u64>(mem_) + offset; }
  bool valid() const { return mem_ != nullptr; }

 private:
  u64 size_;
  unsigned char* mem_;
};

// Set by the VMM around Ioas::unmap; read by the callback. Part 1 runs on one thread.
bool g_vmm_in_unmap = false;
std::thread::id g_vmm_thread;

// A correct emulated-device driver in the manner of the kernel's test access: it records its pins under
// its own lock and, told of an unmap, unpins every pin that intersects the range.
class EmulatedDevice {
 public:
  struct Callback {
    u64 iova = 0, length = 0, unpinned_bytes = 0;
    bool inside_unmap = false, on_vmm_thread = false;
  };

  explicit EmulatedDevice(Context& ctx) {
    Access::Ops ops;
    ops.unmap = [this](u64 iova, u64 length) { on_unmap(iova, length); };
    Result<ObjectRef<Access>> r = Access::create(ctx, std::move(ops));
    if (r.ok()) {
      access_ = std::move(*r);
      raw_ = access_.get();
    }
  }
  ~EmulatedDevice() {
    if (access_) Access::destroy(std::move(access_));
  }
  EmulatedDevice(const EmulatedDevice&) = delete;
  EmulatedDevice& operator=(const EmulatedDevice&) = delete;

  bool created() const { return raw_ != nullptr; }
  Access& access() { return *raw_; }

  Status pin(u64 iova, u64 length, std::vector<AccessPage>* pages) {
    ++g_ops.pins;
    return ranges_.pin(*raw_, iova, length, pages, Access::kPinWrite).status();
  }
  Status rw(u64 iova, void* data, u64 length, std::uint32_t flags) {
    ++g_ops.rw_calls;
    Status st = raw_->rw(iova, data, length, flags);
    if (st.ok()) g_ops.rw_bytes += length;
    return st;
  }
  std::size_t pins() { return ranges_.size(); }
  std::vector<Callback> callbacks() {
    lockdep::MutexGuard g(ranges_.mutex());
    return callbacks_;
  }

  // The right order: mark closing under the lock, drop it, then destroy the access (whose callback takes
  // the lock).
  UIOMMUFD_DEMO_FRAME void close() {
    {
      lockdep::MutexGuard g(ranges_.mutex());
      closing_ = true;
    }
    Access::destroy(std::move(access_));
    raw_ = nullptr;
  }

 private:
  UIOMMUFD_DEMO_FRAME void on_unmap(u64 iova, u64 length) {
    lockdep::MutexGuard g(ranges_.mutex());
    ++g_ops.callbacks;
    Callback c{iova, length, 0, g_vmm_in_unmap, std::this_thread::get_id() == g_vmm_thread};
    c.unpinned_bytes = ranges_.unmap_locked(*raw_, iova, length);  // may run inside destroy(): raw_ is alive
    callbacks_.push_back(c);
  }

  static lockdep::LockClassKey& lock_class() {
    static lockdep::LockClassKey key{"driver.lock"};
    return key;
  }

  // The driver's lock ("driver.lock") is the pin bookkeeping's mutex.
  PinnedRanges ranges_{lock_class()};
  ObjectRef<Access> access_;
  Access* raw_ = nullptr;
  bool closing_ GUARDED_BY(ranges_.mutex()) = false;
  std::vector<Callback> callbacks_ GUARDED_BY(ranges_.mutex());
};

Status vmm_unmap(Ioas& ioas, u64 iova, u64 length, u64* unmapped) {
  ++g_ops.unmaps;
  g_vmm_in_unmap = true;
  Status st = ioas.unmap(iova, length, unmapped);
  g_vmm_in_unmap = false;
  return st;
}

// Part 1. Returns true when every step did exactly what the narration says.
bool run_vmm_and_device() {
  g_vmm_thread = std::this_thread::get_id();
  const u64 pinned0 = pinned_now();
  const u64 guest_pages = kGuestSize / kPageSize;
  const u64 slot_pages = kSlot / kPageSize;

  GuestRam ram(kGuestSize);
  if (!expect(ram.valid(), "mmap of guest RAM")) return false;
  Result<std::unique_ptr<Context>> ctx_r = Context::create();
  if (!ok(ctx_r.status(), "Context::create")) return false;
  std::unique_ptr<Context> ctx = std::move(*ctx_r);
  Result<std::uint32_t> ioas_id_r = Ioas::create(*ctx);
  if (!ok(ioas_id_r.status(), "Ioas::create")) return false;
  const std::uint32_t ioas_id = *ioas_id_r;
  Result<ObjectRef<Ioas>> ioas_r = ctx->get<Ioas>(ioas_id, ObjectType::kIoas);
  if (!ok(ioas_r.status(), "lookup of the IOAS")) return false;
  ObjectRef<Ioas> ioas = std::move(*ioas_r);

  for (u64 s = 0; s < kSlots; ++s) {
    u64 iova = kGuestBase + s * kSlot;
    ++g_ops.maps;
    if (!ok(ioas->map(ram.uptr(s * kSlot), kSlot, &iova, kMapRW), "Ioas::map")) return false;
  }
  std::printf("  VMM: context and IOAS %u; mapped %llu MiB of guest RAM at IOVA %#llx as %llu areas of 1 MiB\n",
              ioas_id, ull(kGuestSize / kMiB), ull(kGuestBase), ull(kSlots));

  Result<std::uint32_t> dev_id_r = Device::create(*ctx, Device::Kind::kSoftware);
  if (!ok(dev_id_r.status(), "Device::create")) return false;
  Result<ObjectRef<Device>> dev_r = ctx->get<Device>(*dev_id_r, ObjectType::kDevice);
  if (!ok(dev_r.status(), "lookup of the device")) return false;
  ObjectRef<Device> dev = std::move(*dev_r);
  Result<std::uint32_t> hwpt_r = dev->attach(ioas_id);
  if (!ok(hwpt_r.status(), "Device::attach")) return false;
  const u64 pinned1 = pinned_now();
  std::printf("  VMM: device %u (software IOMMU) attached: HWPT %u, a software domain; pinned pages %llu -> %llu\n",
              *dev_id_r, *hwpt_r, ull(pinned0 - pinned0), ull(pinned1 - pinned0));
  if (!expect(pinned1 - pinned0 == guest_pages, "the domain pins every guest page")) return false;

  EmulatedDevice device(*ctx);
  if (!expect(device.created(), "Access::create")) return false;
  if (!ok(device.access().attach(ioas_id), "Access::attach")) return false;
  std::printf("  device: an access created with an unmap callback, attached to IOAS %u\n", ioas_id);

  std::vector<AccessPage> pages;
  if (!ok(device.pin(kBufIova, kBufSize, &pages), "pin_pages")) return false;
  bool own_pages = pages.size() == kBufSize / kPageSize;
  for (std::size_t i = 0; own_pages && i < pages.size(); ++i)
    own_pages = pages[i].address == ram.at(kBufIova + i * kPageSize);
  const u64 pinned2 = pinned_now();
  std::printf("  device: pin_pages of its %s DMA buffer at IOVA %#llx: %zu pages, %s;\n"
              "          pinned pages stay %llu (the domain had pinned them; a page is pinned once)\n",
              size_str(kBufSize).c_str(), ull(kBufIova), pages.size(),
              own_pages ? "each the guest's own page" : "NOT the guest's pages", ull(pinned2 - pinned0));
  if (!expect(own_pages && pinned2 == pinned1, "the pin returns the guest's pages and pins nothing new"))
    return false;

  // The guest puts a request in the buffer; the device reads it, then writes a reply that straddles a
  // page boundary at an unaligned IOVA, on each path.
  bool rw_ok = true;
  const u64 reply_iova = kBufIova + 3 * kPageSize - 100;
  const u64 reply_len = kPageSize + 200;
  for (std::uint32_t path : {0u, Access::kRwSlowPath}) {
    const unsigned char tag = path ? 0xb0 : 0xa0;
    std::memset(ram.at(kBufIova), tag, kPageSize);
    std::vector<unsigned char> buf(kPageSize);
    if (!ok(device.rw(kBufIova, buf.data(), buf.size(), path), "rw read")) return false;
    rw_ok &= std::memcmp(buf.data(), ram.at(kBufIova), kPageSize) == 0;
    std::vector<unsigned char> reply(reply_len, static_cast<unsigned char>(tag + 1));
    if (!ok(device.rw(reply_iova, reply.data(), reply.size(), Access::kRwWrite | path), "rw write")) return false;
    rw_ok &= std::memcmp(ram.at(reply_iova), reply.data(), reply.size()) == 0;
  }
  std::printf("  device: rw read the guest's 4 KiB request and wrote a reply of %s at IOVA %#llx\n"
              "          (unaligned, across a page), on the fast and the slow path: %s\n",
              size_str(reply_len).c_str(), ull(reply_iova),
              rw_ok ? "guest RAM has exactly those bytes" : "BYTES DIFFER");
  if (!expect(rw_ok, "rw moves the right bytes")) return false;
  // The IOAS at its busiest: every area in the domain, the device's pin on its buffer.
  g_part1_picture = write_ioas_picture(*ctx, ioas_id);

  const u64 slot_iova = kGuestBase + kBufSlot * kSlot;
  std::printf("  VMM: unmaps [%#llx, +1 MiB), the area holding the buffer, while the device holds its pin\n",
              ull(slot_iova));
  u64 unmapped = 0;
  if (!ok(vmm_unmap(*ioas, slot_iova, kSlot, &unmapped), "Ioas::unmap")) return false;
  std::vector<EmulatedDevice::Callback> calls = device.callbacks();
  if (!expect(calls.size() == 1, "exactly one callback during the unmap")) return false;
  const EmulatedDevice::Callback c = calls[0];
  std::printf("    callback(%#llx, %s) %s Ioas::unmap, on the VMM's thread, no engine lock held:\n"
              "    it took driver.lock and unpinned its %s (unpin_pages re-enters the engine)\n",
              ull(c.iova), size_str(c.length).c_str(), c.inside_unmap ? "from inside" : "AFTER",
              size_str(c.unpinned_bytes).c_str());
  const u64 pinned3 = pinned_now();
  std::printf("  VMM: unmap returned success, %s unmapped; pinned pages %llu -> %llu\n", size_str(unmapped).c_str(),
              ull(pinned2 - pinned0), ull(pinned3 - pinned0));
  if (!expect(c.iova == slot_iova && c.length == kSlot && c.inside_unmap && c.on_vmm_thread &&
                  c.unpinned_bytes == kBufSize && device.pins() == 0,
              "the callback covers the area, runs inside the unmap, and unpins the buffer"))
    return false;
  if (!expect(unmapped == kSlot && pinned3 - pinned0 == guest_pages - slot_pages, "the unmap removes the area"))
    return false;

  if (!ok(dev->detach(), "Device::detach")) return false;
  const u64 pinned4 = pinned_now();
  std::printf("  VMM: device detached, its automatic HWPT destroyed: pinned pages %llu -> %llu\n",
              ull(pinned3 - pinned0), ull(pinned4 - pinned0));
  if (!expect(pinned4 == pinned0, "no pin left once the domain is gone")) return false;

  const u64 mismatches = device.access().unpin_mismatches();
  device.close();
  calls = device.callbacks();
  std::printf("  device: close() marks itself closing under driver.lock, drops it, then Access::destroy:\n"
              "    the callback ran once more, for all of IOVA, with nothing left to unpin; destroy returned\n");
  if (!expect(calls.size() == 2 && calls[1].iova == 0 && calls[1].length == kUlongMax &&
                  calls[1].unpinned_bytes == 0 && mismatches == 0,
              "destroy calls back once for the whole range"))
    return false;

  if (!ok(vmm_unmap(*ioas, 0, kUlongMax, &unmapped), "Ioas::unmap of everything")) return false;
  const bool rest_ok = unmapped == kGuestSize - kSlot;
  dev.reset();
  ioas.reset();
  ctx.reset();
  const u64 pinned5 = pinned_now();
  std::printf("  VMM: unmapped the other %s and closed the context: pinned pages %llu\n",
              size_str(unmapped).c_str(), ull(pinned5 - pinned0));
  if (!expect(rest_ok && pinned5 == pinned0, "the rest unmaps and nothing stays pinned")) return false;

  const std::size_t reports = lockdep::report_count();
  if (lockdep::kCompiledIn) {
    const lockdep::Stats st = lockdep::stats();
    std::printf("  validator: %zu reports (it watched every lock: %zu classes, %zu dependencies)\n", reports,
                st.classes, st.dependencies);
  } else {
    std::printf("  validator: compiled out of this build (UIOMMUFD_LOCKDEP=OFF)\n");
  }
  return expect(reports == 0, "no validator report for the correct driver");
}

// ---- Part 2: the buggy driver, in a child process ----

// It holds its lock across Access::destroy, and its unmap callback takes the same lock.
class BuggyDriver {
 public:
  explicit BuggyDriver(Context& ctx) {
    Access::Ops ops;
    ops.unmap = [this](u64 iova, u64 length) { on_unmap(iova, length); };
    Result<ObjectRef<Access>> r = Access::create(ctx, std::move(ops));
    if (r.ok()) {
      access_ = std::move(*r);
      raw_ = access_.get();
    }
  }
  bool created() const { return raw_ != nullptr; }
  Access& access() { return *raw_; }

  UIOMMUFD_DEMO_FRAME Status pin(u64 iova, u64 length) {
    return ranges_.pin(*raw_, iova, length, nullptr, 0).status();
  }

  // The bug: driver lock held across destroy. With the newest semantics destroy calls the callback from
  // this thread, which would then wait for the lock this thread holds.
  UIOMMUFD_DEMO_FRAME void close_holding_lock() {
    lockdep::MutexGuard g(ranges_.mutex());
    closing_ = true;
    Access::destroy(std::move(access_));
  }

 private:
  UIOMMUFD_DEMO_FRAME void on_unmap(u64 iova, u64 length) { ranges_.unmap(*raw_, iova, length); }

  static lockdep::LockClassKey& lock_class() {
    static lockdep::LockClassKey key{"buggy_driver.lock"};
    return key;
  }

  PinnedRanges ranges_{lock_class()};
  ObjectRef<Access> access_;
  Access* raw_ = nullptr;
  bool closing_ GUARDED_BY(ranges_.mutex()) = false;
};

// The child's whole life. Returns only if something went wrong: 3 a setup step failed, 4 the buggy
// destroy returned (neither reported nor deadlocked).
UIOMMUFD_DEMO_FRAME int run_buggy_child() {
  lockdep::set_print_reports(true);
  lockdep::set_mode(lockdep::Mode::kAbort);
  GuestRam ram(2 * kSlot);
  if (!ram.valid()) return 3;
  Result<std::unique_ptr<Context>> ctx_r = Context::create();
  if (!ctx_r.ok()) return 3;
  std::unique_ptr<Context> ctx = std::move(*ctx_r);
  Result<std::uint32_t> ioas_id = Ioas::create(*ctx);
  if (!ioas_id.ok()) return 3;
  Result<ObjectRef<Ioas>> ioas = ctx->get<Ioas>(*ioas_id, ObjectType::kIoas);
  if (!ioas.ok()) return 3;
  for (u64 s = 0; s < 2; ++s) {
    u64 iova = kGuestBase + s * kSlot;
    if (!(*ioas)->map(ram.uptr(s * kSlot), kSlot, &iova, kMapRW).ok()) return 3;
  }
  BuggyDriver driver(*ctx);
  if (!driver.created() || !driver.access().attach(*ioas_id).ok()) return 3;
  u64 unmapped = 0;
  if (!driver.pin(kGuestBase, kPageSize).ok() || !(*ioas)->unmap(kGuestBase, kSlot, &unmapped).ok() ||
      !driver.pin(kGuestBase + kSlot, kPageSize).ok())
    return 3;
  std::printf("  [child %d] mapped 2 MiB, attached, pinned; an unmap ran the callback (took buggy_driver.lock)\n"
              "  [child %d] close(): takes buggy_driver.lock, then calls Access::destroy ...\n",
              static_cast<int>(getpid()), static_cast<int>(getpid()));
  std::fflush(stdout);
  // The report that stops this process leaves the lock graph, its cycle in red, where the parent looks.
  // (Unless UIOMMUFD_LOCKDEP_DOT already says where the picture goes.)
  if (!g_picture_dir.empty() && lockdep::dot_file_from_environment().empty())
    (void)lockdep::set_dot_file(g_picture_dir + "/part2-locks.dot");
  // No core file for the abort we expect.
  const rlimit no_core{0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  driver.close_holding_lock();
  std::printf("  [child] !! Access::destroy returned: the validator did not stop it\n");
  std::fflush(stdout);
  return 4;
}

bool contains(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

// Part 2. Returns true when the child was aborted by the validator with the expected report.
bool run_buggy_driver_in_child() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    std::printf("  !! pipe2: %s\n", std::strerror(errno));
    return false;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  const Clock::time_point start = Clock::now();
  const pid_t pid = fork();
  if (pid < 0) {
    std::printf("  !! fork: %s\n", std::strerror(errno));
    return false;
  }
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], STDERR_FILENO);  // the validator's report goes to the parent
    close(fds[1]);
    const int rc = run_buggy_child();
    std::fflush(stdout);
    _exit(rc);
  }
  close(fds[1]);

  // Collect the child's stderr until it closes, then reap the child; give up after the timeout.
  const Clock::time_point deadline = start + std::chrono::seconds(kChildTimeoutSeconds);
  std::string captured;
  bool eof = false;
  while (!eof && Clock::now() < deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{fds[0], POLLIN, 0};
    const int n = poll(&p, 1, static_cast<int>(std::max<long long>(left, 1)));
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    char buf[4096];
    const ssize_t got = read(fds[0], buf, sizeof buf);
    if (got > 0) {
      captured.append(buf, static_cast<std::size_t>(got));
    } else if (got == 0 || errno != EINTR) {
      eof = true;
    }
  }
  close(fds[0]);
  int status = 0;
  pid_t reaped = 0;
  while ((reaped = waitpid(pid, &status, WNOHANG)) == 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const bool timed_out = reaped == 0;
  if (timed_out) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  const double elapsed = ms_since(start);

  if (timed_out) {
    std::printf("  !! the child was still running after %d s (deadlocked, not reported): killed it\n",
                kChildTimeoutSeconds);
  } else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT) {
    std::printf("  child killed by SIGABRT after %.1f ms; its stderr:\n", elapsed);
  } else if (WIFSIGNALED(status)) {
    std::printf("  !! child killed by signal %d (%s) after %.1f ms; its stderr:\n", WTERMSIG(status),
                strsignal(WTERMSIG(status)), elapsed);
  } else {
    std::printf("  !! child exited with status %d after %.1f ms (3: setup failed, 4: destroy returned)\n",
                WIFEXITED(status) ? WEXITSTATUS(status) : -1, elapsed);
  }
  std::printf("--- the validator's report (the child's stderr) ---\n%s--- end of report ---\n", captured.c_str());
  const bool aborted = !timed_out && WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
  const bool reported = contains(captured, "WARNING: possible circular locking dependency detected") &&
                        contains(captured, "buggy_driver.lock") && contains(captured, "access_unmap");
  if (aborted && reported) {
    std::printf("  The validator stopped the child in Access::destroy, at its touch of access_unmap,\n"
                "  before the callback could block on buggy_driver.lock.\n");
    return true;
  }
  expect(aborted, "the child is aborted by the validator (SIGABRT)");
  expect(reported, "a circular-dependency report naming buggy_driver.lock and access_unmap");
  return false;
}

// Says where the two pictures are, rendering part 2's with Graphviz when it is installed.
void print_pictures(bool part2) {
  std::printf("Pictures\n");
  if (g_picture_dir.empty()) {
    std::printf("  none: no directory could be made under $TMPDIR or /tmp\n");
    return;
  }
  if (!g_part1_picture.empty())
    std::printf(
        "  part 1, the IOAS while the device held its pin (areas, the domain, pinned runs):\n    %s\n",
        g_part1_picture.c_str());
  else
    std::printf("  part 1: the picture could not be written\n");
  if (const char* env = std::getenv("UIOMMUFD_LOCKDEP_DOT"); env && *env) {
    std::printf("  part 2: the lock graph went where UIOMMUFD_LOCKDEP_DOT says (%s; %%p: the child's pid)\n",
                env);
    return;
  }
  const std::string dot = g_picture_dir + "/part2-locks.dot";
  if (!part2 || access(dot.c_str(), R_OK) != 0) {
    std::printf("  part 2: no lock graph (%s)\n",
                lockdep::kCompiledIn ? "the child wrote none" : "no validator");
    return;
  }
  std::printf("  part 2, the lock classes with the reported cycle in red (Graphviz DOT):\n    %s\n",
              dot.c_str());
  if (!have_dot()) {
    std::printf("    (to render it: apt-get install graphviz, then uiommufd lockdep-graph %s)\n",
                dot.c_str());
    return;
  }
  std::string svg = g_picture_dir + "/part2-locks.svg";
  char* args[] = {const_cast<char*>(dot.c_str()), const_cast<char*>("-o"), svg.data(), nullptr};
  std::fflush(stdout);
  if (lockdep_graph(3, args, "") == 0) std::printf("    %s\n", svg.c_str());
}

int run() {
  const Clock::time_point start = Clock::now();
  // Report mode whatever UIOMMUFD_LOCKDEP says: part 1 must be watched and must not abort.
  lockdep::ScopedMode mode(lockdep::Mode::kReport);
  lockdep::set_print_reports(true);
  make_picture_dir();

  std::printf(
      "uiommufd demo: an emulated device doing DMA through the engine, then the lock validator\n"
      "catching a driver that would deadlock on its own unmap callback.\n"
      "\n"
      "Part 1: a VMM, its guest memory, and a correct emulated device (an iommufd access)\n");
  std::fflush(stdout);
  const bool part1 = run_vmm_and_device();
  std::printf("  Part 1: %s\n\n", part1 ? "everything as expected" : "FAILED");

  bool part2 = false;
  if (lockdep::kCompiledIn) {
    std::printf(
        "Part 2: a driver that holds its lock across Access::destroy\n"
        "  Its unmap callback takes buggy_driver.lock; its close() takes that lock, then destroys the\n"
        "  access. Destroy calls the callback on the closing thread, which would wait forever for the\n"
        "  lock its own thread holds. So it runs in a child process with the validator in abort mode;\n"
        "  the parent captures the child's stderr and would kill it if still running after %d s.\n",
        kChildTimeoutSeconds);
    part2 = run_buggy_driver_in_child();
    std::printf("  Part 2: %s\n\n", part2 ? "reported, as expected" : "FAILED");
  } else {
    std::printf(
        "Part 2 skipped: the lock validator is compiled out of this build (UIOMMUFD_LOCKDEP=OFF), so\n"
        "the buggy driver would simply deadlock. Use the release preset (make demo).\n\n");
  }

  std::printf(
      "Summary\n"
      "  part 1 operations: %llu maps, %llu pin_pages, %llu rw, %llu unmaps, %llu callbacks (unmap, destroy)\n"
      "  pinned pages:      peak %llu (%s, the domain's; the access's pin shared them), 0 at the end\n"
      "  bytes moved by rw: %llu\n"
      "  wall time:         %.1f ms (%s)\n",
      ull(g_ops.maps), ull(g_ops.pins), ull(g_ops.rw_calls), ull(g_ops.unmaps), ull(g_ops.callbacks),
      ull(g_ops.pinned_peak), size_str(g_ops.pinned_peak * kPageSize).c_str(), ull(g_ops.rw_bytes), ms_since(start),
      lockdep::kCompiledIn ? "both parts, the child process included" : "part 1");
  print_pictures(part2);
  if (!lockdep::kCompiledIn) {
    std::printf("SKIPPED: part 1 %s; part 2 needs the validator.\n", part1 ? "passed" : "FAILED");
    return part1 ? 77 : 1;
  }
  if (part1 && part2) {
    std::printf("PASS: the device did its DMA and unmapped cleanly; the buggy driver was reported.\n");
    return 0;
  }
  std::printf("FAIL: part 1 %s, part 2 %s.\n", part1 ? "passed" : "failed", part2 ? "passed" : "failed");
  return 1;
}

}  // namespace demo

int run_demo() { return demo::run(); }

}  // namespace uiommufd::tools
