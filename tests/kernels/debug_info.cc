// A kernel for debugger and profiler tests (test_debuggers.py): a loop with locals to stop in, a
// function that writes through a null pointer, and one that returns the address of the loop's
// function, to compare with what a perf map lists. The tests find lines by their "line:" marks.
#include <tvm/ffi/function.h>

#include <cstdint>

namespace {
int* volatile nowhere = nullptr;
}  // namespace

int64_t SumOfTriples(int64_t count) {
  int64_t total = 0;
  for (int64_t i = 0; i < count; ++i) {
    int64_t triple = i * 3;
    total += triple;  // line: accumulate
  }
  return total;
}

int64_t WriteThroughNull(int64_t value) {
  int64_t doubled = value * 2;
  *nowhere = static_cast<int>(doubled);  // line: null write
  return doubled;
}

int64_t AddressOfSumOfTriples() { return reinterpret_cast<int64_t>(&SumOfTriples); }

TVM_FFI_DLL_EXPORT_TYPED_FUNC(sum_of_triples, SumOfTriples);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(write_through_null, WriteThroughNull);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(address_of_sum_of_triples, AddressOfSumOfTriples);
