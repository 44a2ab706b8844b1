// The engine's lock order, written once. A lock may be taken while holding only locks above it. The
// validator enforces the order at run time; this list is the reason for it.
//
//   0. device.mutex        a device's attachment; held across picking or creating its HWPT.
//   1. access.ioas_lock     outermost for an access: pin, unpin and rw hold it across the iopt locks,
//                           and change-IOAS holds it across adding the access to an IOAS. Dropped
//                           around the access's unmap callback.
//   2. ioas.mutex           the IOAS's HWPT list; held across domain creation and attach, which take the
//                           iopt locks below.
//   3. iopt.domains_rwsem   the set of domains. Read: while any area is half-built (map fill, unmap
//                           teardown), so attach cannot see it; write: domain add/remove, access
//                           add/remove, large-page changes.
//   4. iopt.iova_rwsem      the interval trees (areas, reserved, allowed) and iova_alignment. Read for
//                           lookups (pin, rw, copy source, ranges); write to change them.
//   5. pages.mutex          one Pages object's pin bookkeeping; domain map/unmap of its areas runs here.
//   5a. pages.mlock         process-wide count of mlock users per page (Pages created with lock_pinned);
//                           taken inside pages.mutex around the mlock / munlock calls, and around nothing
//                           else.
//   6. domain.page_table    one software domain's table; taken by every domain operation, so that
//                           disjoint areas can be mapped into one domain from several threads.
//   7. context.objects      the object table (never held across anything that locks).
//
// The access_unmap LockdepMap of each IOAS is not a lock: the unmap path holds it shared around access
// callbacks with no engine lock held, and access destroy / detach / replace touch it, so a driver lock
// held across destroy and taken in the callback becomes a reported cycle.
#pragma once
