"""Content-addressed, append-only store of golden sets under the data directory.

``<data_dir>/golden/objects/<sha256>.jsonl`` holds each content once (canonical rows, written
read-only through an atomic rename), ``<data_dir>/golden/index.json`` lists each name's versions
in registration order. Registering the same content again returns the existing version;
different content under a name is the next version. Objects are never rewritten.
"""

import json
import os
import tempfile
from pathlib import Path

from relctl.domain.errors import NotFoundError, ValidationError
from relctl.domain.golden import (
    GoldenCall,
    GoldenSetRef,
    GoldenSetRegistered,
    canonical_row,
    content_hash,
    parse_golden_lines,
    segment_counts,
)


class GoldenStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "golden"
        self.objects = self.root / "objects"
        self.index_path = self.root / "index.json"

    def _index(self) -> dict[str, list[str]]:
        if not self.index_path.exists():
            return {}
        data = json.loads(self.index_path.read_text("utf-8"))
        return {name: list(hashes) for name, hashes in data.items()}

    def _write_index(self, index: dict[str, list[str]]) -> None:
        self._atomic_write(self.index_path, json.dumps(index, indent=2, sort_keys=True) + "\n")

    @staticmethod
    def _atomic_write(path: Path, text: str, read_only: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if read_only:
            os.chmod(tmp, 0o444)
        os.replace(tmp, path)

    def object_path(self, digest: str) -> Path:
        return self.objects / f"{digest.removeprefix('sha256:')}.jsonl"

    def put(self, calls: list[GoldenCall]) -> str:
        """Store a content once (read-only, atomic) and return its hash; the index is not
        touched: with the control plane, ``Task.GoldenSetRegistered`` says which is current."""
        lines = [canonical_row(call.model_dump(mode="json")) for call in calls]
        digest = content_hash(lines)
        path = self.object_path(digest)
        if not path.exists():
            self._atomic_write(path, "".join(line + "\n" for line in lines), read_only=True)
        return digest

    def read_text(self, digest: str) -> str:
        """The stored canonical JSON Lines of ``digest``, checked against the hash."""
        path = self.object_path(digest)
        if not path.exists():
            raise NotFoundError(f"golden set object {digest} is missing")
        text = path.read_text("utf-8")
        if content_hash(text.splitlines()) != digest:
            raise ValidationError(f"golden set object {digest} does not match its hash")
        return text

    def register(self, name: str, text: str, *, actor: str, reason: str) -> GoldenSetRegistered:
        """Local (offline) registration in ``index.json``: a file-only version list that binds
        no task; ``relctl gate golden register --task`` registers through the control plane."""
        calls = parse_golden_lines(text.splitlines())
        digest = self.put(calls)
        path = self.object_path(digest)
        index = self._index()
        versions = index.setdefault(name, [])
        if digest not in versions:
            versions.append(digest)
            self._write_index(index)
        ref = GoldenSetRef(name=name, version=versions.index(digest) + 1, content_hash=digest)
        return GoldenSetRegistered(
            golden_set=ref, rows=len(calls), segments=segment_counts(calls),
            critical_calls=sum(1 for c in calls if c.labels.critical_detections),
            object_path=str(path.relative_to(self.root.parent)), registered_by=actor,
            reason=reason)

    def resolve(self, name: str, version: int | None = None) -> GoldenSetRef:
        """The named version, or the newest (the *current* one) when ``version`` is None."""
        versions = self._index().get(name)
        if not versions:
            raise NotFoundError(f"no golden set named {name!r}")
        if version is None:
            version = len(versions)
        if not 1 <= version <= len(versions):
            raise NotFoundError(f"golden set {name!r} has versions 1..{len(versions)}")
        return GoldenSetRef(name=name, version=version, content_hash=versions[version - 1])

    def load(self, ref: GoldenSetRef) -> list[GoldenCall]:
        """The rows of ``ref``, checked against their content hash before use."""
        path = self.object_path(ref.content_hash)
        if not path.exists():
            raise NotFoundError(f"golden set object {ref.content_hash} is missing")
        lines = path.read_text("utf-8").splitlines()
        if content_hash(lines) != ref.content_hash:
            raise ValidationError(f"golden set object {ref.content_hash} does not match its hash")
        return parse_golden_lines(lines)
