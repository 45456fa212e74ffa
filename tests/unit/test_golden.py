"""Golden sets: parsing, content hash, immutable versioned store, the shipped example set."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from relctl.adapters.golden_store import GoldenStore
from relctl.domain.errors import NotFoundError, ValidationError
from relctl.domain.golden import golden_hash, parse_golden_lines

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "golden" / "csat-golden.jsonl"


def row(call_id: str = "c1", total: float = 80) -> dict:
    return {"call_id": call_id, "transcript": "Agent: hello", "tenant_segment": "smb",
            "intent": "billing", "risk_tags": [],
            "labels": {"total_score": total, "critical_detections": [],
                       "categories": {"greeting": {"score": 90, "verdict": "pass"}}}}


def jsonl(*rows: dict, indent_keys: bool = False) -> str:
    if indent_keys:
        return "".join(json.dumps(dict(reversed(list(r.items())))) + "\n\n" for r in rows)
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ('{"call_id": "c1"}\n', "line 1: transcript"),
    (jsonl(row(), row()), "line 2: duplicate call_id"),
    (jsonl(row()) + "not json\n", "line 2"),
    (jsonl(row(total=101)), "line 1: labels.total_score"),
    (jsonl({**row(), "extra": 1}), "line 1: extra"),
    (jsonl({**row(), "labels": {**row()["labels"], "categories": {
        "greeting": {"score": 9, "verdict": "maybe"}}}}), "verdict"),
])
def test_bad_golden_sets_are_refused_with_the_line(text, message):
    with pytest.raises(ValidationError, match=message):
        parse_golden_lines(text.splitlines())


def test_the_hash_ignores_formatting_and_sees_every_change():
    a = parse_golden_lines(jsonl(row("c1"), row("c2")).splitlines())
    b = parse_golden_lines(jsonl(row("c1"), row("c2"), indent_keys=True).splitlines())
    changed = parse_golden_lines(jsonl(row("c1"), row("c2", total=79.5)).splitlines())
    assert golden_hash(a) == golden_hash(b)
    assert golden_hash(a) != golden_hash(changed)


def test_the_store_versions_by_content_and_never_rewrites(tmp_path):
    store = GoldenStore(tmp_path)
    first = store.register("csat", jsonl(row("c1")), actor="ana", reason="initial set")
    again = store.register("csat", jsonl(row("c1"), indent_keys=True), actor="ana", reason="same")
    second = store.register("csat", jsonl(row("c1", total=70)), actor="ana", reason="relabel")
    assert (first.golden_set.version, again.golden_set.version, second.golden_set.version) == (
        1, 1, 2)
    assert store.resolve("csat") == second.golden_set
    assert store.resolve("csat", 1) == first.golden_set
    path = store.object_path(first.golden_set.content_hash)
    assert not os.stat(path).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert store.load(first.golden_set)[0].labels.total_score == 80
    assert first.object_path.startswith("golden/objects/")
    with pytest.raises(NotFoundError):
        store.resolve("nope")
    with pytest.raises(NotFoundError):
        store.resolve("csat", 3)


def test_a_tampered_object_is_refused(tmp_path):
    store = GoldenStore(tmp_path)
    ref = store.register("csat", jsonl(row()), actor="ana", reason="initial").golden_set
    path = store.object_path(ref.content_hash)
    os.chmod(path, 0o644)
    path.write_text(path.read_text().replace("80", "81"))
    with pytest.raises(ValidationError, match="does not match"):
        store.load(ref)


def test_the_example_set_is_regenerated_byte_for_byte(tmp_path):
    out = tmp_path / "again.jsonl"
    subprocess.run([sys.executable, str(ROOT / "examples" / "golden" / "make_golden_set.py"),
                    "--out", str(out)], check=True, capture_output=True)
    assert out.read_bytes() == EXAMPLE.read_bytes()
    calls = parse_golden_lines(EXAMPLE.read_text().splitlines())
    assert len(calls) >= 300
    assert {c.tenant_segment for c in calls} == {"enterprise", "smb", "consumer"}
    tags = [t for c in calls for t in c.risk_tags]
    # enough critical calls that a 1 % false-negative gate can be decided (>= 100)
    assert sum(1 for c in calls if c.labels.critical_detections) >= 100
    assert {"policy-sensitive", "critical", "injection-attempt"} <= set(tags)
