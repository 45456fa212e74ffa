"""Decoding CloudEvents batches of evaluations: relctl's fast path vs the CloudEvents SDK.

Run: .venv/bin/python -m bench.bench_cloudevents [--records 100] [--batches 300] [--repeat 5]

Both paths take the same Kafka record values (``application/cloudevents-batch+json``, as the
producer helper sends them) and return validated EvaluationRecords:

1. fast path: ``relctl.adapters.ingest.decode`` (orjson parses the batch once, the envelope
   attributes are checked by hand, the records validated as one list by pydantic-core);
2. SDK: the same batch parsed once, each element read by the SDK as a v1 CloudEvent
   (``cloudevents.core.formats.json.JSONFormat.read``: attribute validation, time parsing),
   its type checked, its data validated as one list by pydantic-core, as in the fast path.

Two more figures, for scale: control events through the Kafka binding (encode + decode of
one event), encoded by the SDK-built ``to_kafka`` and by the former hand-written encoder,
decoded by ``from_kafka`` in both.
Prints evaluations per second for each (best of --repeat runs).
"""

import argparse
import time
from collections.abc import Callable
from typing import Any

import orjson
from cloudevents.core.formats.json import JSONFormat
from pydantic import TypeAdapter
from relctl.adapters import cloudevents, ingest
from relctl.domain.evaluation import EVALUATION_TYPE, EvaluationRecord

from bench.builders import evaluation, new_app, released_task

RECORDS = TypeAdapter(list[EvaluationRecord])
SDK_FORMAT = JSONFormat()
HEADERS = {"content-type": ingest.BATCH}


def batches(records: int, count: int) -> list[bytes]:
    values = []
    for b in range(count):
        group = [EvaluationRecord.from_mapping(evaluation(call_id=f"c{b}-{i}"))
                 for i in range(records)]
        values.append(ingest.batch_to_kafka(group)[1])
    return values


def fast_path(value: bytes) -> list[EvaluationRecord]:
    decoded = ingest.decode(value, HEADERS)
    assert not decoded.rejected
    return decoded.records


def sdk_path(value: bytes) -> list[EvaluationRecord]:
    data: list[Any] = []
    for item in orjson.loads(value):
        event = SDK_FORMAT.read(None, orjson.dumps(item))
        if event.get_type() != EVALUATION_TYPE:
            raise ValueError(f"unsupported type {event.get_type()}")
        data.append(event.get_data())
    records: list[EvaluationRecord] = RECORDS.validate_json(orjson.dumps(data))
    return records


def best_rate(decode: Callable[[bytes], list[EvaluationRecord]], values: list[bytes],
              repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        count = sum(len(decode(value)) for value in values)
        best = max(best, count / (time.perf_counter() - started))
    return best


def handwritten_to_kafka(event: Any, sequence: int) -> tuple[bytes, bytes, list[Any]]:
    """The control encoding before the SDK: relctl's own ce_* headers and orjson."""
    env = cloudevents.envelope(event, sequence)
    attributes = {k: v for k, v in env.items()
                  if k not in ("specversion", "data", "datacontenttype")}
    return (env["subject"].encode(), cloudevents.dumps(env["data"]),
            cloudevents.binary_headers(**attributes))


def control_rate(repeat: int, encode: Callable[[Any, int], tuple[Any, bytes, Any]]) -> float:
    app = new_app()
    released_task(app)
    events = [(app.mapper.to_domain_event(n), n.id)
              for n in app.recorder.select_notifications(start=1, limit=1000)]
    best = 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(50):
            for event, sequence in events:
                _, value, headers = encode(event, sequence)
                cloudevents.from_kafka(headers, value)
        best = max(best, 50 * len(events) / (time.perf_counter() - started))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100, help="evaluations per batch")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    values = batches(args.records, args.batches)
    assert fast_path(values[0]) == sdk_path(values[0]), "both paths decode the same records"
    fast = best_rate(fast_path, values, args.repeat)
    sdk = best_rate(sdk_path, values, args.repeat)
    total = args.records * args.batches
    print(f"{total} evaluations in {args.batches} batches of {args.records}, "
          f"best of {args.repeat}:")
    print(f"  fast path (orjson + pydantic-core): {fast:,.0f} evaluations/s")
    print(f"  CloudEvents SDK (JSONFormat.read):  {sdk:,.0f} evaluations/s "
          f"({fast / sdk:.1f}x slower)" if sdk < fast else
          f"  CloudEvents SDK (JSONFormat.read):  {sdk:,.0f} evaluations/s (faster)")
    sdk_control = control_rate(args.repeat, cloudevents.to_kafka)
    own_control = control_rate(args.repeat, handwritten_to_kafka)
    print(f"  control events, SDK to_kafka + from_kafka:         {sdk_control:,.0f} events/s")
    print(f"  control events, hand-written encode + from_kafka:  {own_control:,.0f} events/s")


if __name__ == "__main__":
    main()
