"""One writer per run folder: ``RUN/.lock``, held by rank 0 for the whole of a ``decseg train``.

The lock is an OS advisory lock (``fcntl.flock``) on ``RUN/.lock``, kept open for the run, so
the kernel releases it when the holder ends in any way, ``kill -9`` included. The file's JSON
(host, pid, start time) only serves the message that refuses a second run. A file left by a
process that died is taken over. On a filesystem without flock (ENOLCK, EOPNOTSUPP: some
network mounts) the lock falls back to the file's existence plus a check that its pid is alive
on this host.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from pathlib import Path

from decseg.errors import DecsegError
from decseg.io import pid_alive, read_json_object

LOCK_NAME = ".lock"
# flock errors that mean "this filesystem cannot lock", not "someone holds it"
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP), errno.EINVAL}


class RunLocked(DecsegError):
    """Another process is training into the same run folder."""


def _holder_text(holder: dict | None) -> str:
    if not holder:
        return "another process (it has not written its details yet)"
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} "
            f"(since {holder.get('started', '?')})")



class RunLock:
    """``RunLock.acquire(run_dir)`` takes the lock or raises :class:`RunLocked`; ``release()`` frees it."""

    def __init__(self, path: Path, fd: int | None, record: dict):
        self.path = path
        self._fd = fd  # None: the pid fallback (no flock held)
        self.record = record
        self.held = True
        self.created_dir = False  # release() then removes the run folder if it stayed empty

    @classmethod
    def acquire(cls, run_dir: str | Path) -> "RunLock":
        run_dir = Path(run_dir)
        created = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / LOCK_NAME
        record = {"host": socket.gethostname(), "pid": os.getpid(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}
        for _ in range(20):  # only repeats when another process swaps the file meanwhile
            try:
                lock = cls._try_flock(path, record)
            except BaseException:
                if created:
                    _remove_if_empty(run_dir)
                raise
            if lock is not None:
                lock.created_dir = created
                return lock
        raise RunLocked(f"{path}: could not take the run lock (the file keeps changing); make sure "
                        f"no other decseg train writes into {path.parent}, or choose another --out")

    @classmethod
    def _try_flock(cls, path: Path, record: dict) -> "RunLock | None":
        import fcntl

        created = False
        try:
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                created = True
        except FileExistsError:
            return None  # created by another process meanwhile: try again
        except OSError as e:
            raise RunLocked(f"{path}: cannot create the run lock ({e.strerror}); choose a writable --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise RunLocked(_refusal(path, _read_settled(path))) from None
            if e.errno not in _NO_FLOCK:
                os.close(fd)
                raise
            print(f"note: {path.parent} does not support file locks ({errno.errorcode.get(e.errno, e.errno)}); "
                  f"the run lock falls back to checking the holder's pid on this host", file=sys.stderr)
            if not created:
                os.close(fd)
                return cls._by_pid(path, record)
            with os.fdopen(fd, "w", encoding="utf-8") as f:  # created exclusively above: ours
                f.write(json.dumps(record) + "\n")
            return cls(path, None, record)
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder removed the file between our open and flock
            os.close(fd)
            return None
        left = read_json_object(path)
        if left:
            print(f"note: {path}: taking over the lock left by {_holder_text(left)}, which is no longer "
                  f"running", file=sys.stderr)
        data = (json.dumps(record) + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        return cls(path, fd, record)

    @classmethod
    def _by_pid(cls, path: Path, record: dict) -> "RunLock":
        host = socket.gethostname()
        for _ in range(20):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read_settled(path)
                pid = holder.get("pid") if holder else None
                if holder and holder.get("host") == host and isinstance(pid, int) and not pid_alive(pid):
                    print(f"note: {path}: taking over the lock left by {_holder_text(holder)}, which is no "
                          f"longer running", file=sys.stderr)
                    path.unlink(missing_ok=True)
                    continue
                raise RunLocked(_refusal(path, holder) + f" (this filesystem has no file locks, so only a "
                                f"pid on this host can be checked: if that run has ended, delete {path})")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            return cls(path, None, record)
        raise RunLocked(f"{path}: could not take the run lock; choose another --out")

    def release(self) -> None:
        """Remove the file, then drop the lock (idempotent)."""
        if not self.held:
            return
        self.held = False
        if self._fd is None:
            if read_json_object(self.path) == self.record:
                self.path.unlink(missing_ok=True)
        else:
            try:
                if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                    self.path.unlink()  # before unlocking: a waiter then sees a new inode and retries
            except FileNotFoundError:
                pass
            finally:
                os.close(self._fd)
        if self.created_dir:
            _remove_if_empty(self.path.parent)

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty: the run wrote something
        pass


def _read_settled(path: Path) -> dict | None:
    """The holder's record; a holder that has just taken the lock may not have written it yet."""
    for _ in range(10):
        holder = read_json_object(path)
        if holder:
            return holder
        time.sleep(0.05)
    return None


def _refusal(path: Path, holder: dict | None) -> str:
    return (f"{path.parent} is in use by another decseg train: {_holder_text(holder)} holds {path}; wait "
            f"until that run ends, or choose another --out")
