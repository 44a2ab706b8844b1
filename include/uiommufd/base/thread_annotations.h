// Clang thread-safety analysis attributes (-Wthread-safety). They expand to nothing on other compilers,
// where the lock validator's run-time checks (assert_held) remain the only enforcement.
#pragma once

#if defined(__clang__)
#define UIOMMUFD_TSA(x) __attribute__((x))
#else
#define UIOMMUFD_TSA(x)
#endif

#define CAPABILITY(x) UIOMMUFD_TSA(capability(x))
#define SCOPED_CAPABILITY UIOMMUFD_TSA(scoped_lockable)
#define GUARDED_BY(x) UIOMMUFD_TSA(guarded_by(x))
#define PT_GUARDED_BY(x) UIOMMUFD_TSA(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) UIOMMUFD_TSA(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) UIOMMUFD_TSA(acquired_after(__VA_ARGS__))
#define REQUIRES(...) UIOMMUFD_TSA(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) UIOMMUFD_TSA(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) UIOMMUFD_TSA(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) UIOMMUFD_TSA(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) UIOMMUFD_TSA(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) UIOMMUFD_TSA(release_shared_capability(__VA_ARGS__))
#define RELEASE_GENERIC(...) UIOMMUFD_TSA(release_generic_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) UIOMMUFD_TSA(try_acquire_capability(__VA_ARGS__))
#define TRY_ACQUIRE_SHARED(...) UIOMMUFD_TSA(try_acquire_shared_capability(__VA_ARGS__))
#define EXCLUDES(...) UIOMMUFD_TSA(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) UIOMMUFD_TSA(assert_capability(x))
#define ASSERT_SHARED_CAPABILITY(x) UIOMMUFD_TSA(assert_shared_capability(x))
#define RETURN_CAPABILITY(x) UIOMMUFD_TSA(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS UIOMMUFD_TSA(no_thread_safety_analysis)
