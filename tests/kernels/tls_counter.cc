// Thread-local variables of the kinds a -fPIC C++ object has, used from several threads.
//
// `tls_counter` is visible outside the object (global-dynamic: R_X86_64_TLSGD and a call of
// `__tls_get_addr`), `tls_aligned` asks for 64-byte alignment in .tdata, `tls_zeroed` for
// 128-byte alignment in .tbss; the two static ones are local-dynamic when optimized
// (R_X86_64_TLSLD and R_X86_64_DTPOFF32), or with -ftls-model=local-dynamic. Each thread bumps
// the counters and reports what it saw, and where its copies are, so that the test can check the
// initial values, that every thread has its own copies, and their alignment.
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/function.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

thread_local long long tls_counter = 40;
alignas(64) thread_local char tls_aligned[64] = {7, 8, 9};
alignas(128) thread_local long long tls_zeroed[4];

namespace {

using tvm::ffi::Array;

static thread_local long long local_counter = 40;
static thread_local int local_seven = 7;

/// Fields reported per thread, in this order.
constexpr int kFields = 10;

/// What one thread sees: `tls_counter` after each of two bumps, `local_counter` after one bump,
/// `local_seven`, the addresses of `tls_counter`, `tls_aligned`, `tls_zeroed` and
/// `local_counter`, the sum of the first and third bytes of `tls_aligned` and the sum of
/// `tls_zeroed` before it writes it.
void Report(int64_t* out) {
  out[0] = ++tls_counter;
  out[1] = ++tls_counter;
  out[2] = ++local_counter;
  out[3] = local_seven++;
  out[4] = reinterpret_cast<intptr_t>(&tls_counter);
  out[5] = reinterpret_cast<intptr_t>(&tls_aligned[0]);
  out[6] = reinterpret_cast<intptr_t>(&tls_zeroed[0]);
  out[7] = reinterpret_cast<intptr_t>(&local_counter);
  out[8] = tls_aligned[0] + tls_aligned[2];
  int64_t sum = 0;
  for (long long value : tls_zeroed) sum += value;
  out[9] = sum;
  for (long long& value : tls_zeroed) value = 1;
}

/// Runs Report in `threads` threads, which all live until every one has reported (so that their
/// copies exist at the same time); kFields values per thread.
Array<int64_t> ReportFromThreads(int64_t threads) {
  std::vector<int64_t> values(static_cast<size_t>(threads) * kFields);
  std::atomic<int64_t> reported{0};
  std::vector<std::thread> started;
  for (int64_t i = 0; i < threads; ++i) {
    started.emplace_back([&, i] {
      Report(&values[i * kFields]);
      ++reported;
      while (reported.load() < threads) std::this_thread::yield();
    });
  }
  for (std::thread& thread : started) thread.join();
  return Array<int64_t>(values.begin(), values.end());
}

Array<int64_t> ReportHere() {
  std::vector<int64_t> values(kFields);
  Report(values.data());
  return Array<int64_t>(values.begin(), values.end());
}

}  // namespace

// tls_threads(n) -> [kFields values per thread]; tls_here() -> the same for the calling thread.
TVM_FFI_DLL_EXPORT_TYPED_FUNC(tls_threads, ReportFromThreads);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(tls_here, ReportHere);
// tls_bump() -> the calling thread's counter after one more bump.
TVM_FFI_DLL_EXPORT_TYPED_FUNC(tls_bump, []() -> int64_t { return ++tls_counter; });
