// Copies of link graphs and prepared graphs; see graph_copy.h.
#include "graph_copy.h"

#include <llvm/ADT/DenseMap.h>
#include <llvm/ExecutionEngine/JITLink/x86_64.h>

#include <optional>

#include "compat.h"

namespace orcjit {

using llvm::jitlink::Block;
using llvm::jitlink::LinkGraph;
using llvm::jitlink::Symbol;

namespace {

[[maybe_unused]] constexpr llvm::StringLiteral kEHFrame = ".eh_frame";  // copies only
constexpr llvm::StringLiteral kPreparedEHFrame = "$.orcjit.prepared.eh_frame";

/// Whether `content` lies in `bytes`.
[[maybe_unused]] bool Within(llvm::ArrayRef<char> content, llvm::StringRef bytes) {
  auto begin = reinterpret_cast<uintptr_t>(content.data());
  auto low = reinterpret_cast<uintptr_t>(bytes.data());
  return begin >= low && begin + content.size() <= low + bytes.size();
}

/// Whether a link may look up the section `name` when it has no blocks: a section whose name is a
/// C identifier gets `__start_`/`__stop_` symbols, and names starting with '$' are JITLink's (its
/// GOT) and ours. Dead-stripping empties the sections of the inline functions that earlier objects
/// of the library define (at -O0, most of an object's thousand sections); a prepared copy leaves
/// those out, and every pass of every later link has that many fewer sections to walk.
bool MayBeNamed(llvm::StringRef name) {
  if (name.empty() || name.front() == '$') return true;
  return llvm::all_of(name, [](char c) { return llvm::isAlnum(c) || c == '_'; });
}

/// A copy of `graph`. A prepared copy (`object_bytes` given: the bytes of the graph's object file,
/// which outlive the copy) owns its section names and the contents that are not in those bytes
/// (the graph it copies is being linked, and what that allocated goes away with it), and renames
/// .eh_frame.
std::unique_ptr<LinkGraph> Copy(LinkGraph& graph, std::optional<llvm::StringRef> object_bytes) {
  const bool prepare = object_bytes.has_value();
#if !ORCJIT_COPY_LINK_GRAPHS
  (void)graph;
  (void)prepare;
  return nullptr;  // compat::parseGraph made no graph to copy
#else
  auto copy = std::make_unique<LinkGraph>(graph.getName(), graph.getSymbolStringPool(),
                                          graph.getTargetTriple(), graph.getFeatures(),
                                          llvm::jitlink::x86_64::getEdgeKindName);
  // Sized up front: the maps hold every symbol and block of the graph.
  size_t symbol_count = 0, block_count = 0;
  for (auto* symbol : graph.external_symbols()) symbol_count += symbol != nullptr;
  for (auto* symbol : graph.absolute_symbols()) symbol_count += symbol != nullptr;
  for (auto& section : graph.sections()) {
    symbol_count += section.symbols_size();
    block_count += section.blocks_size();
  }
  llvm::DenseMap<const Symbol*, Symbol*> symbols(symbol_count);
  llvm::DenseMap<const Block*, Block*> blocks(block_count);
  for (Symbol* symbol : graph.external_symbols()) {
    Symbol& external =
        copy->addExternalSymbol(symbol->getName(), symbol->getSize(), symbol->isWeaklyReferenced());
    external.setLinkage(symbol->getLinkage());
    symbols[symbol] = &external;
  }
  for (Symbol* symbol : graph.absolute_symbols()) {
    symbols[symbol] =
        &copy->addAbsoluteSymbol(symbol->getName(), symbol->getAddress(), symbol->getSize(),
                                 symbol->getLinkage(), symbol->getScope(), symbol->isLive());
  }
  for (auto& section : graph.sections()) {
    llvm::StringRef name = section.getName();
    if (prepare && section.empty() && !MayBeNamed(name)) continue;
    if (prepare) {
      auto owned = copy->allocateContent(
          llvm::Twine(name == kEHFrame ? llvm::StringRef(kPreparedEHFrame) : name));
      name = llvm::StringRef(owned.data(), owned.size());
    }
    auto& section_copy = copy->createSection(name, section.getMemProt());
    section_copy.setOrdinal(section.getOrdinal());
    section_copy.setMemLifetime(section.getMemLifetime());
    for (Block* block : section.blocks()) {
      if (block->isZeroFill()) {
        blocks[block] =
            &copy->createZeroFillBlock(section_copy, block->getSize(), block->getAddress(),
                                       block->getAlignment(), block->getAlignmentOffset());
        continue;
      }
      llvm::ArrayRef<char> content = block->getContent();
      if (prepare && !Within(content, *object_bytes)) content = copy->allocateContent(content);
      blocks[block] = &copy->createContentBlock(section_copy, content, block->getAddress(),
                                                block->getAlignment(), block->getAlignmentOffset());
    }
    for (Symbol* symbol : section.symbols()) {
      Block& block_copy = *blocks[&symbol->getBlock()];
      symbols[symbol] =
          symbol->hasName()
              ? &copy->addDefinedSymbol(block_copy, symbol->getOffset(), symbol->getName(),
                                        symbol->getSize(), symbol->getLinkage(), symbol->getScope(),
                                        symbol->isCallable(), symbol->isLive())
              : &copy->addAnonymousSymbol(block_copy, symbol->getOffset(), symbol->getSize(),
                                          symbol->isCallable(), symbol->isLive());
    }
  }
  for (auto& [block, block_copy] : blocks) {
    for (const auto& edge : block->edges()) {
      block_copy->addEdge(edge.getKind(), edge.getOffset(), *symbols[&edge.getTarget()],
                          edge.getAddend());
    }
  }
  return copy;
#endif
}

/// Gives a prepared graph's .eh_frame its name back.
llvm::Error RestoreEHFrame(LinkGraph& graph) {
#if ORCJIT_COPY_LINK_GRAPHS
  auto* prepared = graph.findSectionByName(kPreparedEHFrame);
  if (prepared == nullptr) return llvm::Error::success();
  auto& section = graph.createSection(kEHFrame, prepared->getMemProt());
  section.setOrdinal(prepared->getOrdinal());
  section.setMemLifetime(prepared->getMemLifetime());
  graph.mergeSections(section, *prepared);
#else
  (void)graph;  // only copies are prepared
#endif
  return llvm::Error::success();
}

}  // namespace

std::unique_ptr<LinkGraph> CopyGraph(LinkGraph& graph) { return Copy(graph, std::nullopt); }

std::shared_ptr<LinkGraph> PreparedGraphs::Find(const Key& key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = graphs_.find(key);
  return it == graphs_.end() ? nullptr : it->second;
}

void PreparedGraphs::Insert(Key key, std::shared_ptr<LinkGraph> graph) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (graphs_.size() < kMaxGraphs) graphs_.try_emplace(std::move(key), std::move(graph));
}

void GraphPreparationPlugin::Expect(const llvm::orc::JITDylib* dylib, const LinkGraph* graph,
                                    std::shared_ptr<PreparedGraphs> store,
                                    PreparedGraphs::Key key) {
  std::lock_guard<std::mutex> lock(mutex_);
  expected_[graph] = Expected{dylib, std::move(store), std::move(key)};
}

void GraphPreparationPlugin::Forget(const llvm::orc::JITDylib* dylib) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = expected_.begin(); it != expected_.end();) {
    it = it->second.dylib == dylib ? expected_.erase(it) : std::next(it);
  }
}

void GraphPreparationPlugin::modifyPassConfig(llvm::orc::MaterializationResponsibility&,
                                              LinkGraph& g,
                                              llvm::jitlink::PassConfiguration& config) {
  // Before the pre-prune passes of the plugins after this one, which may look for .eh_frame.
  if (g.findSectionByName(kPreparedEHFrame) != nullptr) {
    config.PrePrunePasses.push_back(RestoreEHFrame);
    return;
  }
  std::optional<Expected> expected;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = expected_.find(&g);
    if (it == expected_.end()) return;
    expected = std::move(it->second);
    expected_.erase(it);
  }
  config.PostPrunePasses.push_back([expected = std::move(*expected)](LinkGraph& graph) {
    expected.store->Insert(expected.key, Copy(graph, expected.store->object_bytes()));
    return llvm::Error::success();
  });
}

}  // namespace orcjit
