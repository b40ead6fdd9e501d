// Kernels over TVM-FFI strings and containers: String, Array and Map.
//
// Python str, list and dict convert to these at the call: `word_counts("a b
// a")` returns a Map that behaves like {"a": 2, "b": 1}, `join_strings(["x",
// "y"], "-")` returns "x-y", and `invert_map({"a": 1})` returns {1: "a"}.
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <cctype>
#include <string>

namespace {

using tvm::ffi::Array;
using tvm::ffi::Map;
using tvm::ffi::String;

// Counts the words of `text`; words are separated by whitespace.
Map<String, int64_t> WordCounts(const String& text) {
  Map<String, int64_t> counts;
  const char* s = text.data();
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    while (i < n && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    const size_t start = i;
    while (i < n && !std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    if (i > start) {
      String word(s + start, i - start);
      counts.Set(word, counts.count(word) ? counts.at(word) + 1 : 1);
    }
  }
  return counts;
}

String JoinStrings(const Array<String>& parts, const String& sep) {
  std::string joined;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i != 0) joined += sep;
    joined += parts[i];
  }
  return String(joined);
}

// Swaps keys and values; two keys with the same value cannot be inverted.
Map<int64_t, String> InvertMap(const Map<String, int64_t>& mapping) {
  Map<int64_t, String> inverted;
  for (const auto& [key, value] : mapping) {
    if (inverted.count(value)) {
      TVM_FFI_THROW(ValueError) << "argument 'mapping' is not invertible: keys '"
                                << inverted.at(value) << "' and '" << key << "' share the value "
                                << value;
    }
    inverted.Set(value, key);
  }
  return inverted;
}

}  // namespace

TVM_FFI_DLL_EXPORT_TYPED_FUNC(word_counts, WordCounts);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(join_strings, JoinStrings);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(invert_map, InvertMap);
