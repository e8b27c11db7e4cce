"""Process memory helpers."""
from __future__ import annotations


def tune_malloc() -> bool:
    """Make glibc return freed blocks above 128 KiB to the OS at once (CPU peak RSS lever).

    glibc raises its mmap threshold up to 32 MiB after large frees, after which big activation
    buffers are carved from the heap and stay resident after they are freed; a fixed threshold
    keeps the resident set close to the memory really in use. Same as exporting
    MALLOC_MMAP_THRESHOLD_=131072 MALLOC_TRIM_THRESHOLD_=131072. Returns False off glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # from malloc.h
        return bool(libc.mallopt(m_mmap_threshold, 128 * 1024)) and bool(
            libc.mallopt(m_trim_threshold, 128 * 1024))
    except (OSError, AttributeError):
        return False
