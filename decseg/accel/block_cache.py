"""decseg's CPU block cache (``train.cpu_memory=cache``): build, install and read it.

The allocator itself is ``block_cache.cpp`` next to this file (why it exists is written there). It
is compiled on first use with the system's C++ compiler against the installed torch's headers
(about 2 s; no Python headers needed) into ``$DECSEG_BUILD_DIR`` or ``~/.cache/decseg/build``,
keyed by the source, the torch version and the compiler, and loaded with ctypes. Where it cannot
be built (no compiler, not Linux), ``available()`` says why and the caller falls back to glibc.

Once installed it stays PyTorch's CPU allocator for the life of the process: tensors it handed
out must be freed by it.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("block_cache.cpp")
#: blocks from this size up are kept; smaller ones go to PyTorch's own malloc path
MIN_BYTES = 1 << 20
_COUNTERS = ("live", "cached", "high_water", "hits", "misses", "mapped", "unmapped")

_lib = None
_error: str | None = None


class CpuCacheUnavailable(RuntimeError):
    """The block cache cannot be built or loaded here; the message says why."""


def build_dir() -> Path:
    env = os.environ.get("DECSEG_BUILD_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "decseg" / "build"


def _compile_command(out: Path) -> list[str]:
    import torch

    cxx = os.environ.get("CXX", "c++")
    root = Path(torch.__file__).parent
    lib_dir = root / "lib"
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    # only c10's headers are used (torch.utils.cpp_extension would add Python's and CUDA's)
    return [cxx, "-O2", "-std=c++17", "-shared", "-fPIC", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
            f"-I{root / 'include'}", str(SOURCE), f"-L{lib_dir}", "-lc10",
            f"-Wl,-rpath,{lib_dir}", "-o", str(out)]


def library_path() -> Path:
    """Where the compiled library for this source, torch and compiler lives (built or not)."""
    import torch

    cmd = _compile_command(Path("out"))
    key = hashlib.sha256(SOURCE.read_bytes() + torch.__version__.encode()
                         + " ".join(cmd).encode()).hexdigest()[:16]
    return build_dir() / f"decseg_cpu_cache_{key}.so"


def build() -> Path:
    """Compile the library if it is not built yet; returns its path.

    Raises CpuCacheUnavailable with the reason (and the compiler's message) when it cannot.
    """
    if not sys.platform.startswith("linux"):
        raise CpuCacheUnavailable(f"the CPU block cache needs Linux (this is {sys.platform})")
    if not SOURCE.is_file():
        raise CpuCacheUnavailable(f"the CPU block cache's source {SOURCE} is missing from this "
                                  f"installation (reinstall decseg)")
    target = library_path()
    if target.exists():
        return target
    cmd = _compile_command(target)
    if shutil.which(cmd[0]) is None:
        raise CpuCacheUnavailable(f"no C++ compiler {cmd[0]!r} on PATH to build the CPU block cache "
                                  f"(install g++ or set CXX)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # build beside the target and rename: concurrent processes (torchrun) never load a torn file
        fd, tmp = tempfile.mkstemp(prefix=target.stem + ".", suffix=".tmp.so", dir=target.parent)
    except OSError as e:
        raise CpuCacheUnavailable(f"cannot write the CPU block cache's build directory "
                                  f"{target.parent} ({e.strerror}); set DECSEG_BUILD_DIR to a "
                                  f"writable directory") from e
    os.close(fd)
    try:
        cmd[-1] = tmp
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise CpuCacheUnavailable(f"building the CPU block cache failed: {e}") from e
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip()[-1500:]
            raise CpuCacheUnavailable(f"building the CPU block cache failed ({cmd[0]} exited "
                                      f"{proc.returncode}):\n{tail}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _load():
    global _lib, _error
    if _lib is not None or _error is not None:
        return _lib
    try:
        lib = ctypes.CDLL(str(build()))
    except CpuCacheUnavailable as e:
        _error = str(e)
        return None
    except OSError as e:
        _error = f"loading the CPU block cache failed: {e}"
        return None
    lib.decseg_cpu_cache_install.argtypes = [ctypes.c_uint64]
    lib.decseg_cpu_cache_install.restype = ctypes.c_int
    lib.decseg_cpu_cache_active.restype = ctypes.c_int
    lib.decseg_cpu_cache_counters.argtypes = [ctypes.POINTER(ctypes.c_uint64)]
    _lib = lib
    return lib


def available() -> tuple[bool, str]:
    """(True, "") if the cache can be installed here, else (False, why)."""
    lib = _load()
    return (lib is not None), (_error or "")


def install(min_bytes: int = MIN_BYTES) -> None:
    """Make the block cache PyTorch's CPU allocator (idempotent). Raises CpuCacheUnavailable."""
    lib = _load()
    if lib is None:
        raise CpuCacheUnavailable(_error)
    if not lib.decseg_cpu_cache_install(min_bytes):
        raise CpuCacheUnavailable("another CPU allocator of higher priority is installed")


def active() -> bool:
    """Whether the block cache is PyTorch's CPU allocator in this process."""
    return _lib is not None and bool(_lib.decseg_cpu_cache_active())


def empty() -> None:
    """Unmap every free block now (e.g. after validation, whose tensors differ from a step's)."""
    if _lib is not None:
        _lib.decseg_cpu_cache_empty()


def counters() -> dict[str, int]:
    """Byte and request counters since install (zeros if not loaded):

    live, cached and high_water bytes; hits and misses (requests of >= MIN_BYTES served from
    free blocks or by mapping fresh memory); mapped and unmapped bytes in total.
    """
    out = (ctypes.c_uint64 * len(_COUNTERS))()
    if _lib is not None:
        _lib.decseg_cpu_cache_counters(out)
    return dict(zip(_COUNTERS, (int(v) for v in out)))
