#include "uiommufd/base/fault.h"

#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace uiommufd {
namespace {

// Per-thread state. Trivially initialised, so every new thread starts disarmed with no dynamic TLS
// initialisation.
thread_local uint32_t t_fail_nth = 0;
thread_local const char* t_last_injected = nullptr;

// Registry head. A function-local static with a constant initialiser is constant-initialised, so it is
// valid before any dynamic initialiser runs: sites in other translation units can register in any
// order. Atomic because a dlopen'ed library may register sites while another thread lists them.
std::atomic<FaultSite*>& registry_head() {
  static std::atomic<FaultSite*> head{nullptr};
  return head;
}

// The forked child is a copy of the forking thread, counter included; the kernel gives a new task a
// zero counter, so disarm it.
void reset_in_child() {
  t_fail_nth = 0;
  t_last_injected = nullptr;
}

[[maybe_unused]] const bool g_atfork_registered = [] {
  pthread_atfork(nullptr, nullptr, reset_in_child);
  return true;
}();

}  // namespace

FaultSite::FaultSite(const char* name, int err) : name_(name), err_(err) {
  UIOMMUFD_ASSERT(name != nullptr && err > 0 && err <= 4095);
  std::atomic<FaultSite*>& head = registry_head();
  FaultSite* old = head.load(std::memory_order_relaxed);
  do {
    next_ = old;
  } while (!head.compare_exchange_weak(old, this, std::memory_order_release, std::memory_order_relaxed));
}

void fail_nth_set(uint32_t n) { t_fail_nth = n; }

uint32_t fail_nth_get() { return t_fail_nth; }

bool should_fail(FaultSite& site) {
  site.hits_.fetch_add(1, std::memory_order_relaxed);
  if (t_fail_nth == 0) [[likely]] return false;
  if (--t_fail_nth != 0) return false;
  site.injected_.fetch_add(1, std::memory_order_relaxed);
  t_last_injected = site.name_;
  return true;
}

const char* last_injected_fault() { return t_last_injected; }

std::vector<const FaultSite*> fault_sites() {
  std::vector<const FaultSite*> out;
  for (const FaultSite* s = registry_head().load(std::memory_order_acquire); s != nullptr; s = s->next_) {
    out.push_back(s);
  }
  std::sort(out.begin(), out.end(),
            [](const FaultSite* a, const FaultSite* b) { return std::strcmp(a->name(), b->name()) < 0; });
  return out;
}

Result<uint32_t> parse_kstrtouint(std::string_view text) {
  // The kernel parses a NUL-terminated copy of the user's bytes.
  if (size_t nul = text.find('\0'); nul != std::string_view::npos) text = text.substr(0, nul);

  size_t i = 0;
  if (i < text.size() && text[i] == '+') ++i;

  // _parse_integer_fixup_radix: "0x" counts as a hex prefix only when a hex digit follows; otherwise
  // the leading 0 selects octal and the 'x' is left over (EINVAL).
  auto at = [&](size_t k) -> char { return k < text.size() ? text[k] : '\0'; };
  auto hex_value = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  unsigned base = 10;
  if (at(i) == '0') {
    if ((at(i + 1) == 'x' || at(i + 1) == 'X') && hex_value(at(i + 2)) >= 0) {
      base = 16;
      i += 2;
    } else {
      base = 8;
    }
  }

  // _parse_integer: accumulate in 64 bits, remembering overflow but consuming every digit.
  uint64_t value = 0;
  bool overflow = false;
  size_t digits_start = i;
  for (; i < text.size(); ++i) {
    int d = hex_value(text[i]);
    if (d < 0 || static_cast<unsigned>(d) >= base) break;
    uint64_t next = 0;
    if (__builtin_mul_overflow(value, base, &next) || __builtin_add_overflow(next, static_cast<uint64_t>(d), &next)) {
      overflow = true;
    }
    value = next;
  }
  if (overflow) return Status::error(ERANGE);
  if (i == digits_start) return Status::error(EINVAL);
  if (i < text.size() && text[i] == '\n') ++i;
  if (i != text.size()) return Status::error(EINVAL);
  if (value > UINT32_MAX) return Status::error(ERANGE);
  return static_cast<uint32_t>(value);
}

}  // namespace uiommufd
