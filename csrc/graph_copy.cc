// Copies of link graphs; see graph_copy.h.
#include "graph_copy.h"

#include <llvm/ADT/DenseMap.h>
#include <llvm/ExecutionEngine/JITLink/x86_64.h>

#include "compat.h"

namespace orcjit {

using llvm::jitlink::Block;
using llvm::jitlink::LinkGraph;
using llvm::jitlink::Symbol;

std::unique_ptr<LinkGraph> CopyGraph(LinkGraph& graph) {
#if !ORCJIT_COPY_LINK_GRAPHS
  (void)graph;
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
    auto& section_copy = copy->createSection(section.getName(), section.getMemProt());
    section_copy.setOrdinal(section.getOrdinal());
    section_copy.setMemLifetime(section.getMemLifetime());
    for (Block* block : section.blocks()) {
      Block& block_copy =
          block->isZeroFill()
              ? copy->createZeroFillBlock(section_copy, block->getSize(), block->getAddress(),
                                          block->getAlignment(), block->getAlignmentOffset())
              : copy->createContentBlock(section_copy, block->getContent(), block->getAddress(),
                                         block->getAlignment(), block->getAlignmentOffset());
      blocks[block] = &block_copy;
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

}  // namespace orcjit
