/* PASID attach, replace and detach of mock devices through the test ops, for a PASID-capable mock device
 * (MOCK_FLAGS_DEVICE_PASID, 20 PASID bits) and one created without that flag (0 PASID bits, which the core
 * counts as a single PASID, so every PASID above 0 is out of range for it).
 *
 * Kernel side: drivers/iommu/iommufd/device.c iommufd_device_attach(), iommufd_device_replace(),
 * iommufd_device_detach(), iommufd_hw_pagetable_attach(), iommufd_device_do_replace(),
 * iommufd_hwpt_pasid_compat() (a PASID needs an HWPT allocated with IOMMU_HWPT_ALLOC_PASID, and so does the
 * RID while any PASID is attached); drivers/iommu/iommu.c iommu_attach_device_pasid(),
 * iommu_replace_device_pasid() (the PASID bound, dev->iommu->max_pasids, checked on attach only);
 * drivers/iommu/iommufd/selftest.c iommufd_test_pasid_attach/replace/detach/check_hwpt() and
 * mock_domain_set_dev_pasid_nop() (its designed failure on PASID 1024).
 *
 * Every PASID is detached before its device is destroyed: destroying a device with an attached PASID is a
 * kernel bug (it warns). */
#include "abi.h"

static uint32_t out_pt;

static int attach(int fd, uint32_t stdev, uint32_t pasid, uint32_t pt) {
  out_pt = 0;
  return pasid_op(fd, IOMMU_TEST_OP_PASID_ATTACH, stdev, pasid, pt, &out_pt);
}
static int replace(int fd, uint32_t stdev, uint32_t pasid, uint32_t pt) {
  out_pt = 0;
  return pasid_op(fd, IOMMU_TEST_OP_PASID_REPLACE, stdev, pasid, pt, &out_pt);
}

static int max_pasid_log2(int fd, uint32_t idev, uint32_t* out) {
  struct iommu_hw_info c = {.size = sizeof(c), .dev_id = idev};
  int r = get_hw_info(fd, &c);
  *out = c.out_max_pasid_log2;
  return r;
}

int main(void) {
  int fd = open_iommufd();
  uint8_t* buf = (uint8_t*)alloc_buffer(0x4000);
  uint64_t iova = MOCK_APERTURE_START;
  uint32_t ioas = 0, v = 0;
  require("ioas_alloc", check_rc("ioas_alloc", ioas_alloc(fd, &ioas), OK));
  require("map", check_rc("map", ioas_map(fd, ioas, buf, 0x4000, &iova, 1), OK));

  /* A PASID-capable device and one without PASIDs, both on the IOAS's automatic HWPT. */
  uint32_t stdev = 0, auto_hwpt = 0, idev = 0, np_stdev = 0, np_hwpt = 0, np_idev = 0;
  require("mock_pasid_dev",
          check_rc("mock_pasid_dev",
                   mock_domain_flags(fd, ioas, MOCK_FLAGS_DEVICE_PASID, &stdev, &auto_hwpt, &idev), OK));
  check_u64("mock_pasid_dev", "out_stdev_id", stdev, 2);
  check_u64("mock_pasid_dev", "out_hwpt_id", auto_hwpt, 4);
  require("mock_nopasid_dev",
          check_rc("mock_nopasid_dev", mock_domain_flags(fd, ioas, 0, &np_stdev, &np_hwpt, &np_idev), OK));
  check_u64("mock_nopasid_dev", "out_stdev_id", np_stdev, 5);
  check_u64("mock_nopasid_dev", "out_hwpt_id", np_hwpt, auto_hwpt);
  check_rc("hw_info_pasid_dev", max_pasid_log2(fd, idev, &v), OK);
  check_u64("hw_info_pasid_dev", "out_max_pasid_log2", v, MOCK_PASID_WIDTH);
  check_rc("hw_info_nopasid_dev", max_pasid_log2(fd, np_idev, &v), OK);
  check_u64("hw_info_nopasid_dev", "out_max_pasid_log2", v, 0);

  /* The page tables: a parent (not PASID-capable), a PASID-capable paging HWPT, two PASID-capable nested
   * HWPTs and one nested without the flag. */
  uint32_t parent = 0, s2 = 0, n0 = 0, n1 = 0, nnp = 0;
  require("alloc_parent",
          check_rc("alloc_parent", hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent), OK));
  check_u64("alloc_parent", "out_hwpt_id", parent, 7);
  require("alloc_s2", check_rc("alloc_s2", hwpt_alloc(fd, idev, ioas, IOMMU_HWPT_ALLOC_PASID, &s2), OK));
  check_u64("alloc_s2", "out_hwpt_id", s2, 8);
  require("alloc_n0",
          check_rc("alloc_n0",
                   hwpt_alloc_nested(fd, idev, parent, IOMMU_HWPT_ALLOC_PASID, IOMMU_TEST_IOTLB_DEFAULT, &n0),
                   OK));
  check_u64("alloc_n0", "out_hwpt_id", n0, 9);
  require("alloc_n1",
          check_rc("alloc_n1",
                   hwpt_alloc_nested(fd, idev, parent, IOMMU_HWPT_ALLOC_PASID, IOMMU_TEST_IOTLB_DEFAULT, &n1),
                   OK));
  check_u64("alloc_n1", "out_hwpt_id", n1, 10);
  require("alloc_nnp",
          check_rc("alloc_nnp", hwpt_alloc_nested(fd, idev, parent, 0, IOMMU_TEST_IOTLB_DEFAULT, &nnp), OK));
  check_u64("alloc_nnp", "out_hwpt_id", nnp, 11);

  /* ---- attach and detach on the PASID-capable device ------------------------------------------------- */
  /* Detaching a PASID that was never attached does nothing, successfully. */
  check_rc("detach_unattached", pasid_detach(fd, stdev, 100), OK);
  check_rc("detach_unattached_check", pasid_check_hwpt(fd, stdev, 100, 0), OK);
  /* PASID 0 is the RID: CHECK_HWPT sees the device's own attachment. */
  check_rc("check_rid_auto", pasid_check_hwpt(fd, stdev, 0, auto_hwpt), OK);
  check_rc("check_rid_detached_wrong", pasid_check_hwpt(fd, stdev, 0, 0), ERR(EINVAL));

  /* While the RID is on an HWPT without the PASID flag, no PASID can be attached. */
  check_rc("attach_rid_on_auto", attach(fd, stdev, 100, s2), ERR(EINVAL));
  check_rc("attach_rid_on_auto_check", pasid_check_hwpt(fd, stdev, 100, 0), OK);
  check_rc("rid_to_parent", mock_domain_replace(fd, stdev, parent, &v), OK);
  check_u64("rid_to_parent", "pt_id", v, parent);
  check_rc("attach_rid_on_parent", attach(fd, stdev, 100, s2), ERR(EINVAL));
  check_rc("rid_to_s2", mock_domain_replace(fd, stdev, s2, &v), OK);
  check_u64("rid_to_s2", "pt_id", v, s2);

  check_rc("attach_n0", attach(fd, stdev, 100, n0), OK);
  check_u64("attach_n0", "pt_id", out_pt, n0);
  check_rc("attach_n0_check", pasid_check_hwpt(fd, stdev, 100, n0), OK);
  /* With a PASID attached, the RID may only move to PASID-capable HWPTs (an IOAS gives an automatic HWPT,
   * never PASID-capable). */
  check_rc("rid_to_parent_pasid_attached", mock_domain_replace(fd, stdev, parent, &v), ERR(EINVAL));
  check_rc("rid_to_ioas_pasid_attached", mock_domain_replace(fd, stdev, ioas, &v), ERR(EINVAL));
  check_rc("rid_to_nested_nopasid_pasid_attached", mock_domain_replace(fd, stdev, nnp, &v), ERR(EINVAL));
  check_rc("rid_still_s2", pasid_check_hwpt(fd, stdev, 0, s2), OK);
  check_rc("rid_to_n0_pasid_attached", mock_domain_replace(fd, stdev, n0, &v), OK);
  check_u64("rid_to_n0_pasid_attached", "pt_id", v, n0);
  check_rc("rid_to_n0_check", pasid_check_hwpt(fd, stdev, 0, n0), OK);
  check_rc("rid_back_to_s2", mock_domain_replace(fd, stdev, s2, &v), OK);
  /* An HWPT attached to a PASID is busy. */
  check_rc("destroy_n0_pasid_attached", destroy_id(fd, n0), ERR(EBUSY));
  /* ATTACH never overwrites: an attached PASID is EBUSY whatever the target, even one that would be
   * refused on its own (the busy check comes first). */
  check_rc("attach_again_same", attach(fd, stdev, 100, n0), ERR(EBUSY));
  check_rc("attach_again_other", attach(fd, stdev, 100, n1), ERR(EBUSY));
  check_rc("attach_again_parent", attach(fd, stdev, 100, parent), ERR(EBUSY));
  check_rc("attach_again_ioas", attach(fd, stdev, 100, ioas), ERR(EBUSY));
  check_rc("attach_again_check", pasid_check_hwpt(fd, stdev, 100, n0), OK);
  check_rc("detach_n0", pasid_detach(fd, stdev, 100), OK);
  check_rc("detach_n0_check", pasid_check_hwpt(fd, stdev, 100, 0), OK);

  /* Targets a PASID cannot take. */
  check_rc("attach_parent", attach(fd, stdev, 100, parent), ERR(EINVAL));
  check_rc("attach_nested_nopasid", attach(fd, stdev, 100, nnp), ERR(EINVAL));
  check_rc("attach_ioas", attach(fd, stdev, 100, ioas), ERR(EINVAL));
  /* The automatic HWPT tried for it (never PASID-capable) was undone: id 12 is still free. */
  check_rc("attach_ioas_no_hwpt_left", destroy_id(fd, 12), ERR(ENOENT));
  check_rc("attach_unknown_pt", attach(fd, stdev, 100, 9999), ERR(ENOENT));
  check_rc("attach_pt_is_stdev", attach(fd, stdev, 100, stdev), ERR(EINVAL));
  check_rc("attach_pt_is_idev", attach(fd, stdev, 100, idev), ERR(EINVAL));
  check_rc("attach_refused_check", pasid_check_hwpt(fd, stdev, 100, 0), OK);

  check_rc("attach_s2", attach(fd, stdev, 100, s2), OK);
  check_u64("attach_s2", "pt_id", out_pt, s2);
  check_rc("check_s2", pasid_check_hwpt(fd, stdev, 100, s2), OK);
  check_rc("check_wrong_hwpt", pasid_check_hwpt(fd, stdev, 100, n0), ERR(EINVAL));
  check_rc("check_hwpt_is_ioas", pasid_check_hwpt(fd, stdev, 100, ioas), ERR(EINVAL));
  check_rc("check_hwpt_is_stdev", pasid_check_hwpt(fd, stdev, 100, stdev), ERR(EINVAL));
  check_rc("check_hwpt_unknown", pasid_check_hwpt(fd, stdev, 100, 9999), ERR(ENOENT));
  check_rc("check_attached_as_detached", pasid_check_hwpt(fd, stdev, 100, 0), ERR(EINVAL));
  check_rc("check_other_pasid", pasid_check_hwpt(fd, stdev, 101, 0), OK);
  check_rc("destroy_s2_attached", destroy_id(fd, s2), ERR(EBUSY));
  check_rc("detach_s2", pasid_detach(fd, stdev, 100), OK);

  /* The PASID bound: 20 bits. */
  check_rc("attach_pasid_2p20", attach(fd, stdev, 1u << 20, s2), ERR(EINVAL));
  check_rc("attach_pasid_2p20_check", pasid_check_hwpt(fd, stdev, 1u << 20, 0), OK);
  check_rc("attach_pasid_2p20_unknown_pt", attach(fd, stdev, 1u << 20, 9999), ERR(ENOENT));
  check_rc("attach_pasid_2p20_parent", attach(fd, stdev, 1u << 20, parent), ERR(EINVAL));
  check_rc("attach_pasid_max", attach(fd, stdev, (1u << 20) - 1, s2), OK);
  check_rc("attach_pasid_max_check", pasid_check_hwpt(fd, stdev, (1u << 20) - 1, s2), OK);
  check_rc("detach_pasid_max", pasid_detach(fd, stdev, (1u << 20) - 1), OK);

  /* ---- replace --------------------------------------------------------------------------------------- */
  check_rc("replace_unattached", replace(fd, stdev, 200, s2), ERR(EINVAL));
  check_rc("replace_unattached_unknown_pt", replace(fd, stdev, 200, 9999), ERR(ENOENT));
  check_rc("replace_unattached_check", pasid_check_hwpt(fd, stdev, 200, 0), OK);
  check_rc("replace_attach_s2", attach(fd, stdev, 200, s2), OK);
  check_rc("replace_to_ioas", replace(fd, stdev, 200, ioas), ERR(EINVAL));
  check_rc("replace_to_ioas_check", pasid_check_hwpt(fd, stdev, 200, s2), OK);
  check_rc("replace_to_parent", replace(fd, stdev, 200, parent), ERR(EINVAL));
  check_rc("replace_to_nested_nopasid", replace(fd, stdev, 200, nnp), ERR(EINVAL));
  check_rc("replace_to_parent_check", pasid_check_hwpt(fd, stdev, 200, s2), OK);
  check_rc("replace_to_n0", replace(fd, stdev, 200, n0), OK);
  check_u64("replace_to_n0", "pt_id", out_pt, n0);
  check_rc("replace_to_n0_check", pasid_check_hwpt(fd, stdev, 200, n0), OK);
  check_rc("replace_to_n1", replace(fd, stdev, 200, n1), OK);
  check_rc("replace_to_n1_check", pasid_check_hwpt(fd, stdev, 200, n1), OK);
  check_rc("replace_to_n1_again", replace(fd, stdev, 200, n1), OK);
  check_u64("replace_to_n1_again", "pt_id", out_pt, n1);
  /* The PASID's old HWPT is free again; the new one is held. */
  check_rc("replace_old_free", destroy_id(fd, n0), OK);
  require("realloc_n0",
          check_rc("realloc_n0",
                   hwpt_alloc_nested(fd, idev, parent, IOMMU_HWPT_ALLOC_PASID, IOMMU_TEST_IOTLB_DEFAULT, &n0),
                   OK));
  check_u64("realloc_n0", "out_hwpt_id", n0, 9);
  check_rc("replace_new_busy", destroy_id(fd, n1), ERR(EBUSY));
  check_rc("replace_detach", pasid_detach(fd, stdev, 200), OK);
  check_rc("replace_detach_check", pasid_check_hwpt(fd, stdev, 200, 0), OK);

  /* ---- several PASIDs at once ------------------------------------------------------------------------ */
  check_rc("multi_attach_100", attach(fd, stdev, 100, s2), OK);
  check_rc("multi_attach_200", attach(fd, stdev, 200, n0), OK);
  check_rc("multi_attach_300", attach(fd, stdev, 300, n1), OK);
  check_rc("multi_check_100", pasid_check_hwpt(fd, stdev, 100, s2), OK);
  check_rc("multi_check_200", pasid_check_hwpt(fd, stdev, 200, n0), OK);
  check_rc("multi_check_300", pasid_check_hwpt(fd, stdev, 300, n1), OK);
  check_rc("multi_rid_to_parent", mock_domain_replace(fd, stdev, parent, &v), ERR(EINVAL));
  check_rc("multi_detach_200", pasid_detach(fd, stdev, 200), OK);
  check_rc("multi_check_100_after", pasid_check_hwpt(fd, stdev, 100, s2), OK);
  check_rc("multi_rid_to_parent_two_left", mock_domain_replace(fd, stdev, parent, &v), ERR(EINVAL));
  check_rc("multi_detach_100", pasid_detach(fd, stdev, 100), OK);
  check_rc("multi_detach_300", pasid_detach(fd, stdev, 300), OK);
  check_rc("multi_rid_to_parent_none_left", mock_domain_replace(fd, stdev, parent, &v), OK);
  check_u64("multi_rid_to_parent_none_left", "pt_id", v, parent);
  check_rc("multi_rid_back_to_s2", mock_domain_replace(fd, stdev, s2, &v), OK);

  /* ---- PASID 1024: the mock fails every second set_dev_pasid of it ----------------------------------- */
  check_rc("p1024_attach", attach(fd, stdev, 1024, s2), OK);
  check_rc("p1024_attach_check", pasid_check_hwpt(fd, stdev, 1024, s2), OK);
  check_rc("p1024_replace_fails", replace(fd, stdev, 1024, n0), ERR(ENOMEM));
  check_rc("p1024_still_old", pasid_check_hwpt(fd, stdev, 1024, s2), OK);
  check_rc("p1024_n0_not_held", destroy_id(fd, n0), OK);
  require("p1024_realloc_n0",
          check_rc("p1024_realloc_n0",
                   hwpt_alloc_nested(fd, idev, parent, IOMMU_HWPT_ALLOC_PASID, IOMMU_TEST_IOTLB_DEFAULT, &n0),
                   OK));
  check_rc("p1024_replace_again", replace(fd, stdev, 1024, n0), OK);
  check_rc("p1024_replace_again_check", pasid_check_hwpt(fd, stdev, 1024, n0), OK);
  check_rc("p1024_detach", pasid_detach(fd, stdev, 1024), OK);
  check_rc("p1024_detach_check", pasid_check_hwpt(fd, stdev, 1024, 0), OK);
  check_rc("p1024_attach_again", attach(fd, stdev, 1024, s2), OK);
  check_rc("p1024_attach_again_check", pasid_check_hwpt(fd, stdev, 1024, s2), OK);
  check_rc("p1024_replace_fails_again", replace(fd, stdev, 1024, n1), ERR(ENOMEM));
  check_rc("p1024_detach_again", pasid_detach(fd, stdev, 1024), OK);

  /* ---- PASID 0 through the PASID ops is the RID ------------------------------------------------------ */
  check_rc("p0_attach_rid_attached", attach(fd, stdev, 0, s2), ERR(EBUSY));
  check_rc("p0_attach_ioas_rid_attached", attach(fd, stdev, 0, ioas), ERR(EBUSY));
  check_rc("p0_attach_parent_rid_attached", attach(fd, stdev, 0, parent), ERR(EBUSY));
  check_rc("p0_replace", replace(fd, stdev, 0, n0), OK);
  check_u64("p0_replace", "pt_id", out_pt, n0);
  check_rc("p0_replace_check", pasid_check_hwpt(fd, stdev, 0, n0), OK);
  check_rc("p0_replace_back", replace(fd, stdev, 0, s2), OK);
  check_rc("p0_detach", pasid_detach(fd, stdev, 0), OK);
  check_rc("p0_detach_check", pasid_check_hwpt(fd, stdev, 0, 0), OK);
  check_rc("p0_detach_check_old", pasid_check_hwpt(fd, stdev, 0, s2), ERR(EINVAL));
  check_rc("p0_detach_again", pasid_detach(fd, stdev, 0), OK);
  /* A detached RID cannot be replaced, only attached. */
  check_rc("p0_detached_mock_replace", mock_domain_replace(fd, stdev, s2, &v), ERR(EINVAL));
  check_rc("p0_detached_replace", replace(fd, stdev, 0, s2), ERR(EINVAL));
  /* With no RID attachment a PASID needs only its own HWPT to be PASID-capable... */
  check_rc("p0_detached_attach_pasid", attach(fd, stdev, 100, s2), OK);
  /* ...and the RID then needs a PASID-capable one. */
  check_rc("p0_attach_parent_pasid_attached", attach(fd, stdev, 0, parent), ERR(EINVAL));
  check_rc("p0_attach_parent_check", pasid_check_hwpt(fd, stdev, 0, 0), OK);
  check_rc("p0_attach_n0_pasid_attached", attach(fd, stdev, 0, n0), OK);
  check_u64("p0_attach_n0_pasid_attached", "pt_id", out_pt, n0);
  check_rc("p0_detach_n0", pasid_detach(fd, stdev, 0), OK);
  check_rc("p0_detached_detach_pasid", pasid_detach(fd, stdev, 100), OK);
  /* Re-attach the RID through PASID 0 onto the IOAS: it finds the automatic HWPT the other device uses. */
  check_rc("p0_attach_ioas", attach(fd, stdev, 0, ioas), OK);
  check_u64("p0_attach_ioas", "pt_id", out_pt, auto_hwpt);
  check_rc("p0_attach_ioas_check", pasid_check_hwpt(fd, stdev, 0, auto_hwpt), OK);

  /* ---- the test ops need a mock device id ------------------------------------------------------------ */
  check_rc("op_attach_on_ioas", attach(fd, ioas, 100, s2), ERR(ENOENT));
  check_rc("op_attach_on_idev", attach(fd, idev, 100, s2), ERR(ENOENT));
  check_rc("op_attach_on_unknown", attach(fd, 9999, 100, s2), ERR(ENOENT));
  check_rc("op_replace_on_ioas", replace(fd, ioas, 100, s2), ERR(ENOENT));
  check_rc("op_detach_on_ioas", pasid_detach(fd, ioas, 100), ERR(ENOENT));
  check_rc("op_check_on_ioas", pasid_check_hwpt(fd, ioas, 100, 0), ERR(ENOENT));
  check_rc("op_check_on_hwpt", pasid_check_hwpt(fd, s2, 100, 0), ERR(ENOENT));

  /* ---- the device without PASID support -------------------------------------------------------------- */
  /* Its RID is on the automatic HWPT: refused by iommufd's compatibility rule as for the other device. */
  check_rc("np_attach_rid_on_auto", attach(fd, np_stdev, 100, s2), ERR(EINVAL));
  check_rc("np_attach_parent", attach(fd, np_stdev, 100, parent), ERR(EINVAL));
  /* A PASID-capable HWPT takes a device without PASIDs on its RID. */
  check_rc("np_rid_to_n0", mock_domain_replace(fd, np_stdev, n0, &v), OK);
  check_rc("np_rid_to_ioas", mock_domain_replace(fd, np_stdev, ioas, &v), OK);
  check_u64("np_rid_to_ioas", "pt_id", v, auto_hwpt);
  check_rc("np_rid_to_s2", mock_domain_replace(fd, np_stdev, s2, &v), OK);
  /* Even with the RID on a PASID-capable HWPT, every PASID above 0 is out of range: the mock gives this
   * device a "pasid-num-bits" of 0, which the core reads as one PASID (max_pasids 1, iommu.c
   * dev_iommu_get_max_pasids()), so iommu_attach_device_pasid()'s bound check refuses it; GET_HW_INFO
   * reports log2(1) = 0. */
  check_rc("np_attach_s2", attach(fd, np_stdev, 100, s2), ERR(EINVAL));
  check_rc("np_attach_s2_check", pasid_check_hwpt(fd, np_stdev, 100, 0), OK);
  check_rc("np_attach_pasid_1", attach(fd, np_stdev, 1, s2), ERR(EINVAL));
  check_rc("np_attach_2p20", attach(fd, np_stdev, 1u << 20, s2), ERR(EINVAL));
  check_rc("np_attach_n0", attach(fd, np_stdev, 100, n0), ERR(EINVAL));
  check_rc("np_attach_unknown_pt", attach(fd, np_stdev, 100, 9999), ERR(ENOENT));
  check_rc("np_p1024_attach", attach(fd, np_stdev, 1024, s2), ERR(EINVAL));
  check_rc("np_replace_unattached", replace(fd, np_stdev, 100, s2), ERR(EINVAL));
  check_rc("np_p0_attach_rid_attached", attach(fd, np_stdev, 0, s2), ERR(EBUSY));
  check_rc("np_detach_unattached", pasid_detach(fd, np_stdev, 100), OK);
  check_rc("np_check_rid_s2", pasid_check_hwpt(fd, np_stdev, 0, s2), OK);
  /* No PASID is attached, so the RID may leave the PASID-capable HWPT. */
  check_rc("np_rid_to_parent", mock_domain_replace(fd, np_stdev, parent, &v), OK);
  check_u64("np_rid_to_parent", "pt_id", v, parent);
  check_rc("np_rid_back_to_ioas", mock_domain_replace(fd, np_stdev, ioas, &v), OK);
  check_u64("np_rid_back_to_ioas", "pt_id", v, auto_hwpt);

  /* ---- teardown: nothing is attached to a PASID any more --------------------------------------------- */
  check_rc("destroy_n0", destroy_id(fd, n0), OK);
  check_rc("destroy_n1", destroy_id(fd, n1), OK);
  check_rc("destroy_nnp", destroy_id(fd, nnp), OK);
  check_rc("destroy_parent", destroy_id(fd, parent), OK);
  check_rc("destroy_s2", destroy_id(fd, s2), OK);
  check_rc("destroy_np_stdev", destroy_id(fd, np_stdev), OK);
  check_rc("destroy_stdev", destroy_id(fd, stdev), OK);
  check_rc("auto_hwpt_gone", destroy_id(fd, auto_hwpt), ERR(ENOENT));
  check_rc("unpinned", check_refs(fd, buf, 0x4000, 0), OK);
  check_rc("destroy_ioas", destroy_id(fd, ioas), OK);
  check_rc("close", close(fd) ? -errno : 0, OK);
  return abi_finish();
}
