// The host side of a CUDA source, as nvcc compiles it: besides the export, the object registers
// its device code with the CUDA runtime from a static constructor (__cudaRegisterFatBinary) and
// unregisters it from a handler it registers with atexit(), which glibc keeps in libc_nonshared.a.
// Nothing here needs a GPU: the runtime loads the device code lazily.
#include <tvm/ffi/function.h>

__global__ void Store(int* out) { *out = 1; }

static int64_t HostAdd(int64_t a, int64_t b) { return a + b; }

TVM_FFI_DLL_EXPORT_TYPED_FUNC(host_add, HostAdd);
