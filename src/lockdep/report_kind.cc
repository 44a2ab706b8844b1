#include "uiommufd/lockdep/lockdep.h"

namespace uiommufd::lockdep {

const char* report_kind_name(ReportKind kind) {
  switch (kind) {
    case ReportKind::kCircularDependency: return "circular-dependency";
    case ReportKind::kRecursiveLocking: return "recursive-locking";
    case ReportKind::kBadUnlock: return "bad-unlock";
    case ReportKind::kHeldLockFreed: return "held-lock-freed";
    case ReportKind::kNestLockNotHeld: return "nest-lock-not-held";
    case ReportKind::kAssertion: return "assertion";
    case ReportKind::kLimitReached: return "limit-reached";
  }
  return "?";
}

}  // namespace uiommufd::lockdep
