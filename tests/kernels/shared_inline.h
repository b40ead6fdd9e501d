// An inline function that both shared_inline_*.cc define: the library keeps one copy, and the
// other object's unwind records for it are dropped at link time.
#include <stdexcept>
#include <string>

inline __attribute__((noinline)) int checked_half(int value) {
  if (value % 2 != 0) throw std::invalid_argument("odd value " + std::to_string(value));
  return value / 2;
}
