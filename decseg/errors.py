"""User-facing errors. The CLI prints their message (no traceback unless --debug) and exits non-zero.

:func:`environment_error` is the one place that tells a fault of the machine (a full disk, a
file-size limit, permissions, a read-only file system, memory) from a bug in decseg: it turns
such an ``OSError`` or ``MemoryError`` into a :class:`ResourceError` that names the path and says
what to do. The CLI applies it to every exception that reaches it, so every command benefits.
"""
from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class DecsegError(Exception):
    """Base class: the message names the file or key and says what to do."""

    exit_code = 2


class ConfigError(DecsegError):
    """A bad config key, type or value."""


class DataError(DecsegError):
    """A bad image, mask, split or dataset layout."""


class CheckpointError(DecsegError):
    """A checkpoint that is unreadable, untrusted, or from another configuration."""


class PretrainedWeightsError(DecsegError):
    """Pretrained weights that cannot be fetched or do not fit the encoder."""


class ResourceError(DecsegError):
    """The machine stopped the command: disk space, a file-size or open-files limit, a quota,
    permissions, a read-only file system, a path in the way, memory."""


_MEMORY_ADVICE = ("use fewer --workers or a smaller batch or image size, close other programs, or run "
                  "on a machine with more memory")
_PERMISSION_ADVICE = "check the permissions of that path (and its folders), or choose another location"
# errno -> (what happened, what to do). Write errors name the file being written.
_ADVICE: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device", "free disk space there, or write to another disk"),
    errno.EFBIG: ("file too large for the file-size limit or the file system",
                  "raise the limit (ulimit -f unlimited), or write to another file system"),
    errno.EACCES: ("permission denied", _PERMISSION_ADVICE),
    errno.EPERM: ("operation not permitted", _PERMISSION_ADVICE),
    errno.EROFS: ("read-only file system", "choose a location on a writable disk"),
    errno.ENAMETOOLONG: ("file name too long for the file system", "choose a shorter path or shorter file names"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n), or use fewer --workers"),
    errno.ENFILE: ("too many open files on the system", "close other programs, or use fewer --workers"),
    errno.ENOMEM: ("out of memory", _MEMORY_ADVICE),
    errno.EIO: ("input/output error", "the disk or network file system failed; check it, then run again"),
}
if hasattr(errno, "EDQUOT"):
    _ADVICE[errno.EDQUOT] = ("disk quota exceeded", "free space within your quota, or write to another disk")
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


@contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Give an ``OSError`` raised in the block ``path`` as its file name when it carries none.

    Writes through file objects (``f.write``, Pillow's ``save``, ``shutil.copyfile``'s fallback)
    raise ``ENOSPC`` / ``EFBIG`` without a path; this lets :func:`environment_error` name the file.
    """
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:  # not Pillow's "image file is truncated"
            e.filename = os.fspath(path)
        raise


def file_in_the_way(path: str | Path) -> Path | None:
    """The nearest existing folder above ``path`` when it is not a folder after all, else None.

    ``somefile.txt/run`` -> ``somefile.txt``: nothing can be created below a regular file.
    """
    for q in Path(path).parents:
        try:
            if q.exists():
                return None if q.is_dir() else q
        except OSError:  # e.g. a name too long to stat: keep looking upwards
            continue
    return None


def _name(value: object) -> str | None:
    if isinstance(value, (str, bytes, os.PathLike)):
        return os.fsdecode(value)
    return None  # a file descriptor, or nothing


def _from_os_error(e: OSError, writing: str | None) -> ResourceError | None:
    first, second = _name(e.filename), _name(e.filename2)
    code = e.errno
    code_name = errno.errorcode.get(code, str(code)) if code is not None else type(e).__name__
    if code == errno.ENOTDIR and first:
        blocker = file_in_the_way(first)
        where = f"{blocker} is a file, not a folder" if blocker else "a part of the path is not a folder"
        return ResourceError(f"{first}: {where}; move it away or choose another path")
    if code == errno.EEXIST and first:
        # Only a regular file where a folder must go is the user's to fix; anything else is a bug.
        if Path(first).exists() and not Path(first).is_dir():
            return ResourceError(f"{first} is a file where decseg needs a folder; move it away or "
                                 f"choose another path")
        return None
    if code == errno.EISDIR and first:
        return ResourceError(f"{first} is a folder where decseg needs a file; give a file path")
    if code not in _ADVICE:
        return None
    what, todo = _ADVICE[code]
    if code in _WRITE_ERRNOS and second:  # copy or rename: the file being written is the second
        where = second
    elif first and second:
        where = f"{first} -> {second}"
    else:
        where = first
    during = f" while writing {writing}" if writing and code in _WRITE_ERRNOS else ""
    return ResourceError(f"{where + ': ' if where else ''}{what} ({code_name}){during}; {todo}")


def environment_error(e: BaseException, writing: str | None = None) -> ResourceError | None:
    """A one-line :class:`ResourceError` for a fault of the environment, or None for anything else.

    Handles ``OSError`` by errno (disk full, file-size limit, quota, permissions, read-only file
    system, a file where a folder must be, a name too long, too many open files, I/O errors),
    ``MemoryError`` and torch's out-of-memory error; also when one of them is the ``__cause__``
    of ``e``. The message names the path from ``e.filename`` (the destination of a copy or
    rename); ``writing`` (e.g. ``"--out run"``) adds the command's output to a write error
    (full disk, file-size limit, quota), which often carries no path. Anything else (None) is
    a bug to report.
    """
    for x in (e, e.__cause__):
        if isinstance(x, OSError):
            found = _from_os_error(x, writing)
            if found is not None:
                return found
        elif isinstance(x, MemoryError):
            return ResourceError(f"out of memory (MemoryError); {_MEMORY_ADVICE}")
        elif type(x).__name__ == "OutOfMemoryError" and type(x).__module__.startswith("torch"):
            first = next((ln.strip() for ln in str(x).splitlines() if ln.strip()), "")
            return ResourceError(f"out of GPU memory ({first[:200]}); use a smaller batch or image size "
                                 f"(train.batch_labeled, --batch-size, data.size), bf16, or a free GPU")
    return None
