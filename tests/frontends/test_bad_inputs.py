"""The bad-input corpus: every file in bad/ is refused, with exactly its golden message.

Each case is a pair ``bad/NAME.yaml`` + ``bad/NAME.err``. The .err file holds
what ``pymgmt validate`` prints on stderr, with two placeholders:

``@DIR@``
    the directory the graph file was copied to;
``/tmp/pymgmt-bad``
    the directory of the paths the graph would manage. The test replaces it
    with a fresh directory holding a few files, so a graph that slipped
    through would visibly change something.

Both ``pymgmt validate`` and ``pymgmt run --converged-timeout 0`` must exit 1,
print the golden text, and leave every file (and the state directory) as it
was. To rewrite the goldens after an intended change of wording, run::

    PYMGMT_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/frontends/test_bad_inputs.py

then read every changed .err by eye (git diff) before committing.

Writing a case: keep errors to the left of any managed path on the same
line (``test_golden_columns_do_not_depend_on_the_tmp_dir`` checks it),
because the placeholder is longer or shorter than the real directory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pymgmt.types import MAX_PROBLEMS

BAD = Path(__file__).parent / "bad"
CASES = sorted(p.stem for p in BAD.glob("*.yaml"))
PLACEHOLDER = "/tmp/pymgmt-bad"
DIR = "@DIR@"
REGEN = os.environ.get("PYMGMT_REGEN_GOLDEN") == "1"
_LOCATED = re.compile(r"^  @DIR@/(?P<name>[\w-]+)\.yaml:(?P<line>\d+):(?P<col>\d+): \S")


def _prepare(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """Copy the case with its placeholder replaced; fill the managed directory."""
    managed = tmp_path / "managed"
    (managed / "sub").mkdir(parents=True)
    (managed / "keep").write_text("keep me\n")
    (managed / "keep").chmod(0o600)
    (managed / "sub" / "f1").write_text("old\n")
    indir = tmp_path / "in"
    indir.mkdir()
    graph = indir / f"{name}.yaml"
    source = (BAD / f"{name}.yaml").read_bytes()
    graph.write_bytes(source.replace(PLACEHOLDER.encode(), str(managed).encode()))
    return graph, managed, tmp_path / "state"


def _normalise(text: str, managed: Path, indir: Path) -> str:
    return text.replace(str(managed), PLACEHOLDER).replace(str(indir), DIR)


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_refused_with_its_golden_message_and_changes_nothing(
    name: str, tmp_path: Path, pymgmt, tree
) -> None:
    graph, managed, state = _prepare(tmp_path, name)
    before = tree(tmp_path)

    validate, run = pymgmt(
        ["validate", str(graph)],
        ["run", "--converged-timeout", "0", "--prefix", str(state), str(graph)],
    )

    golden_path = BAD / f"{name}.err"
    got = _normalise(validate.stderr, managed, graph.parent)
    if REGEN and (not golden_path.exists() or golden_path.read_text() != got):
        golden_path.write_text(got)
    golden = golden_path.read_text()
    for proc in (validate, run):
        assert proc.returncode == 1, proc.args
        assert proc.stdout == "", proc.args
        assert _normalise(proc.stderr, managed, graph.parent) == golden, proc.args
    assert tree(tmp_path) == before
    assert not state.exists()


def test_corpus_is_complete() -> None:
    errs = sorted(p.stem for p in BAD.glob("*.err"))
    assert errs == CASES, "every bad/NAME.yaml needs its NAME.err, and no .err is orphaned"
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", CASES)
def test_golden_names_file_line_and_column_for_every_problem(name: str) -> None:
    lines = (BAD / f"{name}.err").read_text().splitlines()
    m = re.fullmatch(
        r"error: the graph is invalid \((\d+) problems?\); nothing was changed", lines[0]
    )
    assert m, lines[0]
    more = re.fullmatch(r"  \.\.\. and (\d+) more", lines[-1])
    if more:  # past MAX_PROBLEMS, the rest are counted, not listed
        lines = lines[:-1]
        assert len(lines) - 1 == MAX_PROBLEMS
    assert int(m[1]) == len(lines) - 1 + (int(more[1]) if more else 0)
    for line in lines[1:]:
        loc = _LOCATED.match(line)
        assert loc, f"not located at file:line:column: {line!r}"
        assert loc["name"] == name


@pytest.mark.parametrize("name", CASES)
def test_golden_columns_do_not_depend_on_the_tmp_dir(name: str) -> None:
    source = (BAD / f"{name}.yaml").read_bytes().decode("utf-8", "replace").split("\n")
    for line in (BAD / f"{name}.err").read_text().splitlines()[1:]:
        if line.startswith("  ... and "):
            continue
        loc = _LOCATED.match(line)
        assert loc
        row = source[int(loc["line"]) - 1] if int(loc["line"]) <= len(source) else ""
        at = row.find(PLACEHOLDER)
        assert at < 0 or at >= int(loc["col"]) - 1, f"error after a managed path: {line!r}"
