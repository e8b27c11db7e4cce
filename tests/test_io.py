"""Atomic writes never leave a half-written file or folder under the final name."""
import pytest

from decseg.errors import DecsegError
from decseg.io import atomic_dir, atomic_write, atomic_write_text


def test_atomic_write_replaces_content(tmp_path):
    p = tmp_path / "sub" / "f.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [q.name for q in p.parent.iterdir()] == ["f.txt"]


def test_failed_write_keeps_previous_file_and_no_temp(tmp_path):
    p = tmp_path / "f.txt"
    atomic_write_text(p, "good")

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(p, broken)
    assert p.read_text() == "good"
    assert [q.name for q in tmp_path.iterdir()] == ["f.txt"]


def test_atomic_dir_renames_only_on_success(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "a.png").write_bytes(b"x")
            raise RuntimeError("interrupted")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(final) as tmp:
        (tmp / "a.png").write_bytes(b"x")
    assert (final / "a.png").read_bytes() == b"x"


def test_atomic_dir_refuses_non_empty_target_unless_overwrite(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old").write_text("keep")
    with pytest.raises(DecsegError, match="already exists"):
        with atomic_dir(final):
            pass
    assert (final / "old").read_text() == "keep"
    with atomic_dir(final, overwrite=True) as tmp:
        (tmp / "new").write_text("n")
    assert sorted(p.name for p in final.iterdir()) == ["new"]


def test_atomic_dir_removes_the_partial_folder_of_a_killed_process(tmp_path, capfd):
    import os
    import subprocess
    import sys

    final = tmp_path / "out"
    child = ("import sys, time\nfrom decseg.io import atomic_dir\n"
             "with atomic_dir(sys.argv[1]) as tmp:\n"
             "    (tmp / 'a.png').write_bytes(b'x')\n    print(tmp, flush=True)\n    time.sleep(300)\n")
    proc = subprocess.Popen([sys.executable, "-c", child, str(final)], stdout=subprocess.PIPE, text=True)
    try:
        partial = tmp_path / proc.stdout.readline().strip()
    finally:
        proc.kill()  # SIGKILL inside the block: nothing cleans up
        proc.wait()
    assert partial.is_dir() and partial.name.startswith(f".out.partial-{proc.pid}@") and not final.exists()
    live = tmp_path / partial.name.replace(f"-{proc.pid}@", f"-{os.getpid()}@")  # a live owner: this test
    live.mkdir()
    unknown = tmp_path / ".out.partial-k2j4_x9"  # the older name, without an owner
    unknown.mkdir()
    capfd.readouterr()
    with atomic_dir(final) as tmp:
        (tmp / "b.png").write_bytes(b"y")
    err = capfd.readouterr().err
    assert not partial.exists() and f"removed 1 partial folder(s) beside {final}" in err
    assert live.is_dir() and unknown.is_dir() and unknown.name in err and live.name not in err
    assert sorted(p.name for p in final.iterdir()) == ["b.png"]
