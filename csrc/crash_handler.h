// The crash handler: when a process that runs JIT code dies by a signal (SIGSEGV, SIGBUS, SIGILL,
// SIGFPE, SIGABRT), it writes what killed it and the native stack of the thread that died, with
// every frame in JIT code named ("NullWrite (kernels/misbehave.cc:14)", jit_symbolizer.h), before
// the process goes on dying as it would have.
//
// How, given that a signal handler may do almost nothing (the thread may have crashed inside
// malloc, holding its lock): the handler writes the signal's line itself with async-signal-safe
// calls only, then forks (_Fork, which is async-signal-safe) a helper process, a copy of the dying
// one stopped in the handler. The helper walks the stack (the unwinder reads the JIT's registered
// .eh_frame through the signal frame), names each frame (the map of JIT code, the object files'
// line tables, dladdr for the process's libraries), writes the stack in one write and exits. The
// dying process waits for it at most kHelperSeconds; if the helper does not finish (a lock it
// inherited is held forever), the handler writes the faulting pc and, when it is JIT code, its
// function, from the map alone. Then the signal is passed on to the handler installed before
// (Python's faulthandler, which dumps the Python stack) and the process ends by the signal.
//
// The report starts with a line that begins with kCrashReportStart; its stack lines begin with
// "  #". On request (`on_sigterm`) SIGTERM is reported the same way: the forked test of a timeout
// or a Ctrl-C says where it was. The handler is installed for the whole process, on top of what
// is there (installing again puts it back on top and changes where it writes); it is installed
// without asking when the first JIT code of the process is linked, writing to fd 2.
//
// PYTEST_ORCJIT_CRASH_REPORTS=off in the environment turns it all off, the map of JIT code
// included (jit_code_map.h): for a process with crash handling of its own, and to measure what
// it costs (benchmarks/bench_crash_handler.py).
#ifndef PYTEST_ORCJIT_CRASH_HANDLER_H_
#define PYTEST_ORCJIT_CRASH_HANDLER_H_

namespace orcjit {

/// The start of a report's first line.
constexpr const char kCrashReportStart[] = "orcjit: signal ";

/// How long the dying process waits for the helper that walks and names its stack.
constexpr int kHelperSeconds = 5;

/// Whether crash reports are on (PYTEST_ORCJIT_CRASH_REPORTS is not "off"), read once.
bool CrashReportsEnabled();

/// Installs the handler (see the top of this file), writing to a duplicate of `fd`; also for
/// SIGTERM when `on_sigterm`. Gives the calling thread an alternate signal stack if it has none.
void InstallCrashHandler(int fd, bool on_sigterm);

/// Installs the handler writing to fd 2 unless it was installed already (the first link).
void InstallCrashHandlerOnce();

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_CRASH_HANDLER_H_
