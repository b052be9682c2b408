"""newsmon: a stream-processing news monitor on Apache Beam."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("newsmon")
except PackageNotFoundError:  # running from a checkout without install
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
