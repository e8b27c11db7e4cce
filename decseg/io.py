"""Files and randomness: atomic writes, safe loading of untrusted weights, seeding.

Atomic writes go to a temp file in the same folder, fsync, then rename: a crash or ``kill -9``
at any moment leaves either the old file or the new one, never a half-written file under the
final name. Checkpoints and weight files are untrusted input: they load with
``torch.load(weights_only=True)``, a pickle payload is refused, and a damaged or foreign file is
named as such, instead of torch's multi-line advice to use weights_only=False.
"""
from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import socket
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from decseg.errors import DecsegError


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then move the temp file onto ``path`` atomically.

    On any error the temp file is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


_PARTIAL_OWNER = re.compile(r"(\d+)@(.+)\.[^.]+")  # PID@HOST.RANDOM after ".NAME.partial-"


def read_json_object(path: str | Path) -> dict | None:
    """The JSON object in ``path``, or None when it is missing, unreadable, half-written or not
    an object (callers treat all of these as "not there yet")."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "host"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process, or not a pid at all
        return True
    return True


def remove_stale_partials(final: Path) -> list[Path]:
    """Remove the ``.NAME.partial-PID@HOST.*`` folders beside ``final`` whose process has ended.

    Partial folders of live processes are left alone; those whose owner cannot be checked
    (another host, or an older name without one) are left and named in one note on stderr.
    Returns the folders removed.
    """
    prefix = f".{final.name}.partial-"
    if not final.parent.is_dir():
        return []
    removed, unknown = [], []
    for p in sorted(final.parent.iterdir()):
        if not (p.name.startswith(prefix) and p.is_dir()):
            continue
        owner = _PARTIAL_OWNER.fullmatch(p.name[len(prefix):])
        if owner is None or owner.group(2) != _host():
            unknown.append(p.name)
        elif not pid_alive(int(owner.group(1))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    if removed:
        print(f"note: removed {len(removed)} partial folder(s) beside {final} left by ended processes: "
              f"{', '.join(p.name for p in removed)}", file=sys.stderr)
    if unknown:
        print(f"note: {final.parent} holds partial folder(s) of another host or an unknown process: "
              f"{', '.join(unknown)}; delete them once no decseg command writes {final}", file=sys.stderr)
    return removed


@contextmanager
def atomic_dir(final: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp folder beside ``final``; rename it to ``final`` only if the block succeeds.

    An interrupted run leaves a ``.name.partial-PID@HOST.*`` folder, never a complete-looking
    ``final``; the next ``atomic_dir`` for ``final`` removes it once that process has ended.
    """
    final = Path(final)
    remove_stale_partials(final)
    occupied = final.exists() and (not final.is_dir() or any(final.iterdir()))
    if occupied and not overwrite:
        raise DecsegError(f"{final} already exists and is not empty; choose another --out, or pass --overwrite to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-{os.getpid()}@{_host()}.", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def safe_torch_load(path: str | Path, error: type[Exception], what: str, hint: str,
                    map_location: Any = "cpu") -> Any:
    """Load ``path`` with ``weights_only=True``; every failure becomes ``error`` with one line.

    ``what`` names the file in the message (e.g. "checkpoint x.pt"); ``hint`` says what to do.
    """
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch.load raises many types for a damaged or foreign file
        text = _ANSI.sub("", str(e))
        found = _GLOBAL.search(text)
        if isinstance(e, pickle.UnpicklingError) and found:
            raise error(
                f"{what} carries a pickled Python object ({found.group(1)}) besides tensors; refusing to "
                f"load it, because that could run arbitrary code. {hint}"
            ) from None
        first = next((line.strip() for line in text.splitlines() if line.strip()), "end of file")
        raise error(
            f"{what} cannot be read as a PyTorch weights file: it is truncated or corrupt, or "
            f"another format ({type(e).__name__}: {first[:160]}). {hint}"
        ) from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch
    except ImportError:  # the evaluator may run without torch
        return
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
