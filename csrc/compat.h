// Every difference between the LLVM versions pytest-orcjit builds against (18 and newer) lives in
// this header, so that the rest of the native core reads as if there were one LLVM. Add a shim here
// rather than an #if elsewhere.
#ifndef PYTEST_ORCJIT_COMPAT_H_
#define PYTEST_ORCJIT_COMPAT_H_

#include <llvm/Config/llvm-config.h>
#include <llvm/ExecutionEngine/JITLink/JITLink.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/ExecutionEngine/Orc/ObjectLinkingLayer.h>

#include <memory>
#include <string>

// Whether libraries link copies of the session's parsed link graphs (graph_copy.h) rather than
// parsing each object again. It needs pooled symbol names in graphs and LinkGraphLayer::add with an
// explicit interface; checked with LLVM 22, so older LLVMs parse every object for every library.
#if LLVM_VERSION_MAJOR >= 22
#define ORCJIT_COPY_LINK_GRAPHS 1
#include <llvm/ExecutionEngine/Orc/LinkGraphLayer.h>
#else
#define ORCJIT_COPY_LINK_GRAPHS 0
#endif

#if LLVM_VERSION_MAJOR >= 20
#include <llvm/ExecutionEngine/Orc/AbsoluteSymbols.h>  // absoluteSymbols(); in Core.h before 20
#include <llvm/ExecutionEngine/Orc/EHFrameRegistrationPlugin.h>
#else
#include <llvm/ExecutionEngine/JITLink/EHFrameSupport.h>
#endif

namespace orcjit {
namespace compat {

/// The factory LLJITBuilder takes for its object linking layer; it gained a Triple parameter in
/// LLVM 18 and lost it again in LLVM 20.
template <typename Factory>
auto objectLinkingLayerCreator(Factory factory) {
#if LLVM_VERSION_MAJOR >= 20
  return [factory](llvm::orc::ExecutionSession& es) { return factory(es); };
#else
  return [factory](llvm::orc::ExecutionSession& es, const llvm::Triple&) { return factory(es); };
#endif
}

/// A plugin that registers each linked graph's .eh_frame with the process unwinder, so that C++
/// exceptions thrown in JIT code unwind through JIT frames.
inline llvm::Expected<std::unique_ptr<llvm::orc::ObjectLinkingLayer::Plugin>> createEHFramePlugin(
    llvm::orc::ExecutionSession& es) {
#if LLVM_VERSION_MAJOR >= 20
  auto plugin = llvm::orc::EHFrameRegistrationPlugin::Create(es);
  if (!plugin) return plugin.takeError();
  return std::unique_ptr<llvm::orc::ObjectLinkingLayer::Plugin>(std::move(*plugin));
#else
  return std::make_unique<llvm::orc::EHFrameRegistrationPlugin>(
      es, std::make_unique<llvm::jitlink::InProcessEHFrameRegistrar>());
#endif
}

/// A LinkGraph symbol's name as a string; LLVM 20 turned names into pooled SymbolStringPtrs.
inline std::string symbolName(const llvm::jitlink::Symbol& sym) {
#if LLVM_VERSION_MAJOR >= 20
  return sym.hasName() ? std::string(*sym.getName()) : std::string();
#else
  return sym.getName().str();
#endif
}

/// The same name, without a copy: valid while the graph holding `sym` lives.
inline llvm::StringRef symbolNameRef(const llvm::jitlink::Symbol& sym) {
#if LLVM_VERSION_MAJOR >= 20
  return sym.hasName() ? *sym.getName() : llvm::StringRef();
#else
  return sym.getName();
#endif
}

/// A LinkGraph symbol's name in the session's string pool. Since LLVM 20 graphs intern their names
/// in that pool; before, they hold plain strings, which are interned here.
inline llvm::orc::SymbolStringPtr internedName(llvm::orc::ExecutionSession& es,
                                               const llvm::jitlink::Symbol& sym) {
#if LLVM_VERSION_MAJOR >= 20
  (void)es;
  return sym.getName();
#else
  return es.intern(sym.getName());
#endif
}

/// The object in `buffer` parsed into a link graph with its names in `es`'s pool, for libraries to
/// link copies of; nothing where graphs are not copied, or when the object does not parse (linking
/// it then reports why).
inline std::shared_ptr<llvm::jitlink::LinkGraph> parseGraph(llvm::orc::ExecutionSession& es,
                                                            llvm::MemoryBufferRef buffer) {
#if ORCJIT_COPY_LINK_GRAPHS
  auto graph = llvm::jitlink::createLinkGraphFromObject(buffer, es.getSymbolStringPool());
  if (!graph) {
    llvm::consumeError(graph.takeError());
    return nullptr;
  }
  return std::move(*graph);
#else
  (void)es;
  (void)buffer;
  return nullptr;
#endif
}

/// Adds `graph`, whose symbols are `interface`, to `dylib` through `layer` (an
/// ObjectLinkingLayer). Only called with graphs from parseGraph.
inline llvm::Error addGraph(llvm::orc::ObjectLayer& layer, llvm::orc::JITDylib& dylib,
                            std::unique_ptr<llvm::jitlink::LinkGraph> graph,
                            llvm::orc::MaterializationUnit::Interface interface) {
#if ORCJIT_COPY_LINK_GRAPHS
  auto& graph_layer =
      static_cast<llvm::orc::LinkGraphLayer&>(static_cast<llvm::orc::ObjectLinkingLayer&>(layer));
  return graph_layer.add(dylib, std::move(graph), std::move(interface));
#else
  (void)layer;
  (void)dylib;
  (void)graph;
  (void)interface;
  return llvm::createStringError(std::make_error_code(std::errc::not_supported),
                                 "this LLVM cannot link copies of link graphs");
#endif
}

}  // namespace compat
}  // namespace orcjit

#endif  // PYTEST_ORCJIT_COMPAT_H_
