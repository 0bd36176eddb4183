"""fsutil.open_dir: the safe walk, with and without its openat2 fast path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pymgmt import fsutil

NOBODY = 65534


@pytest.fixture(params=["openat2", "walk"])
def impl(request, monkeypatch):
    """Run each test against the one-syscall fast path and the component walk."""
    if request.param == "walk":
        monkeypatch.setattr(fsutil, "_openat2", None)
    elif fsutil._openat2 is None:
        pytest.skip("no openat2 on this machine")
    return request.param


def _opened(path: Path) -> tuple[int, int]:
    fd = fsutil.open_dir(str(path))
    try:
        st = os.fstat(fd)
        return st.st_dev, st.st_ino
    finally:
        os.close(fd)


def _ident(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def test_a_plain_directory_is_opened(tmp_path, impl):
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert _opened(tmp_path / "a" / "b") == _ident(tmp_path / "a" / "b")


def test_root_owned_symlinks_are_followed_relative_absolute_and_dotdot(tmp_path, impl):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "rel").symlink_to("a/b")
    (tmp_path / "abs").symlink_to(tmp_path / "a")
    (tmp_path / "a" / "up").symlink_to("../a/b")
    assert _opened(tmp_path / "rel") == _ident(tmp_path / "a" / "b")
    assert _opened(tmp_path / "abs" / "b") == _ident(tmp_path / "a" / "b")
    assert _opened(tmp_path / "a" / "up") == _ident(tmp_path / "a" / "b")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a symlink another user owns")
def test_a_symlink_owned_by_another_user_is_refused_by_name(tmp_path, impl):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    os.lchown(tmp_path / "link", NOBODY, NOBODY)
    with pytest.raises(fsutil.UnsafePathError, match=f"refusing to follow {tmp_path}/link:"):
        fsutil.open_dir(f"{tmp_path}/link")


def test_a_missing_component_is_named(tmp_path, impl):
    (tmp_path / "a").mkdir()
    with pytest.raises(FileNotFoundError) as e:
        fsutil.open_dir(f"{tmp_path}/a/missing/deeper")
    assert e.value.filename == f"{tmp_path}/a/missing"


def test_a_file_in_the_path_is_not_a_directory(tmp_path, impl):
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError):
        fsutil.open_dir(f"{tmp_path}/f/x")


def test_a_symlink_loop_ends_with_eloop(tmp_path, impl):
    (tmp_path / "x").symlink_to("y")
    (tmp_path / "y").symlink_to("x")
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        fsutil.open_dir(f"{tmp_path}/x")


def test_state_names_are_injective_and_readable():
    names = ["db/pw", "db_pw", "db pw", "db\\pw", "x" * 200, "x" * 201]
    out = {fsutil.state_name("password", n) for n in names}
    assert len(out) == len(names)
    assert fsutil.state_name("password", "db/pw").startswith("password-db_pw-")
    assert fsutil.state_name("password", "a") != fsutil.state_name("file", "a")
    assert all(len(n) < 255 for n in out)
