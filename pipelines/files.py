"""Reading small configuration files from local paths or any Beam filesystem (gs://, …)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["read_bytes"]


def read_bytes(path: str, limit: int = 16 * 1024 * 1024) -> bytes:
    """The file's bytes; ``OSError`` with a readable message when it cannot be read."""
    if "://" not in path:
        return Path(path).read_bytes()
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(path) as fh:
            data = fh.read(limit + 1)
    except Exception as exc:  # each filesystem raises its own error types
        raise OSError(f"cannot read: {exc}") from None
    if len(data) > limit:
        raise OSError(f"larger than {limit} bytes")
    return data
