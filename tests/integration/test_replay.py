"""``relctl replay``: rebuild read models aside from the store, compare with the live ones."""

import random

import pytest
from relctl.domain.read_models import ProjectionName
from relctl.entrypoints.cli_read import read_app
from relctl.infra.bootstrap import Runtime
from relctl.projections.runner import ProjectorSet, replay
from typer.testing import CliRunner

from tests.integration.read_support import random_commands, seed_tasks

pytestmark = pytest.mark.integration


def _live(runtime: Runtime, batch_size: int = 23) -> ProjectorSet:
    settings = runtime.settings
    assert settings.database_url
    projectors = ProjectorSet(runtime.app, settings.database_url, settings.database_schema,
                              batch_size=batch_size).open()
    seed_tasks(runtime.app)
    random_commands(runtime.app, random.Random(7), 80)
    projectors.catch_up()
    return projectors


def test_a_replay_equals_the_live_views_and_leaves_them_alone(runtime: Runtime) -> None:
    settings = runtime.settings
    assert settings.database_url
    live = _live(runtime)
    try:
        before = live.content_hash()
        report = replay(runtime.app, settings.database_url, settings.database_schema)
        assert report.identical and report.live == report.rebuilt
        assert report.position == live.position() == runtime.app.recorder.max_notification_id()
        assert report.events == report.position and report.events_per_second > 0
        assert set(report.views) == set(ProjectionName)
        assert live.content_hash() == before
    finally:
        live.close()


def test_a_replay_stops_at_the_live_position_while_the_store_moves_on(runtime: Runtime) -> None:
    settings = runtime.settings
    assert settings.database_url
    live = _live(runtime)
    try:
        position = live.position()
        runtime.app.register_tenant("late", "Late", "general", actor="ops", reason="after")
        report = replay(runtime.app, settings.database_url, settings.database_schema,
                        [ProjectionName.RESOLUTION])
        assert (report.identical, report.position) == (True, position)
    finally:
        live.close()


def test_a_tampered_live_view_differs_and_the_cli_exits_1(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = runtime.settings
    assert settings.database_url
    live = _live(runtime)
    live.close()
    monkeypatch.setenv("RELCTL_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELCTL_DATABASE_SCHEMA", settings.database_schema)
    clean = CliRunner().invoke(read_app, ["replay", "audit"])
    assert clean.exit_code == 0, clean.output
    assert "audit: identical to the live view" in clean.output and "events/s" in clean.output
    runtime.db.execute("UPDATE relctl_rm_resolution SET etag = 'forged' WHERE ctid = "
                       "(SELECT ctid FROM relctl_rm_resolution LIMIT 1)")
    tampered = CliRunner().invoke(read_app, ["replay"])
    assert tampered.exit_code == 1, tampered.output
    assert "resolution: DIFFERS from the live view" in tampered.output
    assert "audit: identical to the live view" in tampered.output
