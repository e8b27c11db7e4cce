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
