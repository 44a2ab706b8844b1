// iommufd's own commands (semantics §1.5, §2.4–2.12).

#include <cerrno>

#include "handlers.h"
#include "uiommufd/objects/ioas.h"
#include "uiommufd/uapi/abi.h"

namespace uiommufd::uapi {

long destroy(Ucmd& ucmd) { return to_ret(ucmd.ctx.destroy(ucmd.arg<iommu_destroy>().id)); }

long ioas_alloc(Ucmd& ucmd) {
  auto& cmd = ucmd.arg<iommu_ioas_alloc>();
  if (cmd.flags) return -EOPNOTSUPP;
  Result<std::uint32_t> id = Ioas::create(ucmd.ctx);
  if (!id.ok()) return -id.error();
  cmd.out_ioas_id = *id;
  return to_ret(copy_out(ucmd, cmd));
}

long ioas_allow_iovas(Ucmd&) { return -ENOTTY; }
long ioas_copy(Ucmd&) { return -ENOTTY; }
long ioas_iova_ranges(Ucmd&) { return -ENOTTY; }
long ioas_map(Ucmd&) { return -ENOTTY; }
long ioas_map_file(Ucmd&) { return -ENOTTY; }
long ioas_unmap(Ucmd&) { return -ENOTTY; }
long option(Ucmd&) { return -ENOTTY; }
long vfio_ioas(Ucmd&) { return -ENOTTY; }

}  // namespace uiommufd::uapi
