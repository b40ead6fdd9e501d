// The functions of glibc's libc_nonshared.a, for JIT libraries.
//
// glibc keeps a few functions out of libc.so.6 and in libc_nonshared.a, which the linker adds to
// every program and shared library it links, because they need the `__dso_handle` of the module
// that calls them: atexit(fn) is `__cxa_atexit(fn, NULL, __dso_handle)`, at_quick_exit(fn) is
// `__cxa_at_quick_exit(fn, __dso_handle)` and pthread_atfork is `__register_atfork(...,
// __dso_handle)`. dlsym finds none of them, so a JIT library that calls one (every nvcc host object
// calls atexit) would not link. The binding plugin binds each of a library's references to them to
// a thunk that passes the library's `__dso_handle` (library_thunks.h) to the versions below, which
// give them the semantics they have in a shared library that is dlclose()d:
//   * atexit handlers are `__cxa_atexit` registrations of the library (init_fini.h): they run when
//     it closes, newest first, interleaved with the destructors of its static objects;
//   * at_quick_exit handlers run by quick_exit() while the library is open, in their place among
//     the process's other handlers, and are dropped, never called, once it closes: each
//     registration registers one forwarder of the core with glibc (which cannot unregister it
//     either), and the forwarders run the libraries' handlers that are left, newest first;
//   * pthread_atfork handlers run on fork() while the library is open and are dropped when it
//     closes. glibc cannot unregister fork handlers (its `__unregister_atfork` is private), so the
//     core registers one set of its own, the first time a library asks, which runs the open
//     libraries' handlers: the libraries' prepare handlers together, newest first, and their parent
//     and child handlers together, oldest first, at the place of that first registration.
// `__stack_chk_fail_local`, the hidden alias of `__stack_chk_fail` that 32-bit code calls, is bound
// to `__stack_chk_fail`.
#ifndef PYTEST_ORCJIT_LIBC_NONSHARED_H_
#define PYTEST_ORCJIT_LIBC_NONSHARED_H_

namespace orcjit {

/// The atexit, at_quick_exit and pthread_atfork of the library whose `__dso_handle` is `dso`.
extern "C" int OrcjitAtExit(void (*fn)(), void* dso);
extern "C" int OrcjitAtQuickExit(void (*fn)(), void* dso);
extern "C" int OrcjitAtFork(void (*prepare)(), void (*parent)(), void (*child)(), void* dso);

/// Drops the at_quick_exit and pthread_atfork handlers of the library whose `__dso_handle` is
/// `dso`, as it closes; its atexit handlers belong to its Runtime (init_fini.h).
void DropLibraryHandlers(void* dso);

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_LIBC_NONSHARED_H_
