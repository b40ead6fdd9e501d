"""Kernel objects compiled for coverage, each carrying its own copy of clang's profile runtime.

With ``--orcjit-coverage`` every C/C++ kernel is compiled with clang's
source-based coverage (``-fprofile-instr-generate -fcoverage-mapping``) and
then, before it enters the object cache, relinked (``clang -r``) with a
prelinked piece of compiler-rt's ``libclang_rt.profile`` and a small C helper
(:data:`HELPER_SOURCE`); every global symbol but the kernel's own is then made
local (``llvm-objcopy --keep-global-symbols``); its coverage mapping moves to a
file of its own in the cache, named after the object's content, which is what
llvm-cov reads. So each object has its own
runtime, counters and writer, whatever library it is loaded into, and two such
objects in one library do not clash. The native core keeps the profile
sections alive and JITLink defines their ``__start_``/``__stop_`` symbols per
object (csrc/section_bounds.h).

The helper claims a number N (a file ``$PYTEST_ORCJIT_COVERAGE_FILE.<N>.claim``,
made exclusively and never removed) and marks it ``<N>.open`` when the
object's static constructors run; from its static destructor (when the library
closes, in a forked child too) it writes ``<N>.profraw`` next to them and
removes the mark. A mark left behind is a test whose counters were lost.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .compiler import Builder, Unit
from .toolchain import Compiler

FLAGS = ("-fprofile-instr-generate", "-fcoverage-mapping")
ENV_FILE = "PYTEST_ORCJIT_COVERAGE_FILE"
ARCHIVE = "libclang_rt.profile-x86_64.a"
MAPPING_SECTIONS = ("__llvm_covfun", "__llvm_covmap")
PROFILE_PREFIXES = ("__profc_", "__profd_", "__profbm_", "__profvp_", "__llvm_prf_")
"""Symbols of an instrumented object's profile sections, made local in each object."""

MSG_NOT_CLANG = (
    "orcjit: --orcjit-coverage needs clang (source-based coverage), but the {kind} compiler "
    "{command} is {family}; gcc's gcov is not supported: choose clang with --orcjit-cxx=clang++-NN "
    "(or $CXX/$CC)"
)
MSG_NO_RUNTIME = (
    "orcjit: --orcjit-coverage: {command} has no profile runtime ({archive} not found); install "
    "compiler-rt for clang {major} (Debian/Ubuntu: apt install libclang-rt-{major}-dev)"
)
MSG_NO_TOOL = (
    "orcjit: --orcjit-coverage: cannot find {tool} of LLVM {major} (the compiler's): tried "
    "{tried}; install it (Debian/Ubuntu: apt install llvm-{major})"
)
MSG_TOOL_FAILED = "orcjit: coverage: {command} failed ({code}): {output}"

HELPER_SOURCE = r"""
#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Defined here, so that the runtime's constructor (which registers an atexit writer) is left
   out: the destructor below writes instead, when the library closes. */
int __llvm_profile_runtime;
int __llvm_profile_write_file(void);
void __llvm_profile_set_filename(const char *);
/* An ELF header without program headers: the runtime writes no binary IDs. With both defined
   here, nothing of the runtime is looked up in the process but libc's functions. */
__attribute__((visibility("hidden"))) const Elf64_Ehdr __ehdr_start = {{0}};
__attribute__((visibility("hidden"))) Elf64_Dyn _DYNAMIC[1];

static char claimed[4096];

__attribute__((constructor)) static void orcjit_coverage_claim(void) {
  const char *base = getenv("PYTEST_ORCJIT_COVERAGE_FILE");
  if (base == NULL) return;
  /* <base>.<N>.claim, never removed, makes N this library's for the whole run. */
  for (int i = 0; i < 1000000; ++i) {
    if (snprintf(claimed, sizeof claimed, "%s.%d.claim", base, i) >= (int)sizeof claimed) break;
    int fd = open(claimed, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) continue;
    close(fd);
    snprintf(claimed, sizeof claimed, "%s.%d.open", base, i);
    fd = open(claimed, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd >= 0) {
      close(fd);
      return;
    }
    break;
  }
  claimed[0] = 0;
}

__attribute__((destructor)) static void orcjit_coverage_write(void) {
  if (claimed[0] == 0) return;
  char path[4096 + 8];
  size_t stem = strlen(claimed) - strlen(".open");
  memcpy(path, claimed, stem);
  strcpy(path + stem, ".profraw");
  __llvm_profile_set_filename(path);
  if (__llvm_profile_write_file() == 0) unlink(claimed);
  claimed[0] = 0;
}
"""


@dataclass(frozen=True)
class Tools:
    """The compiler's LLVM tools that coverage needs."""

    major: str
    profdata: str
    cov: str
    nm: str
    objcopy: str


def clang_major(compiler: Compiler, kind: str) -> str:
    """The clang major version of ``compiler``; ValueError naming another family."""
    found = re.search(r"clang version (\d+)", compiler.identity)
    if found is None:
        family = "gcc" if re.search(r"\bg(cc|\+\+)\b|GCC", compiler.identity) else "not clang"
        raise ValueError(MSG_NOT_CLANG.format(kind=kind, command=compiler.driver[0], family=family))
    return found.group(1)


def find_tools(compiler: Compiler, major: str) -> Tools:
    """llvm-profdata, llvm-cov, llvm-nm and llvm-objcopy of the compiler's LLVM; ValueError."""
    driver = shutil.which(compiler.driver[0]) or compiler.driver[0]
    beside = Path(os.path.realpath(driver)).parent

    def find(tool: str) -> str:
        tried = [f"{tool}-{major}", str(beside / tool)]
        for candidate in tried:
            path = shutil.which(candidate)
            if path:
                return path
        raise ValueError(MSG_NO_TOOL.format(tool=tool, major=major, tried=", ".join(tried)))

    return Tools(
        major, find("llvm-profdata"), find("llvm-cov"), find("llvm-nm"), find("llvm-objcopy")
    )


def run_tool(argv: list[str]) -> str:
    """Run a tool and return its stdout; RuntimeError with its output if it fails."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()[-2000:]
        command = " ".join(argv[:3]) + " ..."
        raise RuntimeError(
            MSG_TOOL_FAILED.format(command=command, code=done.returncode, output=output)
        )
    return done.stdout


class Instrumenter:
    """Makes a Builder compile for coverage and link the profile runtime into each object."""

    def __init__(self, builder: Builder) -> None:
        """Raise ValueError if the compilers are not clang or lack the runtime or tools."""
        major = clang_major(builder.cxx, "C++")
        clang_major(builder.cc, "C")
        self.driver = list(builder.cxx.driver)
        printed = run_tool([*self.driver, f"-print-file-name={ARCHIVE}"]).strip()
        if not os.path.isabs(printed) or not os.path.isfile(printed):
            raise ValueError(
                MSG_NO_RUNTIME.format(command=self.driver[0], archive=ARCHIVE, major=major)
            )
        self.archive = Path(printed)
        self.tools = find_tools(builder.cxx, major)
        stamp = self.archive.stat()
        self.key = hashlib.sha256(
            "\0".join(
                [
                    HELPER_SOURCE,
                    builder.cxx.identity,
                    str(self.archive),
                    str(stamp.st_size),
                    str(stamp.st_mtime_ns),
                ]
            ).encode()
        ).hexdigest()[:20]
        self.cache = builder.cache.root
        self.runtime = self.cache / f"coverage-runtime-{self.key}.o"
        builder.base += FLAGS
        builder.post_compile = self.link_runtime
        builder.post_compile_key = f"coverage-runtime-{self.key}-mapping-apart"

    def _prelinked_runtime(self) -> Path:
        """The helper linked with the archive members it needs, made once per cache."""
        if self.runtime.is_file():
            return self.runtime
        with tempfile.TemporaryDirectory(dir=self.runtime.parent) as tmp:
            helper = Path(tmp) / "helper.o"
            source = Path(tmp) / "orcjit_coverage_helper.c"
            source.write_text(HELPER_SOURCE)
            run_tool(
                [*self.driver, "-x", "c", "-O1", "-fPIC", "-c", str(source), "-o", str(helper)]
            )
            linked = Path(tmp) / "runtime.o"
            run_tool(
                [*self.driver, "-r", "-nostdlib", str(helper), str(self.archive), "-o", str(linked)]
            )
            os.replace(linked, self.runtime)
        return self.runtime

    def link_runtime(self, unit: Unit, output: Path) -> None:
        """Relink the object at ``output`` with the runtime, keeping only its own globals."""
        runtime = self._prelinked_runtime()
        listed = run_tool(
            [self.tools.nm, "--defined-only", "--extern-only", "--format=just-symbols", str(output)]
        )
        # The profile variables of inline functions are weak: kept global, a library would take
        # them from the first of its objects that defines them, and the others' records would
        # point at another object's counters. Local, each object counts its own.
        own = [
            name for name in listed.splitlines() if name and not name.startswith(PROFILE_PREFIXES)
        ]
        keep = Path(f"{output}.keep")
        linked = Path(f"{output}.cov.o")
        try:
            keep.write_text("".join(f"{name}\n" for name in own))
            run_tool(
                [*self.driver, "-r", "-nostdlib", str(output), str(runtime), "-o", str(linked)]
            )
            run_tool(
                [self.tools.objcopy, f"--keep-global-symbols={keep}", str(linked), str(output)]
            )
            # The coverage mapping is for llvm-cov only: it goes into a file of its own, named
            # after the object's content, and out of the object the JIT links (a third less work).
            sections = [f"--only-section={name}" for name in MAPPING_SECTIONS[:2]]
            run_tool(
                [
                    self.tools.objcopy,
                    *sections,
                    "--only-section=__llvm_prf_names",
                    str(output),
                    str(linked),
                ]
            )
            removed = [f"--remove-section={name}" for name in MAPPING_SECTIONS[:2]]
            run_tool([self.tools.objcopy, *removed, str(output)])
            os.replace(linked, self.mapping_of(output))
        finally:
            keep.unlink(missing_ok=True)
            linked.unlink(missing_ok=True)

    def mapping_of(self, obj: Path) -> Path:
        """The coverage mapping of the object at ``obj`` (llvm-cov reads it, not the object)."""
        digest = hashlib.sha256(obj.read_bytes()).hexdigest()
        return self.cache / f"coverage-map-{digest}.o"
