// CUDA kernels over float32 tensors on the GPU: `vector_add` and a `vector_sum` reduction.
//
// The host functions check their inputs (device, dtype, shape), launch on the stream that the
// caller set for the device (TVMFFIEnvGetStream: torch's current stream when called with torch
// tensors, the default stream otherwise) and turn every CUDA error into a Python exception. Two
// more exports need no kernel launch: `runtime_version` asks the CUDA runtime for its version
// (no GPU needed), and `device_count` raises the runtime's own error where there is no GPU.
#include <cuda_runtime.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/c_env_api.h>
#include <tvm/ffi/function.h>

#include <algorithm>
#include <cstdint>

namespace {

using tvm::ffi::TensorView;

constexpr int kThreads = 256;

void Check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    TVM_FFI_THROW(RuntimeError) << what << " failed: " << cudaGetErrorString(status) << " ("
                                << cudaGetErrorName(status) << ")";
  }
}

void CheckCudaFloat32(const char* name, const TensorView& t) {
  if (t.device().device_type != kDLCUDA) {
    TVM_FFI_THROW(ValueError) << name << " must be on a CUDA device";
  }
  if (t.dtype().code != kDLFloat || t.dtype().bits != 32 || t.dtype().lanes != 1) {
    TVM_FFI_THROW(TypeError) << name << " must be float32";
  }
  if (!t.IsContiguous()) TVM_FFI_THROW(ValueError) << name << " must be contiguous";
}

cudaStream_t StreamOf(const TensorView& t) {
  return static_cast<cudaStream_t>(TVMFFIEnvGetStream(t.device().device_type, t.device().device_id));
}

__global__ void AddKernel(const float* x, const float* y, float* out, int64_t n) {
  int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = x[i] + y[i];
}

// Each block sums its slice in shared memory, then adds its total to *out.
__global__ void SumKernel(const float* x, float* out, int64_t n) {
  __shared__ float partial[kThreads];
  float total = 0.0f;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    total += x[i];
  }
  partial[threadIdx.x] = total;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) atomicAdd(out, partial[0]);
}

void Add(TensorView x, TensorView y, TensorView out) {
  CheckCudaFloat32("x", x);
  CheckCudaFloat32("y", y);
  CheckCudaFloat32("out", out);
  if (x.numel() != y.numel() || x.numel() != out.numel()) {
    TVM_FFI_THROW(ValueError) << "x, y and out must have as many elements (" << x.numel() << ", "
                              << y.numel() << ", " << out.numel() << ")";
  }
  int64_t n = x.numel();
  if (n == 0) return;
  int blocks = static_cast<int>((n + kThreads - 1) / kThreads);
  AddKernel<<<blocks, kThreads, 0, StreamOf(x)>>>(static_cast<const float*>(x.data_ptr()),
                                                   static_cast<const float*>(y.data_ptr()),
                                                   static_cast<float*>(out.data_ptr()), n);
  Check(cudaGetLastError(), "launching add");
}

void Sum(TensorView x, TensorView out) {
  CheckCudaFloat32("x", x);
  CheckCudaFloat32("out", out);
  if (out.numel() != 1) TVM_FFI_THROW(ValueError) << "out must hold one element";
  cudaStream_t stream = StreamOf(x);
  Check(cudaMemsetAsync(out.data_ptr(), 0, sizeof(float), stream), "clearing out");
  int64_t n = x.numel();
  if (n == 0) return;
  int blocks = static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 1024));
  SumKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const float*>(x.data_ptr()),
                                             static_cast<float*>(out.data_ptr()), n);
  Check(cudaGetLastError(), "launching sum");
}

int64_t RuntimeVersion() {
  int version = 0;
  Check(cudaRuntimeGetVersion(&version), "cudaRuntimeGetVersion");
  return version;
}

int64_t DeviceCount() {
  int count = 0;
  Check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  return count;
}

}  // namespace

TVM_FFI_DLL_EXPORT_TYPED_FUNC(vector_add, Add);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(vector_sum, Sum);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(runtime_version, RuntimeVersion);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(device_count, DeviceCount);
