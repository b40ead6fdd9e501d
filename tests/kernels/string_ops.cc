// Strings, Arrays and Maps in and out.
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <cctype>
#include <cstdint>
#include <string>

using tvm::ffi::Array;
using tvm::ffi::Map;
using tvm::ffi::String;
using Counts = Map<String, int64_t>;  // an alias: a bare comma would split the macro arguments

TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_concat, [](String a, String b) -> String {
  return String(std::string(a) + std::string(b));
});

TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_upper, [](String text) -> String {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return String(out);
});

TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_array_sum, [](Array<int64_t> values) -> int64_t {
  int64_t total = 0;
  for (int64_t value : values) total += value;
  return total;
});

TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_range, [](int64_t n) -> Array<int64_t> {
  Array<int64_t> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(i);
  return out;
});

TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_map_get, [](Counts map, String key) -> int64_t {
  auto it = map.find(key);
  return it == map.end() ? -1 : (*it).second;
});

// Maps each word to its length.
TVM_FFI_DLL_EXPORT_TYPED_FUNC(test_word_lengths, [](Array<String> words) -> Counts {
  Counts out;
  for (const String& word : words) out.Set(word, static_cast<int64_t>(word.size()));
  return out;
});
