// Link errors: one message for a failed link. See link_errors.h.
#include "link_errors.h"

#include <llvm/ADT/StringExtras.h>
#include <llvm/Object/ObjectFile.h>

#include <map>
#include <set>

#include "session.h"

namespace orcjit {

namespace {

/// Shared libraries that define the symbols kernels most often take from outside the process,
/// known by the names of their symbols: an undefined one says which library to load, and how.
struct KnownLibrary {
  const char* what;      // how messages name it
  const char* load;      // the name to load it by
  bool openmp;           // -fopenmp through the plugin's flags loads it
  const char* prefixes;  // of its symbols, separated by spaces; a prefix that ends in a letter
                         // matches only before an uppercase letter ("cuda" in "cudaMalloc")
  const char* names;     // whole names, separated by spaces
  // What to do, where it is not "load it with --orcjit-libs <load>" (the sanitizer runtimes).
  const char* how = nullptr;
};

// The two OpenMP runtimes first, then the OpenMP functions both define (DescribeLinkFailure).
constexpr KnownLibrary kKnownLibraries[] = {
    {"the LLVM OpenMP runtime, libomp", "omp", true, "__kmpc_ __kmp_ kmp_", ""},
    {"the GNU OpenMP runtime, libgomp", "gomp", true, "GOMP_ GOACC_", ""},
    {"an OpenMP runtime, libomp for clang or libgomp for gcc", "omp", true, "omp_", ""},
    {"the CUDA runtime, libcudart", "cudart", false, "cuda __cuda", ""},
    {"a BLAS library, e.g. libopenblas", "openblas", false, "cblas_",
     "sgemm_ dgemm_ cgemm_ zgemm_ sgemv_ dgemv_ saxpy_ daxpy_ sdot_ ddot_ sscal_ dscal_ snrm2_ "
     "dnrm2_"},
    {"the math library, libm", "m", false, "",
     "sin sinf cos cosf tan tanf asin asinf acos acosf atan atanf atan2 atan2f sinh sinhf cosh "
     "coshf tanh tanhf exp expf exp2 exp2f expm1 expm1f log logf log2 log2f log10 log10f log1p "
     "log1pf pow powf sqrt sqrtf cbrt cbrtf hypot hypotf erf erff erfc erfcf lgamma lgammaf "
     "tgamma tgammaf fmod fmodf sincos sincosf"},
    {"the AddressSanitizer runtime, which must be the first library of the process", "asan", false,
     "__asan_", "",
     "run pytest with --orcjit-sanitize=address (it restarts itself with the runtime preloaded), "
     "or start Python with LD_PRELOAD=<the runtime> (clang++ -print-file-name="
     "libclang_rt.asan-x86_64.so; g++ -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0"},
    {"the UndefinedBehaviorSanitizer runtime", "ubsan", false, "__ubsan_", "",
     "compile with --orcjit-sanitize=undefined or -fsanitize=undefined through the plugin's flags "
     "(either loads it), or load the compiler's with pytest_orcjit.load_shared_library: \"ubsan\" "
     "for gcc, \"libclang_rt.ubsan_standalone-x86_64.so\" for clang"},
};

bool InList(llvm::StringRef list, llvm::StringRef symbol, bool prefixes) {
  llvm::SmallVector<llvm::StringRef, 16> words;
  list.split(words, ' ', -1, /*KeepEmpty=*/false);
  for (llvm::StringRef word : words) {
    if (!prefixes) {
      if (symbol == word) return true;
    } else if (symbol.starts_with(word)) {
      if (!llvm::isAlpha(word.back())) return true;
      if (symbol.size() > word.size() && llvm::isUpper(symbol[word.size()])) return true;
    }
  }
  return false;
}

const KnownLibrary* LibraryDefining(llvm::StringRef symbol) {
  for (const KnownLibrary& library : kKnownLibraries) {
    if (InList(library.prefixes, symbol, true) || InList(library.names, symbol, false))
      return &library;
  }
  return nullptr;
}

/// The paths of the files in `files` whose objects reference one of `symbols` without defining it,
/// separated by commas.
std::string ReferencingObjects(const ObjectFiles& files, const std::set<std::string>& symbols) {
  std::string found;
  for (const auto& [path, bytes] : files) {
    auto object = llvm::object::ObjectFile::createObjectFile(bytes->getMemBufferRef());
    if (!object) {
      llvm::consumeError(object.takeError());
      continue;
    }
    for (const llvm::object::SymbolRef& candidate : (*object)->symbols()) {
      auto flags = candidate.getFlags();
      auto name = candidate.getName();
      if (!flags || !name) {
        llvm::consumeError(flags.takeError());
        llvm::consumeError(name.takeError());
        continue;
      }
      if ((*flags & llvm::object::SymbolRef::SF_Undefined) && symbols.count(name->str())) {
        found += (found.empty() ? "" : ", ") + path;
        break;
      }
    }
  }
  return found;
}

/// "undefined symbol 'x'" (or "undefined symbols 'x', 'y'") and the objects that reference them.
std::string DescribeUndefined(const std::set<std::string>& symbols, const ObjectFiles& files) {
  std::string described = symbols.size() == 1 ? "undefined symbol " : "undefined symbols ";
  const char* separator = "";
  for (const std::string& symbol : symbols) {
    described += separator + ("'" + symbol + "'");
    separator = ", ";
  }
  std::string referencing = ReferencingObjects(files, symbols);
  if (!referencing.empty()) described += ", referenced by " + referencing;
  return described;
}

/// What JITLink's "In graph OBJECT, section S: relocation target ADDRESS (SYMBOL:...) is out of
/// range of KIND fixup at ..." says, for the first such error in `reason`: "'OBJECT' refers to
/// 'SYMBOL' with a 32-bit relocation (KIND)", as much of it as can be read.
std::string DescribeOutOfRange(const std::string& reason) {
  constexpr auto npos = std::string::npos;
  const std::string marker = "out of range of ";
  size_t range = reason.find(marker);
  if (range == npos) return "";
  std::string object, symbol;
  size_t graph = reason.rfind("In graph ", range);
  size_t section = graph == npos ? npos : reason.find(", section ", graph);
  if (section < range) object = reason.substr(graph + 9, section - graph - 9);
  size_t target = reason.rfind("relocation target ", range);
  size_t open = target == npos ? npos : reason.find_first_of("(\"", target);
  if (open < range) {
    size_t close = reason.find_first_of(reason[open] == '"' ? "\"" : ":)", open + 1);
    if (close < range) symbol = reason.substr(open + 1, close - open - 1);
  }
  size_t kind_end = reason.find(' ', range + marker.size());
  std::string kind = reason.substr(range + marker.size(), kind_end - range - marker.size());
  std::string text = object.empty() ? "an object" : "'" + object + "'";
  text += " refers to ";
  text += symbol.empty() || symbol[0] == '<' ? "a symbol" : "'" + symbol + "'";
  return text + " with a 32-bit relocation (" + kind + ")";
}

}  // namespace

std::string DescribeLinkFailure(llvm::Error err, const llvm::orc::JITDylib* dylib,
                                const ObjectFiles& files) {
  std::vector<std::string> reasons = TakeReportedErrors(dylib);
  for (std::string& returned : DescribeErrors(std::move(err)))
    reasons.push_back(std::move(returned));
  std::vector<std::string> parts;
  std::set<std::string> unknown;
  std::map<const KnownLibrary*, std::set<std::string>> known;
  for (const std::string& reason : reasons) {
    llvm::StringRef symbol(reason);
    if (!symbol.consume_front("undefined symbol '") || !symbol.consume_back("'")) {
      parts.push_back(reason);
    } else if (const KnownLibrary* library = LibraryDefining(symbol)) {
      known[library].insert(symbol.str());
    } else {
      unknown.insert(symbol.str());
    }
  }
  // The OpenMP functions both runtimes define go with the runtime the other symbols name.
  const KnownLibrary* either = &kKnownLibraries[2];
  for (const KnownLibrary* runtime : {&kKnownLibraries[0], &kKnownLibraries[1]}) {
    if (known.count(either) && known.count(runtime)) {
      known[runtime].insert(known[either].begin(), known[either].end());
      known.erase(either);
    }
  }
  for (const auto& [library, symbols] : known) {
    std::string part = DescribeUndefined(symbols, files) + " (" + library->what + "): ";
    if (library->how != nullptr) {
      parts.push_back(part + library->how);
      continue;
    }
    if (library->openmp) part += "compile with -fopenmp through the plugin's flags, or ";
    parts.push_back(part + "load it with --orcjit-libs " + library->load +
                    " / pytest_orcjit.load_shared_library(\"" + library->load + "\")");
  }
  if (!unknown.empty()) {
    const char* it = unknown.size() == 1 ? "it" : "them";
    parts.push_back(DescribeUndefined(unknown, files) + ": no object in the library defines " + it +
                    " and the process does not export " + it + "; add the object that " +
                    "defines " + it + " to the library, or load the shared library that does " +
                    "(pytest_orcjit.load_shared_library, --orcjit-libs)");
  }
  std::string message;
  for (const std::string& part : parts) message += (message.empty() ? "" : "; ") + part;
  if (message.find("out of range") != std::string::npos) {
    message += ": " + DescribeOutOfRange(message) +
               " that cannot reach it (a PC-relative one reaches 2 GiB either way, an absolute "
               "one the lowest 4 GiB); compile the objects with -fPIC";
  }
  return message;
}

}  // namespace orcjit
