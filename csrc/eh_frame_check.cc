// Validation of .eh_frame records: the record chain and the CIE fields JITLink interprets. See
// eh_frame_check.h.
#include "eh_frame_check.h"

#include <llvm/ADT/StringRef.h>
#include <llvm/Support/Endian.h>

#include <algorithm>
#include <string>
#include <vector>

namespace orcjit {
namespace {

using llvm::Error;
using llvm::StringRef;
using llvm::Twine;

/// True if [`offset`, `offset` + `size`) lies inside [0, `limit`), without overflow.
bool Fits(uint64_t offset, uint64_t size, uint64_t limit) {
  return offset <= limit && size <= limit - offset;
}

class EhFrameChecker {
 public:
  using RecordError = llvm::function_ref<Error(uint64_t start, const Twine& what)>;
  EhFrameChecker(const uint8_t* data, uint64_t size, RecordError record_error)
      : data_(data), size_(size), record_error_(record_error) {}

  /// .eh_frame is a chain of CIE and FDE records, each led by its length. JITLink splits the
  /// section along these lengths and follows each FDE's pointer back to its CIE, so the chain
  /// must end exactly at the end of the section and every FDE must point at an earlier CIE.
  Error Run() const {
    std::vector<uint64_t> cies;
    uint64_t offset = 0;
    while (offset < size_) {
      uint64_t start = offset;
      if (!Fits(offset, 4, size_))
        return record_error_(start, "has a length field cut off by the end of the section");
      uint64_t length = Read32(offset);
      offset += 4;
      if (length == 0xffffffff) {
        if (!Fits(offset, 8, size_))
          return record_error_(start,
                               "has a 64-bit length field cut off by the end of the section");
        length = Read64(offset);
        offset += 8;
      }
      if (length == 0) continue;  // A terminator.
      if (!Fits(offset, length, size_))
        return record_error_(start, "has length " + Twine(length) +
                                        ", which extends past the end of "
                                        "the section (" +
                                        Twine(size_) + " bytes)");
      if (length < 4) return record_error_(start, "is too short to hold a CIE pointer");
      uint64_t cie_pointer = Read32(offset);
      if (cie_pointer == 0) {
        if (Error err = CheckCie(start, offset + 4, offset + length)) return err;
        cies.push_back(start);
      } else {
        // The pointer counts back from its own position to the start of the CIE.
        bool found = cie_pointer <= offset &&
                     std::binary_search(cies.begin(), cies.end(), offset - cie_pointer);
        if (!found)
          return record_error_(start, "points at offset " + Twine(offset - cie_pointer) +
                                          ", where no earlier CIE record starts");
      }
      offset += length;
    }
    return Error::success();
  }

  /// The fields of a CIE that JITLink's EHFrameEdgeFixer interprets: it keeps at most three
  /// augmentation fields in a fixed array, and stops the process (llvm_unreachable) on a pointer
  /// encoding whose size it does not know. [`pos`, `end`) are the offsets of the CIE after its ID.
  Error CheckCie(uint64_t start, uint64_t pos, uint64_t end) const {
    auto bad = [&](const Twine& what) { return record_error_(start, "(a CIE) " + what); };
    if (pos >= end || Read8(pos) != 1) return bad("does not have version 1");
    ++pos;
    std::string augmentation;
    while (true) {
      if (pos >= end) return bad("has an augmentation string without a terminating NUL");
      char c = static_cast<char>(Read8(pos++));
      if (c == 0) break;
      if (augmentation.size() == 8)
        return bad("has an augmentation string longer than 8 characters");
      augmentation.push_back(c);
    }
    StringRef aug(augmentation);
    for (size_t i = 0; i < aug.size(); ++i) {
      char c = aug[i];
      bool known = c == 'z' || c == 'L' || c == 'P' || c == 'R' ||
                   (c == 'e' && aug.substr(i).starts_with("eh"));
      if (!known || aug.count(c) > 1)
        return bad("has augmentation string '" + aug + "', which JITLink does not read");
      if (c == 'e') ++i;
    }
    if (aug.contains("eh") && !Skip(pos, end, 8)) return bad("is cut off in its EH data field");
    uint64_t unused = 0;
    if (!ReadLeb(pos, end, unused) || !ReadLeb(pos, end, unused) || !Skip(pos, end, 1))
      return bad("is cut off in its alignment factors or return address register");
    if (!aug.starts_with("z")) return Error::success();
    uint64_t aug_length = 0;
    if (!ReadLeb(pos, end, aug_length) || !Fits(pos, aug_length, end))
      return bad("has augmentation data that extends past its end");
    uint64_t aug_end = pos + aug_length;
    for (char c : aug) {
      if (c != 'L' && c != 'P' && c != 'R') continue;
      if (pos >= aug_end)
        return bad("has augmentation data shorter than its augmentation string needs");
      uint8_t encoding = Read8(pos++);
      unsigned size = PointerEncodingSize(encoding);
      if (size == 0)
        return bad("uses pointer encoding " + Twine(unsigned(encoding)) +
                   ", which JITLink does not support");
      if (c == 'P' && !Skip(pos, aug_end, size))
        return bad("has a personality pointer cut off by the end of its augmentation data");
    }
    return Error::success();
  }

  /// Bytes of a pointer in DWARF EH encoding `encoding` as JITLink reads it (absolute or
  /// PC-relative, optionally indirect, 4 or 8 bytes), or 0 if JITLink cannot read it.
  static unsigned PointerEncodingSize(uint8_t encoding) {
    if ((encoding & 0x70) != 0x00 && (encoding & 0x70) != 0x10)  // absptr, pcrel
      return 0;
    switch (encoding & 0x0f) {
      case 0x00:  // absptr
      case 0x04:  // udata8
      case 0x0c:  // sdata8
        return 8;
      case 0x03:  // udata4
      case 0x0b:  // sdata4
        return 4;
      default:
        return 0;
    }
  }

  /// Advances `pos` by `n` bytes if they lie before `end`.
  static bool Skip(uint64_t& pos, uint64_t end, uint64_t n) {
    if (!Fits(pos, n, end)) return false;
    pos += n;
    return true;
  }

  /// Reads an (S|U)LEB128 of at most 10 bytes before `end`; the value is only used unsigned.
  bool ReadLeb(uint64_t& pos, uint64_t end, uint64_t& value) const {
    value = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
      if (pos >= end) return false;
      uint8_t byte = Read8(pos++);
      if (shift < 64) value |= uint64_t(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return true;
    }
    return false;
  }

 private:
  // Readers. Callers have checked that the bytes lie inside the section.
  uint8_t Read8(uint64_t offset) const { return data_[offset]; }
  uint32_t Read32(uint64_t offset) const { return llvm::support::endian::read32le(data_ + offset); }
  uint64_t Read64(uint64_t offset) const { return llvm::support::endian::read64le(data_ + offset); }

  const uint8_t* data_;
  uint64_t size_;
  RecordError record_error_;
};

}  // namespace

Error CheckEhFrameRecords(
    const uint8_t* contents, uint64_t size,
    llvm::function_ref<Error(uint64_t start, const Twine& what)> record_error) {
  return EhFrameChecker(contents, size, record_error).Run();
}

}  // namespace orcjit
