"""Build hook for the optional C speed-up; all metadata lives in pyproject.toml.

``newsmon_speedups`` is the classifier's hot path in C (pipelines/classify/_speedups.c). It is
optional: without a C compiler the build skips it and newsmon uses the pure-Python engine, which
gives the same results more slowly (``newsmon topics --engine`` says which one is in use).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "newsmon_speedups",
            sources=["pipelines/classify/_speedups.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
