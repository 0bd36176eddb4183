"""The plain-Python peer of a one-shot run: a loop over the same files.

Usage: _plain_loop.py MODE DIR N [GRAPH.yaml]

MODE
  check          stat + read + compare content and mode of every file
  check-yaml     the same, reading paths/content/mode from the graph YAML
                 (yaml.load with libyaml's CSafeLoader): a minimal agent
  write          plain write: open/write/close + chmod
  write-durable  pymgmt's atomic write: temp file, fchmod, write, fsync,
                 rename, directory fsync

Exit status 0 when every file was already right (check modes), else 2, like
``pymgmt run --converged-timeout 0``.
"""

from __future__ import annotations

import os
import stat
import sys


def content_of(i: int) -> str:  # keep in sync with _common.content_of
    return f"file {i} managed by the pymgmt benchmark\n"


def paths(directory: str, n: int) -> list[str]:  # the one-directory layout of _common
    return [os.path.join(directory, f"f{i:05d}") for i in range(n)]


def check(items: list[tuple[str, bytes, int]]) -> int:
    bad = 0
    for path, want, mode in items:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            bad += 1
            continue
        if stat.S_IMODE(st.st_mode) != mode or st.st_size != len(want):
            bad += 1
            continue
        with open(path, "rb") as f:
            if f.read() != want:
                bad += 1
    return bad


def write(path: str, data: bytes, mode: int) -> None:
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def write_durable(path: str, data: bytes, mode: int) -> None:
    directory, base = os.path.split(path)
    tmp = os.path.join(directory, f".{base}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def main() -> int:
    mode, directory, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "check-yaml":
        import yaml

        with open(sys.argv[4], "rb") as f:
            doc = yaml.load(f, Loader=yaml.CSafeLoader)
        items = [
            (r["name"], r["content"].encode(), int(str(r["mode"]), 8))
            for r in doc["resources"]["file"]
        ]
        return 2 if check(items) else 0
    items = [(p, content_of(i).encode(), 0o644) for i, p in enumerate(paths(directory, n))]
    if mode == "check":
        return 2 if check(items) else 0
    fn = write if mode == "write" else write_durable
    for path, data, m in items:
        fn(path, data, m)
    return 2


if __name__ == "__main__":
    sys.exit(main())
