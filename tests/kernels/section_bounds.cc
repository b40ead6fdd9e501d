// Items placed in a section named like a C identifier, which the linker brackets with
// `__start_orcjit_items` and `__stop_orcjit_items`; -DORCJIT_MORE_ITEMS adds one. item_sum also
// refers to the first item itself unless -DORCJIT_BOUNDS_ONLY, where only the bounds keep the
// section from being dead-stripped (as in GNU ld). The inline
// function (its own COMDAT section) is one that shared_inline_a.cc defines too, so that a library
// holding both takes it from the object linked first and dead-strips the other's copy.
#include <tvm/ffi/function.h>

#include "shared_inline.h"

__attribute__((used, section("orcjit_items"))) static const long item_a = 3;
__attribute__((used, section("orcjit_items"))) static const long item_b = 4;
#ifdef ORCJIT_MORE_ITEMS
__attribute__((used, section("orcjit_items"))) static const long item_c = 5;
#endif

extern "C" const long __start_orcjit_items[];
extern "C" const long __stop_orcjit_items[];

TVM_FFI_DLL_EXPORT_TYPED_FUNC(item_sum, []() {
#ifdef ORCJIT_BOUNDS_ONLY
  long sum = 0;
#else
  long sum = 0 * *static_cast<const volatile long*>(&item_a);
#endif
  for (const long* item = __start_orcjit_items; item != __stop_orcjit_items; ++item) sum += *item;
  return sum;
});

TVM_FFI_DLL_EXPORT_TYPED_FUNC(half_items, [](int value) { return checked_half(value); });
