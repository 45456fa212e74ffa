"""Blueprint: stages of behaviours with weights, compiled into immutable numbered versions.

Weights must sum to exactly 100, critical rules need double confirmation,
and a compiled version is never mutated — publishing always creates a new number, and versions
coexist so evaluations can reference exactly the one they ran.
"""

import hashlib
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, InvalidOperation, localcontext
from typing import Annotated, Any

import orjson
from eventsourcing.domain import event
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, StrictBool
from relctl.domain.base import (
    MAX_NAME_LENGTH,
    ControlAggregate,
    Name,
    _text_ok,
    check_attribution,
    check_text,
)
from relctl.domain.errors import ConflictError, NotFoundError, ValidationError
from relctl.domain.ids import blueprint_id, check_key

REQUIRED_CONFIRMATIONS = 2
MAX_WEIGHT = 100
WEIGHT_DECIMALS = 6
MAX_STAGES = 50
MAX_BEHAVIOURS = 100
MAX_RULE_LENGTH = 2_000
WEIGHT_PATTERN = r"^[0-9]{1,3}(\.[0-9]{1,6})?$"

Weight = Annotated[
    Annotated[int, Strict(), Field(ge=0, le=MAX_WEIGHT)]
    | Annotated[float, Strict(), Field(ge=0, le=MAX_WEIGHT, allow_inf_nan=False)]
    | Annotated[str, Field(pattern=WEIGHT_PATTERN)],
    Field(description=f"0 to {MAX_WEIGHT}, at most {WEIGHT_DECIMALS} decimal places; "
                      "weights in a list sum to exactly 100")]


class BehaviourSpec(BaseModel):
    """One scored behaviour of a stage; a critical one needs two confirmations to publish."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    weight: Weight
    critical: StrictBool = False
    required: StrictBool = False
    rule: Annotated[str, Field(max_length=MAX_RULE_LENGTH), AfterValidator(_text_ok)] = ""


class StageSpec(BaseModel):
    """A stage of a blueprint: its weight and its behaviours."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    weight: Weight
    behaviours: Annotated[list[BehaviourSpec], Field(min_length=1, max_length=MAX_BEHAVIOURS)]


Stages = Annotated[list[StageSpec], Field(min_length=1, max_length=MAX_STAGES)]

# Sums of stored weights are taken in a context wide enough for any decimal ever stored, so a
# blueprint stored before weights were bounded still reads (and says why it cannot publish).
_WIDE = Context(prec=60, Emax=MAX_EMAX, Emin=MIN_EMIN)


def _weight(value: Any, where: str) -> Decimal:
    if isinstance(value, bool):
        raise ValidationError(f"weight of {where} must be a number")
    try:
        weight = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValidationError(f"weight of {where} must be a number, got {value!r}") from exc
    if not weight.is_finite() or not 0 <= weight <= MAX_WEIGHT:
        raise ValidationError(f"weight of {where} must be a number from 0 to {MAX_WEIGHT}")
    exponent = weight.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -WEIGHT_DECIMALS:
        raise ValidationError(
            f"weight of {where} has more than {WEIGHT_DECIMALS} decimal places")
    return weight


def normalize_stages(stages: Any) -> list[dict[str, Any]]:
    """Check the shape of a stage list and return a canonical copy."""
    if not isinstance(stages, list) or not stages:
        raise ValidationError("a blueprint needs a non-empty list of stages")
    if len(stages) > MAX_STAGES:
        raise ValidationError(f"a blueprint has at most {MAX_STAGES} stages")
    seen: set[str] = set()
    result = []
    for stage in stages:
        if not isinstance(stage, dict) or not isinstance(stage.get("name"), str):
            raise ValidationError("each stage needs a name, a weight and a list of behaviours")
        name = check_text(stage["name"], "stage name")
        if name in seen:
            raise ValidationError(f"stage {name!r} appears twice")
        seen.add(name)
        behaviours = stage.get("behaviours")
        if not isinstance(behaviours, list) or not behaviours:
            raise ValidationError(f"stage {name!r} needs at least one behaviour")
        if len(behaviours) > MAX_BEHAVIOURS:
            raise ValidationError(f"stage {name!r} has more than {MAX_BEHAVIOURS} behaviours")
        names: set[str] = set()
        normalized = []
        for behaviour in behaviours:
            if not isinstance(behaviour, dict) or not isinstance(behaviour.get("name"), str):
                raise ValidationError(f"each behaviour of stage {name!r} needs a name")
            check_text(behaviour["name"], "behaviour name", MAX_NAME_LENGTH)
            check_text(str(behaviour.get("rule", "")), "rule", MAX_RULE_LENGTH, multiline=True)
            if behaviour["name"] in names:
                raise ValidationError(f"behaviour {behaviour['name']!r} appears twice in {name!r}")
            names.add(behaviour["name"])
            normalized.append({
                "name": behaviour["name"],
                "weight": str(_weight(behaviour.get("weight"), f"{name}/{behaviour['name']}")),
                "critical": bool(behaviour.get("critical", False)),
                "required": bool(behaviour.get("required", False)),
                "rule": str(behaviour.get("rule", "")),
            })
        result.append({
            "name": name,
            "weight": str(_weight(stage.get("weight"), f"stage {name!r}")),
            "behaviours": normalized,
        })
    return result


def weight_problems(stages: list[dict[str, Any]]) -> list[str]:
    """Every way the weights fail to sum to exactly 100, phrased so a person can fix it."""
    with localcontext(_WIDE):
        return _weight_problems(stages)


def _weight_problems(stages: list[dict[str, Any]]) -> list[str]:
    problems = []
    total = sum(Decimal(stage["weight"]) for stage in stages)
    if total != 100:
        problems.append(f"stage weights sum to {total}, not 100 (adjust by {100 - total})")
    for stage in stages:
        inner = sum(Decimal(b["weight"]) for b in stage["behaviours"])
        if inner != 100:
            problems.append(
                f"behaviour weights in stage {stage['name']!r} sum to {inner}, not 100 "
                f"(adjust by {100 - inner})"
            )
    return problems


def rule_fingerprint(behaviour: dict[str, Any]) -> str:
    """Identifies a critical rule's content, so editing it voids earlier confirmations."""
    return hashlib.sha256(orjson.dumps(behaviour, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def compiled_hash(stages: list[dict[str, Any]]) -> str:
    return "sha256:" + hashlib.sha256(orjson.dumps(stages, option=orjson.OPT_SORT_KEYS)).hexdigest()


class Blueprint(ControlAggregate):
    """A named blueprint: an editable draft plus its published, immutable versions."""

    kind = "blueprint"

    @staticmethod
    def create_id(name: str, **_: Any) -> Any:
        return blueprint_id(name)

    @classmethod
    def create(cls, name: str, stages: Any, actor: str, reason: str) -> "Blueprint":
        check_key("blueprint", name)
        check_attribution(actor, reason)
        return cls(name=name, stages=normalize_stages(stages), actor=actor, reason=reason)

    @event("Created")
    def __init__(self, name: str, stages: list[dict[str, Any]], actor: str, reason: str) -> None:
        self.name = name
        self.draft = stages
        self.confirmations: dict[str, list[str]] = {}
        self.versions: list[dict[str, Any]] = []

    def update_draft(self, stages: Any, actor: str, reason: str) -> None:
        check_attribution(actor, reason)
        self._draft_updated(stages=normalize_stages(stages), actor=actor, reason=reason)

    @event("DraftUpdated")
    def _draft_updated(self, stages: list[dict[str, Any]], actor: str, reason: str) -> None:
        self.draft = stages
        live = {self._key(s, b) for s, b in self._critical()}
        self.confirmations = {k: v for k, v in self.confirmations.items() if k in live}

    def _critical(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return [(s, b) for s in self.draft for b in s["behaviours"] if b["critical"]]

    @staticmethod
    def _key(stage: dict[str, Any], behaviour: dict[str, Any]) -> str:
        return f"{stage['name']}/{behaviour['name']}#{rule_fingerprint(behaviour)}"

    def confirm_critical(self, stage: str, behaviour: str, actor: str, reason: str) -> None:
        """Record one person's confirmation of a critical rule as it stands in the draft."""
        check_attribution(actor, reason)
        for s, b in self._critical():
            if s["name"] == stage and b["name"] == behaviour:
                key = self._key(s, b)
                if actor in self.confirmations.get(key, []):
                    raise ConflictError(
                        f"{actor} already confirmed {stage}/{behaviour}; a second, different "
                        "person must confirm it"
                    )
                self._critical_confirmed(rule=key, actor=actor, reason=reason)
                return
        raise NotFoundError(
            f"no critical behaviour {stage}/{behaviour} in the draft of {self.name}")

    @event("CriticalRuleConfirmed")
    def _critical_confirmed(self, rule: str, actor: str, reason: str) -> None:
        self.confirmations.setdefault(rule, []).append(actor)

    def publish_problems(self) -> list[str]:
        problems = weight_problems(self.draft)
        for s, b in self._critical():
            got = len(set(self.confirmations.get(self._key(s, b), [])))
            if got < REQUIRED_CONFIRMATIONS:
                problems.append(
                    f"critical rule {s['name']}/{b['name']} has {got} confirmation(s); it needs "
                    f"{REQUIRED_CONFIRMATIONS} by distinct people (relctl blueprint confirm)"
                )
        return problems

    def publish(self, actor: str, reason: str) -> dict[str, Any]:
        """Compile the draft into the next immutable version."""
        check_attribution(actor, reason)
        problems = self.publish_problems()
        if problems:
            raise ValidationError(f"cannot publish {self.name}: " + "; ".join(problems))
        digest = compiled_hash(self.draft)
        if self.versions and self.versions[-1]["compiled_hash"] == digest:
            raise ConflictError(
                f"{self.name} draft is unchanged since {self.versions[-1]['id']}; "
                "nothing to publish"
            )
        number = len(self.versions) + 1
        self._published(
            number=number, version_id=f"{self.name}@v{number}", stages=self.draft,
            compiled_hash=digest, actor=actor, reason=reason,
        )
        return self.versions[-1]

    @event("Published")
    def _published(
        self, number: int, version_id: str, stages: list[dict[str, Any]], compiled_hash: str,
        actor: str, reason: str,
    ) -> None:
        self.versions.append({
            "number": number, "id": version_id, "stages": stages,
            "compiled_hash": compiled_hash, "published_by": actor,
        })

    def compiled(self, version_id: str) -> dict[str, Any]:
        for version in self.versions:
            if version["id"] == version_id:
                return version
        raise NotFoundError(f"blueprint version {version_id} does not exist")

    def summary(self) -> dict[str, Any]:
        return {
            "id": str(self.id), "kind": self.kind, "name": self.name, "draft": self.draft,
            "confirmations": self.confirmations, "versions": self.versions,
            "publishable": not self.publish_problems(), "problems": self.publish_problems(),
            "aggregate_version": self.version,
        }


def scoring_signature(compiled: dict[str, Any] | None) -> Any:
    """Weights and critical rules: what a breaking blueprint change is judged on."""
    if compiled is None:
        return None
    return [
        (s["name"], s["weight"], [(b["name"], b["weight"], b["critical"], b["rule"] if b["critical"]
                                   else None) for b in s["behaviours"]])
        for s in compiled["stages"]
    ]
