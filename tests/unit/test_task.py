"""Task: gapless release numbering, the default release and the single active rollout."""

from uuid import uuid4

import pytest
from relctl.domain.errors import ConflictError, NotFoundError, ValidationError
from relctl.domain.ids import KEY_PATTERN, check_key, task_id
from relctl.domain.task import Task

from .support import ACTOR, REASON, TASK


def task(releases: int = 3) -> Task:
    t = Task.open(TASK, ACTOR, REASON)
    for number in range(1, releases + 1):
        t.admit_release(number, ACTOR, REASON)
    t.collect_events()
    return t


def test_open() -> None:
    t = Task.open(TASK, ACTOR, REASON)
    assert t.id == task_id(TASK)
    assert (t.releases, t.default_release, t.active_rollout, t.latest_release) == (
        [], None, None, None)
    assert t.next_release_number() == 1


@pytest.mark.parametrize("number", [0, 1, 2, 5])
def test_only_the_next_number_is_admitted(number: int) -> None:
    t = task(releases=1)
    if number == 2:
        t.admit_release(number, ACTOR, REASON)
        assert t.releases == [1, 2]
        assert t.latest_release == 2
    else:
        with pytest.raises(ConflictError, match=f"v{number} is not the next version"):
            t.admit_release(number, ACTOR, REASON)
        assert t.collect_events() == []


def test_default_release() -> None:
    t = task()
    t.set_default(2, ACTOR, REASON)
    assert t.default_release == 2
    event = t.collect_events()[0]
    assert (event.number, event.previous) == (2, None)
    with pytest.raises(ConflictError, match="v2 is already the default"):
        t.set_default(2, ACTOR, REASON)
    with pytest.raises(NotFoundError, match="has no release v4"):
        t.set_default(4, ACTOR, REASON)
    assert t.collect_events() == []
    t.set_default(1, ACTOR, REASON)
    assert t.collect_events()[0].previous == 2


def test_one_active_rollout() -> None:
    t = task()
    t.set_default(1, ACTOR, REASON)
    first, second = uuid4(), uuid4()
    t.open_rollout(first, ACTOR, REASON)
    t.collect_events()
    with pytest.raises(ConflictError, match="only one rollout per task may be active"):
        t.open_rollout(second, ACTOR, REASON)
    with pytest.raises(ConflictError, match="complete or roll it back before setting"):
        t.set_default(3, ACTOR, REASON)
    with pytest.raises(ConflictError, match="is not the active rollout"):
        t.close_rollout(second, "RolledBack", None, ACTOR, REASON)
    assert t.collect_events() == []
    t.close_rollout(first, "RolledBack", None, ACTOR, REASON)
    assert (t.active_rollout, t.default_release) == (None, 1)
    t.open_rollout(second, ACTOR, REASON)
    t.close_rollout(second, "Completed", 3, ACTOR, REASON)
    assert (t.active_rollout, t.default_release, t.rollouts) == (None, 3, [first, second])


@pytest.mark.parametrize(("actor", "reason"), [("", REASON), (ACTOR, "")])
def test_task_commands_need_attribution(actor: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=r"actor|reason"):
        Task.open(TASK, actor, reason)
    t = task()
    rollout = uuid4()
    for command in (
        lambda: t.admit_release(4, actor, reason),
        lambda: t.set_default(1, actor, reason),
        lambda: t.open_rollout(rollout, actor, reason),
    ):
        with pytest.raises(ValidationError, match=r"actor|reason"):
            command()
    assert t.collect_events() == []


@pytest.mark.parametrize("key", ["a", "csat-scoring", "qa.v2", "0_x", "a" * 63])
def test_valid_keys(key: str) -> None:
    assert check_key("task", key) == key
    assert KEY_PATTERN.match(key)


@pytest.mark.parametrize("key", ["", "A", "-a", ".a", "a b", "a/b", "a" * 64, None, 5])
def test_invalid_keys(key: object) -> None:
    with pytest.raises(ValidationError, match="invalid task key"):
        check_key("task", key)  # type: ignore[arg-type]
