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

/// A copy in `copy`, on `block`, of `symbol`: named or anonymous, with its offset, size, linkage,
/// scope and flags.
Symbol& CopySymbol(LinkGraph& copy, Block& block, const Symbol& symbol) {
  if (!symbol.hasName()) {
    return copy.addAnonymousSymbol(block, symbol.getOffset(), symbol.getSize(), symbol.isCallable(),
                                   symbol.isLive());
  }
  return copy.addDefinedSymbol(block, symbol.getOffset(), symbol.getName(), symbol.getSize(),
                               symbol.getLinkage(), symbol.getScope(), symbol.isCallable(),
                               symbol.isLive());
}

/// Whether a link may look up the section `name` when it has no blocks: a section whose name is a
/// C identifier gets `__start_`/`__stop_` symbols, names starting with '$' are JITLink's (its
/// GOT) and ours, and `.debug_info` tells debug registration that the object has debug information
/// (debug_registration.h). Dead-stripping empties the sections of the inline functions that earlier
/// objects of the library define (at -O0, most of an object's thousand sections); a prepared copy
/// leaves those out, and every pass of every later link has that many fewer sections to walk.
bool MayBeNamed(llvm::StringRef name) {
  if (name.empty() || name.front() == '$' || name == ".debug_info") return true;
  return llvm::all_of(name, [](char c) { return llvm::isAlnum(c) || c == '_'; });
}

/// The section a prepared copy puts the blocks of section `name` into: the one section of its kind
/// for the per-function and per-variable sections of -ffunction-sections and -fdata-sections, and
/// of the inline functions and variables every C++ object defines (at -O0, most of its sections);
/// `name` itself for any other. Every pass of every later link walks the sections, so fewer of
/// them make each link cheaper; JITLink lays out blocks by memory protection, whatever their
/// section. Only objects without debug information are merged: debug registration finds each
/// section's address by its name (debug_registration.h).
llvm::StringRef MergedSectionName(llvm::StringRef name) {
  for (llvm::StringRef kind : {".text", ".rodata", ".data.rel.ro", ".data", ".bss"}) {
    if (name.size() > kind.size() + 1 && name.starts_with(kind) && name[kind.size()] == '.') {
      // .data.rel.ro.x is not a .data section
      if (kind == ".data" && name.starts_with(".data.rel.ro.")) continue;
      return kind;
    }
  }
  return name;
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
  const bool merge = prepare && graph.findSectionByName(".debug_info") == nullptr;
  for (auto& section : graph.sections()) {
    llvm::StringRef name = section.getName();
    if (prepare && section.empty() && !MayBeNamed(name)) continue;
    if (merge) name = MergedSectionName(name);
    auto* merged = merge ? copy->findSectionByName(name) : nullptr;
    if (merged != nullptr && (merged->getMemProt() != section.getMemProt() ||
                              merged->getMemLifetime() != section.getMemLifetime())) {
      name = section.getName();  // unlike the others of its kind: kept apart
      merged = nullptr;
    }
    if (prepare && merged == nullptr) {
      auto owned = copy->allocateContent(
          llvm::Twine(name == kEHFrame ? llvm::StringRef(kPreparedEHFrame) : name));
      name = llvm::StringRef(owned.data(), owned.size());
    }
    auto& section_copy =
        merged != nullptr ? *merged : copy->createSection(name, section.getMemProt());
    if (merged == nullptr) {
      section_copy.setOrdinal(section.getOrdinal());
      section_copy.setMemLifetime(section.getMemLifetime());
    }
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
      symbols[symbol] = &CopySymbol(*copy, block_copy, *symbol);
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

/// The default passes LLVM 22's ELF x86-64 link adds, as the first plugin finds them: before
/// pruning, three .eh_frame passes, ORC's mark-live pass and ORC's pass that claims weak
/// definitions; after pruning, the GOT and stub builder. Another LLVM may order them otherwise.
constexpr bool kKnownPassLayout = LLVM_VERSION_MAJOR == 22;
constexpr size_t kMarkLivePass = 3;
constexpr size_t kPrePrunePasses = 5;
constexpr size_t kPostPrunePasses = 1;

/// For a copy of a prepared graph: drops the default passes whose work was done when the graph
/// was prepared. Marking the symbols ORC is responsible for live: every symbol the prepared graph
/// kept is live (dead-stripping removed the others) and its copy is too. Building GOT entries and
/// stubs: the prepared graph has them, and its edges point to them. Both passes walk every symbol
/// or edge of the graph only to find nothing to do. Where the passes are not those this LLVM adds
/// (another target, another version), they are left as they are.
void DropPreparedPasses(const LinkGraph& graph, llvm::jitlink::PassConfiguration& config) {
  const llvm::Triple& triple = graph.getTargetTriple();
  if (!kKnownPassLayout || triple.getArch() != llvm::Triple::x86_64 || !triple.isOSBinFormatELF()) {
    return;
  }
  if (config.PrePrunePasses.size() != kPrePrunePasses ||
      config.PostPrunePasses.size() != kPostPrunePasses) {
    return;
  }
  config.PrePrunePasses.erase(config.PrePrunePasses.begin() + kMarkLivePass);
  config.PostPrunePasses.clear();
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

#if ORCJIT_COPY_LINK_GRAPHS
struct PreparedGraph::Plan {
  struct Section {
    llvm::jitlink::Section* section;
    uint32_t blocks_end, symbols_end;  // one past its last block and symbol
  };
  struct Block {
    const llvm::jitlink::Block* block;
    uint32_t edges_end;  // one past its last edge
  };
  struct Edge {
    llvm::jitlink::Edge::Kind kind;
    llvm::jitlink::Edge::OffsetT offset;
    uint32_t target;  // index in `symbols`
    llvm::jitlink::Edge::AddendT addend;
  };
  std::vector<Section> sections;
  std::vector<Block> blocks;
  /// External, then absolute, then defined symbols, section by section.
  std::vector<const Symbol*> symbols;
  /// For each symbol, the index in `blocks` of its block (defined symbols only).
  std::vector<uint32_t> symbol_blocks;
  uint32_t externals_end = 0, absolutes_end = 0;
  std::vector<Edge> edges;
};

PreparedGraph::PreparedGraph(std::unique_ptr<LinkGraph> graph)
    : graph_(std::move(graph)), plan_([this] {
        auto plan = std::make_unique<Plan>();
        llvm::DenseMap<const Symbol*, uint32_t> symbol_index;
        llvm::DenseMap<const Block*, uint32_t> block_index;
        auto add = [&](const Symbol* symbol) {
          symbol_index[symbol] = uint32_t(plan->symbols.size());
          plan->symbols.push_back(symbol);
          plan->symbol_blocks.push_back(symbol->isDefined() ? block_index.at(&symbol->getBlock())
                                                            : 0);
        };
        for (Symbol* symbol : graph_->external_symbols()) add(symbol);
        plan->externals_end = uint32_t(plan->symbols.size());
        for (Symbol* symbol : graph_->absolute_symbols()) add(symbol);
        plan->absolutes_end = uint32_t(plan->symbols.size());
        for (auto& section : graph_->sections()) {
          for (Block* block : section.blocks()) {
            block_index[block] = uint32_t(plan->blocks.size());
            plan->blocks.push_back({block, 0});
          }
          for (Symbol* symbol : section.symbols()) add(symbol);
          plan->sections.push_back(
              {&section, uint32_t(plan->blocks.size()), uint32_t(plan->symbols.size())});
        }
        for (auto& block : plan->blocks) {
          for (const auto& edge : block.block->edges()) {
            plan->edges.push_back({edge.getKind(), edge.getOffset(),
                                   symbol_index.at(&edge.getTarget()), edge.getAddend()});
          }
          block.edges_end = uint32_t(plan->edges.size());
        }
        return plan;
      }()) {}

std::unique_ptr<LinkGraph> PreparedGraph::Copy() const {
  const Plan& plan = *plan_;
  auto copy = std::make_unique<LinkGraph>(graph_->getName(), graph_->getSymbolStringPool(),
                                          graph_->getTargetTriple(), graph_->getFeatures(),
                                          llvm::jitlink::x86_64::getEdgeKindName);
  std::vector<Symbol*> symbols(plan.symbols.size());
  std::vector<Block*> blocks(plan.blocks.size());
  uint32_t s = 0, b = 0;
  for (; s < plan.externals_end; ++s) {
    const Symbol* symbol = plan.symbols[s];
    symbols[s] = &copy->addExternalSymbol(symbol->getName(), symbol->getSize(),
                                          symbol->isWeaklyReferenced());
    symbols[s]->setLinkage(symbol->getLinkage());
  }
  for (; s < plan.absolutes_end; ++s) {
    const Symbol* symbol = plan.symbols[s];
    symbols[s] =
        &copy->addAbsoluteSymbol(symbol->getName(), symbol->getAddress(), symbol->getSize(),
                                 symbol->getLinkage(), symbol->getScope(), symbol->isLive());
  }
  for (const Plan::Section& planned : plan.sections) {
    const llvm::jitlink::Section& section = *planned.section;
    auto& section_copy = copy->createSection(section.getName(), section.getMemProt());
    section_copy.setOrdinal(section.getOrdinal());
    section_copy.setMemLifetime(section.getMemLifetime());
    for (; b < planned.blocks_end; ++b) {
      const Block* block = plan.blocks[b].block;
      blocks[b] =
          block->isZeroFill()
              ? &copy->createZeroFillBlock(section_copy, block->getSize(), block->getAddress(),
                                           block->getAlignment(), block->getAlignmentOffset())
              : &copy->createContentBlock(section_copy, block->getContent(), block->getAddress(),
                                          block->getAlignment(), block->getAlignmentOffset());
    }
    for (; s < planned.symbols_end; ++s) {
      const Symbol* symbol = plan.symbols[s];
      Block& block_copy = *blocks[plan.symbol_blocks[s]];
      symbols[s] = &CopySymbol(*copy, block_copy, *symbol);
    }
  }
  uint32_t e = 0;
  for (b = 0; b < plan.blocks.size(); ++b) {
    for (; e < plan.blocks[b].edges_end; ++e) {
      const Plan::Edge& edge = plan.edges[e];
      blocks[b]->addEdge(edge.kind, edge.offset, *symbols[edge.target], edge.addend);
    }
  }
  return copy;
}
#else
struct PreparedGraph::Plan {};
PreparedGraph::PreparedGraph(std::unique_ptr<LinkGraph> graph) : graph_(std::move(graph)) {}
std::unique_ptr<LinkGraph> PreparedGraph::Copy() const { return nullptr; }  // never prepared
#endif

PreparedGraph::~PreparedGraph() = default;

std::shared_ptr<const PreparedGraph> PreparedGraphs::Find(const Key& key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = graphs_.find(key);
  return it == graphs_.end() ? nullptr : it->second;
}

void PreparedGraphs::Insert(Key key, std::shared_ptr<const PreparedGraph> graph) {
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
    DropPreparedPasses(g, config);
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
    expected.store->Insert(expected.key, std::make_shared<const PreparedGraph>(
                                             Copy(graph, expected.store->object_bytes())));
    return llvm::Error::success();
  });
}

}  // namespace orcjit
