"""The console's assets as shipped: present in the package, no inline script or style (the
Content-Security-Policy forbids both), and no HTML built from strings in its script."""

import re
from importlib import resources

from relctl.entrypoints.console.router import ASSETS, CSP, sse

STATIC = resources.files("relctl.entrypoints.console").joinpath("static")


def text(name: str) -> str:
    return STATIC.joinpath(name).read_text(encoding="utf-8")


def test_every_served_asset_ships_in_the_package() -> None:
    for name in [*ASSETS, "index.html"]:
        assert STATIC.joinpath(name).is_file(), name


def test_the_page_has_no_inline_script_style_or_handlers() -> None:
    page = text("index.html")
    scripts = re.findall(r"<script\b[^>]*>", page)
    assert scripts and all("src=" in tag for tag in scripts)
    assert not re.search(r"<script\b[^>]*>\s*[^<\s]", page), "inline script"
    assert "<style" not in page and not re.search(r"\sstyle=", page)
    assert not re.search(r"\son[a-z]+=", page), "inline event handlers"
    assert "unsafe-inline" not in CSP and "unsafe-eval" not in CSP


def test_the_script_never_parses_strings_as_html_or_code() -> None:
    script = text("console.js")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "setTimeout(\"", "srcdoc"):
        assert sink not in script, sink
    assert "localStorage" not in script, "the token lives in sessionStorage only"
    assert "EventSource" not in script, "EventSource cannot send the token in a header"


def test_a_server_sent_event_is_one_json_line() -> None:
    assert sse("rollout", {"reason": "two\nlines"}) == (
        b'event: rollout\ndata: {"reason": "two\\nlines"}\n\n')
