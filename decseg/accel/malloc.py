"""What happens to the large blocks that a training step frees (CPU runs).

Why by hand: PyTorch's CPU allocator is plain malloc/free (its caching allocator is CUDA-only),
and a training step frees and re-allocates gigabytes of activations, gradients and weight casts
every iteration. What happens to those blocks decides both the resident memory and the time
spent in page faults. Modes (``train.cpu_memory``):

- ``cache``: decseg's own CPU allocator for blocks of 1 MiB and more (``block_cache.cpp``): freed
  blocks are kept and reused (best fit, split and merged), but never beyond the high-water mark
  of memory in use, so the resident set peaks as with ``return`` and most page faults go (the
  paper model in bf16: ~4 M -> ~0.3 M faults per step at the same 6.4 GiB peak). It is compiled
  on first use; without a C++ compiler ``auto`` falls back to the glibc modes below.
- ``return``: blocks of 1 MiB and more are mapped per allocation and unmapped when freed, so the
  resident set follows the memory in use; every re-allocation page-faults fresh zeroed pages
  (the paper model in bf16: ~4 M faults, ~9 s of kernel time per step on 2 cores).
- ``reuse``: nothing is mapped per allocation and the heap is never trimmed, so freed blocks
  stay with the process and the next step's same-sized tensors reuse them without a fault;
  the resident set is the step's high-water mark plus fragmentation.
- ``system``: glibc's defaults (a sliding 128 KiB..32 MiB threshold), in between.

The glibc settings (``mallopt``) are process-wide (forked data-loader workers inherit them) and
stay until another mode is applied: ``system`` does not undo an earlier one. The block cache,
once installed, stays the process's CPU allocator (its tensors must come back to it).
"""
from __future__ import annotations

import ctypes
import ctypes.util

from decseg.config import CPU_MEMORY_MODES

# mallopt parameters, from malloc.h
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -2, -3, -4


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 - absent off glibc (musl, macOS)
        return libc
    except (OSError, AttributeError):
        return None


def tune_malloc(threshold: int = 1 << 20) -> bool:
    """``return`` mode: glibc maps blocks of ``threshold`` bytes and more on their own and gives
    them (and a heap top of that size) back to the OS when freed.

    Same as exporting MALLOC_MMAP_THRESHOLD_=N MALLOC_TRIM_THRESHOLD_=N. Returns False off glibc.
    """
    libc = _libc()
    return bool(libc and libc.mallopt(_M_MMAP_MAX, 65536)  # glibc's default, in case reuse ran
                and libc.mallopt(_M_MMAP_THRESHOLD, threshold)
                and libc.mallopt(_M_TRIM_THRESHOLD, threshold))


def keep_freed_memory() -> bool:
    """``reuse`` mode: no per-allocation mappings and no heap trimming, so freed blocks are
    reused by later allocations instead of being returned and faulted in again.

    Same as exporting MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<huge> MALLOC_TOP_PAD_=64MiB
    (grow the heap in 64 MiB steps). Blocks mapped before the call are still unmapped when freed.
    Returns False off glibc.
    """
    libc = _libc()
    return bool(libc and libc.mallopt(_M_MMAP_MAX, 0)
                and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
                and libc.mallopt(_M_TOP_PAD, 64 << 20))


def configure_malloc(mode: str) -> bool:
    """Apply a ``train.cpu_memory`` mode (``system`` leaves glibc alone). True if applied.

    ``cache`` installs the block cache and raises ``CpuCacheUnavailable`` if it cannot be built.
    """
    if mode == "cache":
        from decseg.accel import block_cache as cpu_cache

        cpu_cache.install()
        return True
    if mode == "return":
        return tune_malloc()
    if mode == "reuse":
        return keep_freed_memory()
    if mode == "system":
        return False
    raise ValueError(f"unknown malloc mode {mode!r}; expected one of {CPU_MEMORY_MODES}")


def release_free_memory() -> bool:
    """Give kept free memory back to the OS now: the block cache's free blocks, and glibc's free
    heap pages (``malloc_trim(0)``). E.g. after validation, whose tensors have other sizes than a
    training step's. False off glibc."""
    from decseg.accel import block_cache as cpu_cache

    cpu_cache.empty()
    libc = _libc()
    try:
        return bool(libc and libc.malloc_trim(0) >= 0)
    except AttributeError:
        return False
