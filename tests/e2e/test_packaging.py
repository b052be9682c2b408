"""Building newsmon: the classifier's C extension is optional.

Quick start's `pip install .` must work on a machine without a C compiler (newsmon then classifies
with the pure-Python engine), and build the extension where there is one. Both builds run offline
on a copy of the source tree with the setuptools of this environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytest.importorskip("setuptools", reason="setuptools is not installed in this environment")


def _source_copy(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("pipelines", "alerts", "seeds"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    return src


def _build_ext(src: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def _probe(src: Path, setup: str) -> str:
    """Classify one spying headline with the tree in src; prints 'compiled-flag topics'."""
    code = (
        f"{setup}; from pipelines.classify.engine import Engine; from pipelines.classify.rules import load_topics; "
        "e = Engine(load_topics()); print(e.compiled, [m.topic for m in e.classify('MI5 warns of Chinese spying', '')])"
    )
    check = subprocess.run(
        [sys.executable, "-c", code],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(src)},
    )
    assert check.returncode == 0, check.stderr[-2000:]
    return check.stdout.strip()


def test_build_without_a_compiler_succeeds_and_skips_the_extension(tmp_path):
    src = _source_copy(tmp_path)
    result = _build_ext(src, CC="/bin/false", LDSHARED="/bin/false")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "newsmon_speedups" in result.stdout + result.stderr  # the skipped extension is named
    assert not list(src.glob("newsmon_speedups*.so"))
    # ... and newsmon still classifies, in pure Python (an installed copy elsewhere is hidden).
    assert _probe(src, "import sys; sys.modules['newsmon_speedups'] = None") == "False ['spying']"


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler on this machine")
def test_build_with_a_compiler_gives_an_importable_extension(tmp_path):
    src = _source_copy(tmp_path)
    result = _build_ext(src)
    assert result.returncode == 0, result.stderr[-2000:]
    (built,) = src.glob("newsmon_speedups*.so")
    # The extension built here is the one imported (cwd first on sys.path), and it is used.
    assert _probe(src, f"import newsmon_speedups; assert newsmon_speedups.__file__ == {str(built)!r}") == (
        "True ['spying']"
    )
