// Filled in with the handlers of vfio_compat.cc.
