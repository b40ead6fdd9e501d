// The execution session: the LLJIT configuration, process symbol resolution, and the session's
// library bookkeeping. See session.h.
#include "session.h"

#include <llvm/ExecutionEngine/Orc/IRCompileLayer.h>
#include <llvm/Support/Error.h>
#include <llvm/TargetParser/Host.h>
#include <tvm/ffi/c_api.h>
#include <tvm/ffi/cast.h>
#include <tvm/ffi/error.h>

#include <mutex>
#include <unordered_map>
#include <vector>

#include "compat.h"
#include "debug_registration.h"
#include "eh_frame.h"
#include "jit_code_map.h"
#include "library.h"
#include "perf_map.h"
#include "plugin.h"
#include "process_symbols.h"
#include "section_bounds.h"

namespace orcjit {

namespace {

using llvm::orc::JITDylib;

/// The library of the graph whose failure this thread is reporting: the linking layer calls every
/// plugin's notifyFailed right before it reports the error, on the same thread.
thread_local const JITDylib* failing_dylib = nullptr;
std::mutex reported_mutex;
std::unordered_map<const JITDylib*, std::vector<std::string>>& Reported() {
  static auto* reported = new std::unordered_map<const JITDylib*, std::vector<std::string>>();
  return *reported;
}

/// Remembers which library a failing graph belongs to, for the error reporter.
class FailureAttributionPlugin final : public ResourcelessPlugin {
 public:
  llvm::Error notifyFailed(llvm::orc::MaterializationResponsibility& mr) override {
    failing_dylib = &mr.getTargetJITDylib();
    return llvm::Error::success();
  }
};

void ReportError(llvm::Error err) {
  std::vector<std::string> messages = DescribeErrors(std::move(err));
  std::lock_guard<std::mutex> lock(reported_mutex);
  auto& reported = Reported()[failing_dylib];
  reported.insert(reported.end(), messages.begin(), messages.end());
  failing_dylib = nullptr;
}

/// Stands in for LLJIT's IR compiler: pytest-orcjit links objects only, and leaving the code
/// generator out keeps the native core small and its load fast.
class NoIRCompiler final : public llvm::orc::IRCompileLayer::IRCompiler {
 public:
  NoIRCompiler() : IRCompiler(llvm::orc::IRSymbolMapper::ManglingOptions()) {}
  llvm::Expected<std::unique_ptr<llvm::MemoryBuffer>> operator()(llvm::Module&) override {
    return llvm::createStringError(std::make_error_code(std::errc::not_supported),
                                   "pytest-orcjit links object files; it does not compile IR");
  }
};

}  // namespace

std::vector<std::string> DescribeErrors(llvm::Error err) {
  std::vector<std::string> messages;
  llvm::handleAllErrors(
      std::move(err), [&](const llvm::orc::FailedToMaterialize&) {},
      [&](const llvm::orc::SymbolsNotFound& missing) {
        for (const auto& symbol : missing.getSymbols()) {
          messages.push_back("undefined symbol '" + (*symbol).str() + "'");
        }
      },
      [&](const llvm::ErrorInfoBase& other) { messages.push_back(other.message()); });
  return messages;
}

std::vector<std::string> TakeReportedErrors(const JITDylib* dylib) {
  std::lock_guard<std::mutex> lock(reported_mutex);
  std::vector<std::string> errors;
  for (const JITDylib* key : {dylib, static_cast<const JITDylib*>(nullptr)}) {
    auto it = Reported().find(key);
    if (it == Reported().end()) continue;
    errors.insert(errors.end(), it->second.begin(), it->second.end());
    Reported().erase(it);
  }
  return errors;
}

std::string LLVMVersion() { return LLVM_VERSION_STRING; }

void PrepareFork() { TVMFFIBacktrace(__FILE__, __LINE__, __func__, /*cross_ffi_boundary=*/1); }

SessionObj::SessionObj() {
  llvm::Triple triple(llvm::sys::getProcessTriple());
  auto jit =
      llvm::orc::LLJITBuilder()
          .setJITTargetMachineBuilder(llvm::orc::JITTargetMachineBuilder(triple))
          // x86-64 System V ELF; set here so that LLJIT needs no target backend to compute it.
          .setDataLayout(llvm::DataLayout(
              "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-i128:128-f80:128-n8:16:32:64-S128"))
          .setCompileFunctionCreator(
              [](llvm::orc::JITTargetMachineBuilder)
                  -> llvm::Expected<std::unique_ptr<llvm::orc::IRCompileLayer::IRCompiler>> {
                return std::make_unique<NoIRCompiler>();
              })
          .setObjectLinkingLayerCreator(compat::objectLinkingLayerCreator(
              [this](llvm::orc::ExecutionSession& es)
                  -> llvm::Expected<std::unique_ptr<llvm::orc::ObjectLayer>> {
                auto memory = std::make_unique<ArenaMemoryManager>();
                memory_ = memory.get();
                auto layer = std::make_unique<llvm::orc::ObjectLinkingLayer>(es, std::move(memory));
                // First: what it copies is what the passes before its own have done.
                auto preparation = std::make_unique<GraphPreparationPlugin>();
                preparation_ = preparation.get();
                layer->addPlugin(std::move(preparation));
                auto eh_frames = compat::createEHFramePlugin(es);
                if (!eh_frames) return eh_frames.takeError();
                layer->addPlugin(std::move(*eh_frames));
                layer->addPlugin(std::make_unique<EHFramePackingPlugin>());
                layer->addPlugin(std::make_unique<FailureAttributionPlugin>());
                layer->addPlugin(std::make_unique<SectionBoundsPlugin>());
                // Before the binding plugin: it fills TLS entries before that applies fixups.
                auto thread_locals = std::make_unique<ThreadLocalPlugin>(process_symbol_cache_);
                thread_locals_ = thread_locals.get();
                layer->addPlugin(std::move(thread_locals));
                auto binding = std::make_unique<ProcessBindingPlugin>(es, process_symbol_cache_);
                binding_ = binding.get();
                layer->addPlugin(std::move(binding));
                auto init_fini = std::make_unique<InitFiniPlugin>();
                init_fini_ = init_fini.get();
                layer->addPlugin(std::move(init_fini));
                // Debuggers and profilers: each does nothing unless it has something to do.
                auto debug_objects = std::make_unique<DebugRegistrationPlugin>();
                debug_objects_ = debug_objects.get();
                layer->addPlugin(std::move(debug_objects));
                layer->addPlugin(std::make_unique<PerfMapPlugin>());
                layer->addPlugin(std::make_unique<JitCodeMapPlugin>());
                return std::unique_ptr<llvm::orc::ObjectLayer>(std::move(layer));
              }))
          .setProcessSymbolsJITDylibSetup(
              [this](llvm::orc::LLJIT& j) -> llvm::Expected<llvm::orc::JITDylibSP> {
                auto& dylib = j.getExecutionSession().createBareJITDylib("<process>");
                dylib.addGenerator(std::make_unique<ProcessSymbolGenerator>(process_symbol_cache_));
                return &dylib;
              })
          .setPlatformSetUp(llvm::orc::setUpInactivePlatform)
          .create();
  if (!jit) {
    TVM_FFI_THROW(RuntimeError) << "cannot create the LLVM ORC JIT for " << triple.str() << ": "
                                << llvm::toString(jit.takeError());
  }
  jit_ = std::move(*jit);
  jit_->getExecutionSession().setErrorReporter(ReportError);
  process_symbols_ = jit_->getProcessSymbolsJITDylib().get();
}

SessionObj::~SessionObj() { Close(); }

llvm::orc::LLJIT& SessionObj::jit() {
  if (!jit_) {
    TVM_FFI_THROW(RuntimeError) << "the execution session is closed; create a new one with "
                                   "pytest_orcjit.create_session()";
  }
  return *jit_;
}

void SessionObj::Attach(LibraryObj* library) {
  std::lock_guard<std::mutex> lock(mutex_);
  libraries_.insert(library);
}

void SessionObj::Detach(LibraryObj* library) {
  std::lock_guard<std::mutex> lock(mutex_);
  libraries_.erase(library);
}

void SessionObj::Close() {
  std::vector<tvm::ffi::ObjectPtr<LibraryObj>> open;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) return;
    closed_ = true;
    // Held while they close: closing one library may drop the last reference to another that it
    // links against.
    for (LibraryObj* library : libraries_)
      open.push_back(tvm::ffi::GetObjectPtr<LibraryObj>(library));
  }
  // A library detaches itself when it closes; libraries still referenced from Python stay valid
  // objects that report being closed. Libraries close before those they link against.
  LibraryObj::CloseInLinkOrder(open);
  open.clear();
  objects_.Clear();  // its symbol names belong to the JIT's string pool
  if (jit_) {
    if (auto err = jit_->getExecutionSession().endSession()) llvm::consumeError(std::move(err));
    process_symbol_cache_.Clear();  // so do its names
    jit_.reset();
  }
}

}  // namespace orcjit
