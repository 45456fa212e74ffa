"""The production-like ``docker-compose.yml`` validates and wires the stack together.

Only ``docker-compose config`` is used, which parses, interpolates and validates the file
without talking to a Docker engine. The rendered YAML is checked textually (no YAML
dependency): ``config`` prints a normalised document with two-space indentation.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
SERVICES = {"kafka", "postgres", "relctl", "relctl-worker"}
DEPENDENCIES = {
    "relctl": {"kafka", "postgres"},
    "relctl-worker": {"relctl"},
}
RELCTL_ENV = {
    "RELCTL_DATABASE_URL": "postgresql://relctl:relctl@postgres:5432/relctl",
    "RELCTL_KAFKA_BOOTSTRAP": "kafka:9092",
    "RELCTL_DATA_DIR": "/data",
}


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip(
            "docker-compose not installed (Debian package docker-compose); .ci/run installs it"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    env.pop("RELCTL_PG_PASSWORD", None)  # check the documented default
    return subprocess.run(
        [exe, "-f", str(COMPOSE_FILE), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _items(text: str) -> list[str]:
    """The scalar items of a rendered YAML list block (``- value`` lines)."""
    return [
        line.strip()[2:].strip("'\"") for line in text.splitlines() if line.strip().startswith("- ")
    ]


def _children(text: str, indent: int) -> dict[str, str]:
    """Split a YAML mapping block into ``{key: body}`` for keys at exactly ``indent`` spaces."""
    out: dict[str, str] = {}
    key: str | None = None
    pattern = re.compile(rf"^ {{{indent}}}([^\s:#-][^:]*):(.*)$")
    for line in text.splitlines():
        match = pattern.match(line)
        if match:
            key = match.group(1).strip("'\"")
            out[key] = match.group(2).strip() + "\n"
        elif key is not None and (
            line.startswith(" " * (indent + 1)) or line.startswith(" " * indent + "- ")
        ):
            out[key] += line + "\n"
        elif line.strip():
            key = None
    return out


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    result = _compose("config")
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    top = _children(result.stdout, 0)
    assert "services" in top, result.stdout
    return _children(top["services"], 2)


def test_config_validates_and_lists_the_services() -> None:
    result = _compose("config", "--services")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == SERVICES


def test_every_service_is_rendered(rendered: dict[str, str]) -> None:
    assert set(rendered) == SERVICES


@pytest.mark.parametrize("service", sorted({dep for deps in DEPENDENCIES.values() for dep in deps}))
def test_dependencies_have_healthchecks(rendered: dict[str, str], service: str) -> None:
    healthcheck = _children(rendered[service], 4).get("healthcheck")
    assert healthcheck is not None, f"{service} has no healthcheck"
    assert "test:" in healthcheck


@pytest.mark.parametrize("service", sorted(DEPENDENCIES))
def test_depends_on_waits_for_healthy(rendered: dict[str, str], service: str) -> None:
    depends_on = _children(rendered[service], 4).get("depends_on")
    assert depends_on is not None, f"{service} has no depends_on"
    conditions = _children(depends_on, 6)
    assert set(conditions) == DEPENDENCIES[service]
    for dep, body in conditions.items():
        assert "condition: service_healthy" in body, f"{service} -> {dep}: {body}"


@pytest.mark.parametrize("service", ["relctl", "relctl-worker"])
def test_relctl_services_point_at_the_stack(rendered: dict[str, str], service: str) -> None:
    fields = _children(rendered[service], 4)
    environment = {k: v.strip() for k, v in _children(fields["environment"], 6).items()}
    for name, value in RELCTL_ENV.items():
        assert environment.get(name) == value, f"{service}: {name}={environment.get(name)!r}"
    assert "build:" in rendered[service]


def test_relctl_api_is_published_and_probed(rendered: dict[str, str]) -> None:
    fields = _children(rendered["relctl"], 4)
    assert "published: 8750" in fields["ports"], fields["ports"]
    assert "target: 8750" in fields["ports"], fields["ports"]
    assert "http://localhost:8750/readyz" in fields["healthcheck"]
    assert _items(fields["command"]) == [
        "relctl",
        "up",
        "--api-host",
        "0.0.0.0",  # noqa: S104 - the API must be reachable from outside its container
        "--api-port",
        "8750",
        "--data-dir",
        "/data",
    ]
    assert _items(_children(rendered["relctl-worker"], 4)["command"]) == ["relctl", "worker"]


def test_kafka_is_single_node_kraft_without_topic_auto_creation(rendered: dict[str, str]) -> None:
    fields = _children(rendered["kafka"], 4)
    environment = {
        k: v.strip().strip("'\"") for k, v in _children(fields["environment"], 6).items()
    }
    assert environment["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert environment["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert environment["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert "kafka-broker-api-versions.sh" in fields["healthcheck"]
