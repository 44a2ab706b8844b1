// UIOMMUFD_SANITIZED: defined when the build runs under AddressSanitizer, ThreadSanitizer or
// MemorySanitizer (GCC spells the test one way, Clang the other). Code that replaces what the sanitizers
// model (memory barriers by system call, a private allocator, fault recovery by signal) takes the plain
// path under them, so that they still see every access.
#pragma once

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UIOMMUFD_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define UIOMMUFD_SANITIZED 1
#endif
#endif
