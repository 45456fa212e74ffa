"""The files through which a running ``relctl up`` is found: light enough for every CLI call.

``<data-dir>/stack.json`` records how to reach the stack and which processes it runs;
``<data-dir>/lock`` is held (``flock``) for as long as it runs; a per-user pointer names the
data directory of the stack started last, so the CLI works from any directory.
"""

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any

STACK_FILE = "stack.json"
LOCK_FILE = "lock"


def write_secret(path: Path, value: str) -> None:
    """Write ``value`` readable by the owner only (0600), never via a world-readable temp;
    replaced atomically so a reader never sees half a file."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    temp.chmod(0o600)
    temp.replace(path)


def current_stack_pointer() -> Path:
    """The per-user file naming the data directory of the ``relctl up`` started last.

    Under ``$XDG_STATE_HOME`` (default ``~/.local/state``): per user, private (0700 / 0600),
    the same in every shell and terminal. Not ``$XDG_RUNTIME_DIR``: it is often unset (root,
    containers, ssh sessions without a login manager), and the embedded PostgreSQL points it at
    the shared /tmp. A pointer that outlives its stack is harmless: the lock tells."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "relctl" / "current-stack"


def stack_is_running(data_dir: Path) -> bool:
    """True while a ``relctl up`` holds the lock of ``data_dir`` (the kernel drops it when that
    process ends, however it ends)."""
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def read_stack_file(data_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((data_dir / STACK_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def find_stack(explicit: Path | None) -> tuple[Path | None, dict[str, Any] | None]:
    """The data directory and stack file of a running ``relctl up``: ``explicit`` (from
    ``RELCTL_DATA_DIR``) only, if given; else ``./.relctl``, then the per-user pointer. With
    none running, the first candidate that has a stack file and None."""
    candidates = [explicit] if explicit else [Path(".relctl")]
    if explicit is None:
        with contextlib.suppress(OSError):
            candidates.append(Path(current_stack_pointer().read_text().strip()))
    for candidate in candidates:
        if stack_is_running(candidate):
            return candidate.resolve(), read_stack_file(candidate)
    for candidate in candidates:
        if (candidate / STACK_FILE).exists():
            return candidate.resolve(), None
    return None, None
