// The fork server's loop, in native code: run by pytest_orcjit.forkserver in the fork server, a
// process forked from pytest that from then on only forks. Native so that the server, once it
// forked its first child, writes (and so copies) almost no memory: every page it wrote would be
// copied again, and every huge page it wrote split, for each child it forks after that. The
// records it shares with the pytest process are declared here and mirrored, field for field, by
// pytest_orcjit/protocol.py (the global function orcjit.fork_record_layouts lets a test compare
// them); what it asks of the kernel (huge pages, warming, scheduling) is in fork_tuning.h.
#ifndef PYTEST_ORCJIT_FORK_SERVER_H_
#define PYTEST_ORCJIT_FORK_SERVER_H_

#include <cstddef>
#include <cstdint>

namespace orcjit {

/// One job, as the pytest process writes it on the jobs pipe (protocol.JOB): the index of the
/// item in the session's items (-1: the item the server was started for) and its timeout in
/// seconds (0: none). The server hands it unread to the child that takes it.
struct __attribute__((packed)) JobRecord {
  int32_t index;
  double timeout;
};

/// How a child ended, as the server writes it on the status pipe (protocol.STATUS).
struct StatusRecord {
  int32_t pid;
  int32_t wait_status;
};

/// The server's ends of the pipes it shares with the pytest process (see isolation.ForkServer).
struct ForkServerFds {
  int jobs;      // read by the waiting children: one job record each
  int lifeline;  // readable (end of file) once the pytest process closed the server
  int status;    // written by the server: (pid, wait status) of each child that ended
};

/// How ServeForks returned: in a child that took a job, or in the server once it stopped.
struct ForkResult {
  bool child = false;
  unsigned char job[sizeof(JobRecord)] = {};  // in a child: the job record it read
  int learn = -1;       // in the first child: where to write the pages it copied
  bool failed = false;  // in the server: whether it could not keep children forked
};

/// Keeps `ahead` children forked and waiting for a job, in the order they were forked; reports
/// how each child ends. Returns in each child once it read its job, and in the server once the
/// pytest process closed the lifeline, or `respawns` waiting children died in a row.
///
/// A waiting child first copies the pages the first child reported it copied (warming, in
/// batches of `batch_bytes`), then reads a job. Children warm one at a time and take jobs in the
/// order they were forked: the child forked before writes a byte on its successor's turn pipe
/// once warmed, and closes it as it takes a job (the kernel does as it dies).
ForkResult ServeForks(const ForkServerFds& fds, int ahead, int respawns, std::size_t batch_bytes);

}  // namespace orcjit

#endif  // PYTEST_ORCJIT_FORK_SERVER_H_
