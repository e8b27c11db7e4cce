"""Process memory helpers."""
from __future__ import annotations


def tune_malloc(threshold: int = 1 << 20) -> bool:
    """Make glibc return freed blocks of ``threshold`` bytes and more to the OS at once.

    glibc raises its mmap threshold up to 32 MiB after large frees, after which big activation
    buffers are carved from the heap and stay resident after they are freed; a fixed threshold
    keeps the resident set close to the memory really in use, at the price of page faults when
    the memory is touched again. Same as exporting MALLOC_MMAP_THRESHOLD_=N
    MALLOC_TRIM_THRESHOLD_=N. Process-wide. Returns False off glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # from malloc.h
        return bool(libc.mallopt(m_mmap_threshold, threshold)) and bool(
            libc.mallopt(m_trim_threshold, threshold))
    except (OSError, AttributeError):
        return False
