"""CLI pieces of the read-side features: the reset plan's text, ``alerts`` and
``release notes``. Everything goes through the HTTP API, so roles and tokens apply."""

from typing import Any


def _answer(answer: dict[str, Any] | None) -> str:
    if answer is None:
        return "no release in force"
    return f"v{answer['release']} ({answer['source']})"


def reset_plan_text(plan: dict[str, Any]) -> str:
    """A reset plan (``GET /v1/tenants/{key}/reset-plan``) for people."""
    scope = f" for {plan['task']}" if plan.get("task") else ""
    lines = [f"dry run: reset {plan['tenant']} to defaults{scope}; nothing was recorded"]
    if not plan["tasks"]:
        lines.append(f"  nothing to change: {plan.get('note') or 'it follows the defaults'}")
    for entry in plan["tasks"]:
        cleared = [f"{o['kind']} override (by {o['by']}: {o['reason']})"
                   for o in entry["overrides"]]
        pin = entry.get("pin")
        if pin:
            state = "active" if pin["active"] else "expired"
            cleared.append(f"pin to v{pin['release']} until {pin['expires_at']}, {state} "
                           f"(by {pin['by']}: {pin['reason']})")
        lines.append(f"  {entry['task']}: clears {'; '.join(cleared)}")
        change = "changes" if entry["release_changes"] else "stays"
        lines.append(f"    resolves {_answer(entry['before'])} -> {_answer(entry['after'])} "
                     f"({change})")
    return "\n".join(lines)
