// Internal to the mm layer: the pure rule behind default_account_mode(), split from the capability query
// so tests can check both branches on a machine where the capability is fixed.
#pragma once

#include "uiommufd/mm/accounting.h"

namespace uiommufd::mm_internal {

// docs/semantics.md#pages-creation: kNone with CAP_IPC_LOCK, else kUser; kUser becomes kMm in a ctx in MM
// mode.
constexpr AccountMode account_mode_for(bool cap_ipc_lock, bool ctx_mm_mode) {
  const AccountMode mode = cap_ipc_lock ? AccountMode::kNone : AccountMode::kUser;
  return ctx_mm_mode && mode == AccountMode::kUser ? AccountMode::kMm : mode;
}

}  // namespace uiommufd::mm_internal
