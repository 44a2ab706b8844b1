// EngineGate: every call from the preload into the engine holds the gate open; fork closes it.
//
// A fork copies the engine with the rest of memory. Were another thread inside an ioctl at that instant,
// the child's copy would have that call's locks held for good, its objects half-changed and its users
// counted, and the child's first use of the same IOAS would hang. So the fork handler (base/fork.h,
// level kEngineGate, the outermost) closes the gate: new calls wait, and the fork waits for the calls in
// flight to leave, as the kernel's fork waits for page faults and pins in flight by taking the parent's
// mmap lock for writing (dup_mmap in kernel/fork.c). The copy is then of an engine at rest, which the
// child uses as its own.
//
// A call holds it through a Scope for as long as it may reach the engine, the drop of its last reference
// to a file included (a file's destructor tears its context down), and leaves it before passing a call
// on to the kernel that may block (a read or an ioctl on an fd that turned out not to be ours). Scopes
// nest (an ioctl that installs or takes back an fd goes through the table's own paths); only the
// outermost counts. In a process with one
// thread the count is skipped: no other thread can fork while this one is inside, as FdTable's borrowed
// references assume too (the engine starts no threads).
//
// Entering costs one relaxed thread-local check in a single-threaded process, and otherwise an atomic
// increment and decrement of a counter shared with few other threads (threads hash onto kShards cache
// lines) plus one load of a flag that changes only across fork. The lock validator sees the gate as the
// class runtime.engine_gate, held shared by each outermost Scope and exclusively across fork, so every
// engine lock is ordered after it.
//
// Not supported: fork() from a signal handler that interrupted a call into the engine on the forking
// thread in a multi-threaded process (glibc's fork is not async-signal-safe either). The closing thread
// does not wait for itself, so the fork goes on, but the child's copy of that call's state is half-done.
#pragma once

#include <cstdint>

namespace uiommufd::runtime {

class EngineGate {
 public:
  // Holds the gate open for the scope: waits while a fork holds it closed.
  class Scope {
   public:
    Scope() { enter(); }
    ~Scope() { leave(); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
  };

  // The fork handlers: prepare closes the gate and waits until no other thread is inside; parent and
  // child open it again. Registered with base/fork.h at start-up. Public for tests.
  static void close_for_fork();
  static void open_after_fork();

  // Whether the calling thread is inside a Scope. For tests and assertions.
  static bool inside();

 private:
  static void enter();
  static void leave();
};

}  // namespace uiommufd::runtime
