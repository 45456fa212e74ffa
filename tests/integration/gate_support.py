"""Shared set-up for gate-runner tests: the example golden set, releases and endpoint config."""

from pathlib import Path

from relctl.adapters.gate_runner import EndpointConfig, ReleaseUnderTest
from relctl.domain.gates import SCORECARD_SCHEMA, Arm, ModelPricing
from relctl.domain.golden import GoldenCall, parse_golden_lines

GOLDEN_PATH = Path(__file__).resolve().parents[2] / "examples" / "golden" / "csat-golden.jsonl"
PRICE = ModelPricing(input_per_million=2.5, output_per_million=10.0)


def golden_calls() -> list[GoldenCall]:
    return parse_golden_lines(GOLDEN_PATH.read_text("utf-8").splitlines())


def release(model: str, arm: Arm = Arm.CANDIDATE, release_id: str | None = None,
            ) -> ReleaseUnderTest:
    return ReleaseUnderTest(
        release_id=release_id or f"rel-{model}", arm=arm,
        prompt_template="You are a QA reviewer. Score the call against the scorecard.",
        prompt_version="csat-prompt@v4", model=model, temperature=0.0, seed=42,
        output_schema=SCORECARD_SCHEMA, blueprint_version_id="qa-default@v3")


def config(url: str, *models: str, **overrides: object) -> EndpointConfig:
    values: dict[str, object] = {
        "base_url": url, "api_key": "test-key", "pricing": dict.fromkeys(models, PRICE),
        "concurrency": 16, "backoff_initial_s": 0.01, "backoff_max_s": 0.05,
    }
    values.update(overrides)
    return EndpointConfig.model_validate(values)


def planted_names(transcript: str) -> list[str]:
    """The example set's planted names (after 'my name is' / 'this is') and e-mail addresses."""
    import re

    found = re.findall(r"(?:my name is|this is) ([A-Z][a-z]+(?: [A-Z][a-z]+)?)", transcript)
    found += re.findall(r"[\w.]+@example\.com", transcript)
    return found
