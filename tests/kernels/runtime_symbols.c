// Calls functions of shared libraries that the process does not load by itself (a BLAS, the CUDA
// runtime): linking fails, and the error says which library defines each and how to load it.
#include <stdint.h>

double cblas_ddot(int n, const double* x, int incx, const double* y, int incy);
void sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k,
            const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
            const float* beta, float* c, const int* ldc);
int cudaGetDeviceCount(int* count);

int64_t orcjit_test_runtime_symbols(void) {
  double x = 1.0;
  int count = 0;
  int one = 1;
  float f = 1.0f;
  sgemm_("N", "N", &one, &one, &one, &f, &f, &one, &f, &one, &f, &f, &one);
  return (int64_t)cblas_ddot(1, &x, 1, &x, 1) + cudaGetDeviceCount(&count);
}
