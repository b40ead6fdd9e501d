/* Thread-local variables in C (`__thread`), used from several POSIX threads.
 *
 * The C twin of tls_counter.cc: `tls_c_counter` is global-dynamic, the static ones local-dynamic
 * when optimized. tls_c_threads(out) starts one thread per row of `out`, an int64 tensor of shape
 * (threads, TLS_FIELDS), and each thread writes what it saw into its row (see report). */
#define _POSIX_C_SOURCE 200809L /* pthread barriers under -std=c11 */
#include <pthread.h>
#include <stdint.h>
#include <tvm/ffi/c_api.h>

#define TLS_FIELDS 10
#define TLS_MAX_THREADS 64

__thread long tls_c_counter = 40;
_Alignas(64) __thread char tls_c_aligned[64] = {7, 8, 9};
_Alignas(128) __thread long long tls_c_zeroed[4];
static __thread long local_counter = 40;
static __thread int local_seven = 7;

/* tls_c_counter after each of two bumps, local_counter after one bump, local_seven, the
 * addresses of tls_c_counter, tls_c_aligned, tls_c_zeroed and local_counter, the sum of the
 * first and third bytes of tls_c_aligned, and the sum of tls_c_zeroed before it writes it. */
static pthread_barrier_t all_reported; /* threads live until all have reported */

static void* report(void* row) {
  int64_t* out = (int64_t*)row;
  out[0] = ++tls_c_counter;
  out[1] = ++tls_c_counter;
  out[2] = ++local_counter;
  out[3] = local_seven++;
  out[4] = (int64_t)(intptr_t)&tls_c_counter;
  out[5] = (int64_t)(intptr_t)&tls_c_aligned[0];
  out[6] = (int64_t)(intptr_t)&tls_c_zeroed[0];
  out[7] = (int64_t)(intptr_t)&local_counter;
  out[8] = tls_c_aligned[0] + tls_c_aligned[2];
  int64_t sum = 0;
  for (int i = 0; i < 4; ++i) sum += tls_c_zeroed[i];
  out[9] = sum;
  for (int i = 0; i < 4; ++i) tls_c_zeroed[i] = 1;
  pthread_barrier_wait(&all_reported);
  return NULL;
}

static int fail(const char* message) {
  TVMFFIErrorSetRaisedFromCStr("ValueError", message);
  return -1;
}

/* tls_c_threads(out): out is a C-contiguous int64 tensor of shape (threads, TLS_FIELDS). */
int __tvm_ffi_tls_c_threads(void* self, const TVMFFIAny* args, int32_t num_args,
                            TVMFFIAny* result) {
  (void)self;
  if (num_args != 1) return fail("tls_c_threads(out) takes one tensor");
  const DLTensor* out;
  if (args[0].type_index == kTVMFFIDLTensorPtr) {
    out = (const DLTensor*)args[0].v_ptr;
  } else if (args[0].type_index == kTVMFFITensor) {
    out = (const DLTensor*)((const char*)args[0].v_obj + sizeof(TVMFFIObject));
  } else {
    return fail("tls_c_threads(out): out must be a tensor");
  }
  int contiguous = out->ndim == 2 && (out->strides == NULL ||
                                      (out->strides[1] == 1 && out->strides[0] == TLS_FIELDS));
  if (!contiguous || out->shape[1] != TLS_FIELDS || out->shape[0] > TLS_MAX_THREADS ||
      out->dtype.code != kDLInt || out->dtype.bits != 64) {
    return fail("tls_c_threads(out): out must be a contiguous int64 tensor of shape (n, 10)");
  }
  int64_t* rows = (int64_t*)((char*)out->data + out->byte_offset);
  pthread_t threads[TLS_MAX_THREADS];
  if (out->shape[0] < 1) return fail("tls_c_threads(out): out needs a row");
  pthread_barrier_init(&all_reported, NULL, (unsigned)out->shape[0]);
  for (int64_t i = 0; i < out->shape[0]; ++i) {
    if (pthread_create(&threads[i], NULL, report, rows + i * TLS_FIELDS) != 0) {
      return fail("tls_c_threads: pthread_create failed");
    }
  }
  for (int64_t i = 0; i < out->shape[0]; ++i) pthread_join(threads[i], NULL);
  pthread_barrier_destroy(&all_reported);
  result->type_index = kTVMFFINone;
  result->zero_padding = 0;
  result->v_int64 = 0;
  return 0;
}

/* tls_c_bump() -> the calling thread's tls_c_counter after one more bump. */
int __tvm_ffi_tls_c_bump(void* self, const TVMFFIAny* args, int32_t num_args, TVMFFIAny* result) {
  (void)self;
  (void)args;
  (void)num_args;
  result->type_index = kTVMFFIInt;
  result->zero_padding = 0;
  result->v_int64 = ++tls_c_counter;
  return 0;
}
