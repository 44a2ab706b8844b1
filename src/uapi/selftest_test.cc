// Filled in with the handlers of selftest.cc.
