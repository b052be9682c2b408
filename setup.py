"""Build hook for the optional C speed-up; all metadata lives in pyproject.toml.

``newsmon_speedups`` is the classifier's hot path in C (pipelines/classify/_speedups/). It is
optional: without a C compiler the build skips it and newsmon uses the pure-Python engine, which
gives the same results more slowly (``newsmon topics`` says which one is in use).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "newsmon_speedups",
            sources=[f"pipelines/classify/_speedups/{name}.c" for name in ("trie", "score", "engine", "module")],
            depends=["pipelines/classify/_speedups/speedups.h"],
            optional=True,
        )
    ]
)
