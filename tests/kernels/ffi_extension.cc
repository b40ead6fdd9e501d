// A TVM-FFI extension shaped like tvm-ffi's examples/python_packaging/src/extension.cc: global
// functions registered with GlobalDef, and an object type IntPair with fields, an initializer and
// a method, registered with ObjectDef; and a type Point without an initializer. A library registers
// them when it loads; pytest-orcjit removes its global functions when it closes
// (csrc/ffi_registrations.h). Compiled with -DCHANGED_LAYOUT, IntPair has one more field, before
// the others: the same type key, another type.
#include <tvm/ffi/function.h>
#include <tvm/ffi/object.h>
#include <tvm/ffi/reflection/registry.h>

#include <cstdint>

namespace my_ffi_extension {

namespace ffi = tvm::ffi;

static int AddTwo(int x) { return x + 2; }

TVM_FFI_DLL_EXPORT_TYPED_FUNC(add_two, AddTwo);

static int AddOne(int x) { return x + 1; }

TVM_FFI_STATIC_INIT_BLOCK() {
  namespace refl = tvm::ffi::reflection;
  refl::GlobalDef().def("my_ffi_extension.add_one", AddOne);
}

static void RaiseError(const ffi::String& msg) { TVM_FFI_THROW(RuntimeError) << msg; }

TVM_FFI_STATIC_INIT_BLOCK() {
  namespace refl = tvm::ffi::reflection;
  refl::GlobalDef().def("my_ffi_extension.raise_error", RaiseError);
}

class IntPairObj : public ffi::Object {
 public:
#ifdef CHANGED_LAYOUT
  int64_t c = 0;
#endif
  int64_t a;
  int64_t b;

  IntPairObj(int64_t a, int64_t b) : a(a), b(b) {}

  int64_t Sum() const { return a + b; }

  static constexpr bool _type_mutable = true;
  TVM_FFI_DECLARE_OBJECT_INFO_FINAL("my_ffi_extension.IntPair", IntPairObj, ffi::Object);
};

class IntPair : public ffi::ObjectRef {
 public:
  IntPair(int64_t a, int64_t b) { data_ = ffi::make_object<IntPairObj>(a, b); }
  TVM_FFI_DEFINE_OBJECT_REF_METHODS_NOTNULLABLE(IntPair, ffi::ObjectRef, IntPairObj);
};

TVM_FFI_STATIC_INIT_BLOCK() {
  namespace refl = tvm::ffi::reflection;
  refl::ObjectDef<IntPairObj>()
      .def(refl::init<int64_t, int64_t>())
      .def_rw("a", &IntPairObj::a, "the first field")
      .def_rw("b", &IntPairObj::b, "the second field")
      .def("sum", &IntPairObj::Sum, "IntPairObj::Sum() method");
}

static IntPair MakePair(int64_t a, int64_t b) { return IntPair(a, b); }

TVM_FFI_DLL_EXPORT_TYPED_FUNC(make_pair, MakePair);

// A type without an initializer of its own: ObjectDef gives it tvm-ffi's `__ffi_init__`.
class PointObj : public ffi::Object {
 public:
  int64_t x = 0;

  TVM_FFI_DECLARE_OBJECT_INFO_FINAL("my_ffi_extension.Point", PointObj, ffi::Object);
};

TVM_FFI_STATIC_INIT_BLOCK() {
  namespace refl = tvm::ffi::reflection;
  refl::ObjectDef<PointObj>().def_ro("x", &PointObj::x);
}

static ffi::ObjectRef MakePoint(int64_t x) {
  auto point = ffi::make_object<PointObj>();
  point->x = x;
  return ffi::ObjectRef(point);
}

TVM_FFI_DLL_EXPORT_TYPED_FUNC(make_point, MakePoint);

}  // namespace my_ffi_extension
