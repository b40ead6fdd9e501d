// An OpenMP kernel: a parallel-for sum on two threads, which needs the compiler's OpenMP runtime
// (libomp for clang, libgomp for gcc) loaded into the process before it links.
#include <omp.h>
#include <tvm/ffi/function.h>

#include <cstdint>

namespace {

/// The sum 0 + 1 + ... + (n - 1), over two threads; `threads` is how many ran it.
int64_t ParallelSum(int64_t n, int64_t* threads) {
  int64_t sum = 0;
  int used = 0;
#pragma omp parallel for num_threads(2) reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) {
    if (i == 0) used = omp_get_num_threads();
    sum += i;
  }
  *threads = used;
  return sum;
}

}  // namespace

TVM_FFI_DLL_EXPORT_TYPED_FUNC(openmp_sum, [](int64_t n) {
  int64_t threads = 0;
  return ParallelSum(n, &threads);
});
TVM_FFI_DLL_EXPORT_TYPED_FUNC(openmp_threads, []() {
  int64_t threads = 0;
  ParallelSum(1000, &threads);
  return threads;
});
TVM_FFI_DLL_EXPORT_TYPED_FUNC(openmp_max_threads, []() { return int64_t(omp_get_max_threads()); });
