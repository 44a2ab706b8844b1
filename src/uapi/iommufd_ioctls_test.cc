// Filled in with the handlers of iommufd_ioctls.cc.
