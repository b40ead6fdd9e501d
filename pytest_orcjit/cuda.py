"""CUDA kernels: finding nvcc and the CUDA runtime, the architectures, and probing for a device.

A ``.cu`` source is compiled by nvcc into a host object (``-c -Xcompiler
-fPIC``) whose static constructors register its fatbin with the CUDA runtime;
a library that holds one needs ``libcudart`` visible, which
:func:`find_cudart` locates. Nothing in this module initialises CUDA in the
calling process except :func:`device_status`, which the plugin calls only in
the forked child of a test (or in-process under ``--orcjit-isolation=none``):
a child cannot use a CUDA context it inherited, so the pytest process and the
fork server never make a driver call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .toolchain import Compiler, CompilerNotFound

DEFAULT_ARCHS = ("75",)
"""Where no GPU is seen: the oldest architecture CUDA 13 compiles for. The fatbin
then holds sm_75 code and compute_75 PTX, which the driver compiles for newer GPUs."""

NVCC_ORIGINS = "--orcjit-nvcc, ini orcjit_nvcc, $CUDA_HOME/bin/nvcc, nvcc on PATH, nvidia-cuda-nvcc"
MSG_NO_NVCC = (
    "nvcc was not found (looked at {origins}); install the CUDA toolkit or choose nvcc with "
    "--orcjit-nvcc (ini orcjit_nvcc)"
)
MSG_NO_CUDART = (
    "the CUDA runtime libcudart.so was not found (looked in $CUDA_HOME/lib64, the "
    "nvidia-cuda-runtime package and the loader's paths); install the CUDA toolkit or "
    "nvidia-cuda-runtime, or set CUDA_HOME"
)
MSG_NO_DEVICE = "no CUDA device ({reason})"


def find_nvcc(explicit: str | None = None) -> str | None:
    """nvcc: ``explicit``, else ``$CUDA_HOME/bin/nvcc``, else on PATH, else the PyPI package's."""
    if explicit:
        return explicit
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    candidates = [os.path.join(home, "bin", "nvcc")] if home else []
    on_path = shutil.which("nvcc")
    if on_path:
        candidates.append(on_path)
    candidates += _in_nvidia_packages("bin/nvcc")
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def find_cudart() -> Path | None:
    """The CUDA runtime shared library, or None where there is none."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    candidates: list[str] = []
    if home:
        candidates += sorted(glob.glob(os.path.join(home, "lib64", "libcudart.so*")))
    nvcc = find_nvcc()
    if nvcc:  # the toolkit that compiles the kernels: its runtime matches them
        toolkit = Path(os.path.realpath(nvcc)).parent.parent
        candidates += sorted(glob.glob(str(toolkit / "lib64" / "libcudart.so*")))
        candidates += sorted(glob.glob(str(toolkit / "lib" / "libcudart.so*")))
    candidates += _in_nvidia_packages("lib/libcudart.so*")
    for candidate in candidates:
        if os.path.isfile(candidate):
            return Path(candidate)
    found = ctypes.util.find_library("cudart")
    return Path(found) if found else None


def runtime_library() -> str:
    """The CUDA runtime to load for a library of CUDA objects: its path, else ``"cudart"``."""
    found = find_cudart()
    return str(found) if found is not None else "cudart"


def parse_archs(value: str | Sequence[str]) -> tuple[str, ...]:
    """``"80;90"``, ``"80,90"``, ``"sm_90"`` or a list -> ``("80", "90")``; ValueError if bad."""
    words = value.replace(",", ";").split(";") if isinstance(value, str) else list(value)
    archs = []
    for word in words:
        arch = str(word).strip().removeprefix("sm_").removeprefix("compute_")
        if not arch:
            continue
        if not (arch.isdigit() or (arch[:-1].isdigit() and arch[-1] in "af")):
            raise ValueError(f"{word!r} is not a CUDA architecture (e.g. 90, 90a or sm_80)")
        archs.append(arch)
    if not archs:
        raise ValueError("no CUDA architecture given (e.g. 90 or '80;90')")
    return tuple(dict.fromkeys(archs))


def gpu_archs() -> tuple[str, ...]:
    """The architectures of this machine's GPUs, asked of nvidia-smi (no driver call here)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        done = subprocess.run(
            [smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if done.returncode != 0:
        return ()
    caps = [line.strip().replace(".", "") for line in done.stdout.splitlines()]
    return tuple(dict.fromkeys(cap for cap in caps if cap.isdigit()))


def gencode_flags(archs: Sequence[str]) -> list[str]:
    """One ``-gencode`` per architecture: its machine code, and PTX for the newest."""
    flags = []
    for arch in archs:
        flags += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    newest = archs[-1]
    flags += ["-gencode", f"arch=compute_{newest},code=compute_{newest}"]
    return flags


def device_status(device: int = 0) -> tuple[bool, str]:
    """Whether CUDA device ``device`` can be used, and what the runtime said if not.

    This initialises CUDA in the calling process: call it only where a CUDA
    context may live (a forked test's child).
    """
    cudart = find_cudart()
    if cudart is None:
        return False, MSG_NO_CUDART
    try:
        runtime = ctypes.CDLL(str(cudart))
    except OSError as err:
        return False, f"cannot load {cudart}: {err}"
    runtime.cudaGetErrorString.restype = ctypes.c_char_p
    count = ctypes.c_int(0)
    status = runtime.cudaGetDeviceCount(ctypes.byref(count))
    if status != 0:
        message = runtime.cudaGetErrorString(status).decode(errors="replace")
        return False, f"cudaGetDeviceCount: {message} (error {status})"
    if device >= count.value:
        return False, f"device {device} asked for, {count.value} present"
    return True, ""


class CudaToolchain:
    """nvcc, probed on first use (a run without ``.cu`` sources never looks for it).

    ``nvcc`` is the command (None: :func:`pytest_orcjit.find_nvcc`),
    ``archs`` the architectures (None: the GPU's own, else the default of
    :mod:`pytest_orcjit.cuda`), ``extra`` flags for every ``.cu`` compile.
    """

    def __init__(
        self,
        nvcc: str | None = None,
        archs: Sequence[str] | None = None,
        extra: Sequence[str] = (),
        state_dir: Path | None = None,
        launcher: Sequence[str] = (),
    ) -> None:
        self._nvcc, self._archs, self.extra = nvcc, tuple(archs or ()), tuple(extra)
        self._state_dir, self._launcher = state_dir, tuple(launcher)
        self._compiler: Compiler | None = None
        self._error: CompilerNotFound | None = None

    def compiler(self) -> Compiler:
        """The probed nvcc; raises CompilerNotFound, with a message naming the option."""
        if self._compiler is None and self._error is None:
            command = find_nvcc(self._nvcc)
            try:
                if command is None:
                    raise CompilerNotFound(MSG_NO_NVCC.format(origins=NVCC_ORIGINS))
                self._compiler = Compiler.probe(command, self._state_dir, self._launcher)
            except CompilerNotFound as err:
                self._error = CompilerNotFound(
                    f"{err}; choose nvcc with --orcjit-nvcc (ini orcjit_nvcc)"
                    if "--orcjit-nvcc" not in str(err) else str(err)
                )  # fmt: skip
        if self._error is not None:
            raise self._error
        assert self._compiler is not None
        return self._compiler

    def archs(self) -> tuple[str, ...]:
        """The architectures compiled for."""
        if not self._archs:
            self._archs = gpu_archs() or DEFAULT_ARCHS
        return self._archs

    def flags(self) -> list[str]:
        """The architecture flags and the extra flags."""
        return [*gencode_flags(self.archs()), *self.extra]


def _in_nvidia_packages(pattern: str) -> list[str]:
    """Files matching ``pattern`` under the ``nvidia`` wheels (nvidia/*/ and nvidia/cu*/)."""
    found = []
    for folder in sys.path:
        base = os.path.join(folder or ".", "nvidia")
        if os.path.isdir(base):
            found += sorted(glob.glob(os.path.join(base, "*", pattern)))
    return found
