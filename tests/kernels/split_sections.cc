// Every function and variable in a section of its own when compiled with -ffunction-sections
// -fdata-sections: .text.*, .data.*, .bss.*, .rodata.* and .data.rel.ro.*, which a prepared graph
// merges into one section of each kind (csrc/graph_copy.h). Loaded again and again, each load must
// see its own, freshly initialized copy of every one of them.
#include <tvm/ffi/function.h>

namespace {
struct Shape {
  virtual ~Shape() = default;
  virtual int64_t Sides() const = 0;
};
struct Square final : Shape {
  int64_t Sides() const override { return 4; }
};

int64_t g_counter = 40;                  // .data.*
int64_t g_zeroed = 0;                    // .bss.*
const int64_t kTable[] = {3, 5, 7, 11};  // .rodata.*
Square g_square;                         // its vtable in .data.rel.ro.*
const Shape* const g_shape = &g_square;
int64_t g_constructed = 0;  // set by a static constructor, in .text.startup
__attribute__((constructor)) void Construct() { g_constructed += 1; }

__attribute__((noinline)) int64_t Entry(int64_t i) { return kTable[i % 4]; }
}  // namespace

TVM_FFI_DLL_EXPORT_TYPED_FUNC(bump, []() { return ++g_counter + g_zeroed++; });
TVM_FFI_DLL_EXPORT_TYPED_FUNC(entry, [](int64_t i) { return Entry(i); });
TVM_FFI_DLL_EXPORT_TYPED_FUNC(sides, []() { return g_shape->Sides(); });
TVM_FFI_DLL_EXPORT_TYPED_FUNC(constructed, []() { return g_constructed; });
