"""PII redaction before anything leaves for a model, a log or an event.

Chosen for working offline here: ``phonenumbers`` (Google's libphonenumber) finds phone numbers
in free text; cards are digit runs that pass the Luhn check; e-mails, account numbers (IBAN and
"account ... <digits>"), street addresses and person names are pattern recognisers. presidio-
analyzer's default engine needs a spaCy model that cannot be downloaded here, so it is not used.
Names are found by context ("my name is", "this is", titles, "speaking with", agent/customer
introductions), and without context by a shipped list (``known_names.txt.gz``, built by
``scripts/make_known_names.py`` from the public-domain US Census 1990 first and last names): a
capitalised word on the list is a name ("Okafor called yesterday"), unless it is also a common
English word (Will, May, Smith), which counts only next to an unambiguous name.
"""

import gzip
import re
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path

import phonenumbers


class PiiKind(StrEnum):
    EMAIL = "EMAIL"
    CARD = "CARD"
    ACCOUNT = "ACCOUNT"
    PHONE = "PHONE"
    ADDRESS = "ADDRESS"
    NAME = "NAME"


EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
CARD_RE = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
ACCOUNT_RE = re.compile(
    r"(?i)\b(?:account|acct|member|policy|customer)\s*(?:number|no\.?|num|#|id)?\s*(?:is|:)?\s*"
    r"(?P<value>[A-Z0-9][A-Z0-9-]{4,}\d)\b")
STREET_TYPES = (
    "Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Way|Place|Pl|"
    "Terrace|Close|Crescent|Square|Sq|Parkway|Pkwy|Highway|Hwy")
ADDRESS_RE = re.compile(
    rf"\b\d{{1,5}}[A-Za-z]?\s+(?:[A-Z][a-z]+\s+){{1,3}}(?:{STREET_TYPES})\b\.?"
    r"(?:,?\s+(?:Apt|Suite|Unit)\.?\s*\w+)?")
NAME_WORD = r"[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?"
TITLE = r"\b(?:Mr|Mrs|Ms|Miss|Dr|Mx|Prof)\.?\s+"
NAME_RE = re.compile(
    rf"(?:(?i:my name is|my name's|name is|this is|i am|i'm|speaking with|you're speaking to|"
    rf"talking to|ask for|spell that|surname is|last name is|first name is)\s+(?:{TITLE})?|"
    rf"{TITLE})"
    rf"(?P<value>{NAME_WORD}(?:\s+{NAME_WORD})?)")
NOT_NAMES = frozenset({
    "Calling", "Sorry", "Happy", "Here", "Not", "Just", "Really", "Very", "So", "Afraid", "Going",
    "Glad", "Sure", "Still", "Trying", "Looking", "Hoping", "The", "A", "An", "It", "That",
})
KNOWN_NAMES_PATH = Path(__file__).with_name("known_names.txt.gz")
CAPITALISED_RUN_RE = re.compile(rf"\b{NAME_WORD}(?:[ \t]+{NAME_WORD}){{0,3}}\b")
PHONE_REGIONS = ("US", "GB", "DE")
PHONE_CANDIDATE_RE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,5}\)[\s.-]?)?\d[\d\s.-]{4,16}\d(?![\w-])")


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


@dataclass
class Redaction:
    text: str
    counts: Counter[PiiKind] = field(default_factory=Counter)

    def as_counts(self) -> dict[str, int]:
        return {str(kind): n for kind, n in sorted(self.counts.items())}


@cache
def known_names() -> dict[str, bool]:
    """Name -> unambiguous (False: also a common English word). Loaded once per process."""
    names: dict[str, bool] = {}
    for line in gzip.decompress(KNOWN_NAMES_PATH.read_bytes()).decode().splitlines():
        name, _, kind = line.partition("\t")
        names[name] = kind == "k"
    return names


class Redactor:
    """Replaces each PII span with ``[KIND]``; returns the text and how much was replaced.

    ``bare_names``: also redact names that stand without context, from the shipped list."""

    def __init__(self, bare_names: bool = True) -> None:
        self.names = known_names() if bare_names else None

    def redact(self, text: str) -> Redaction:
        result = Redaction(text)
        self._sub(result, EMAIL_RE, PiiKind.EMAIL)
        self._sub(result, IBAN_RE, PiiKind.ACCOUNT)
        self._cards(result)
        self._sub(result, ACCOUNT_RE, PiiKind.ACCOUNT, group="value")
        self._sub(result, ADDRESS_RE, PiiKind.ADDRESS)
        self._phones(result)
        self._names(result)
        if self.names is not None:
            self._bare_names(result, self.names)
        return result

    @staticmethod
    def _sub(result: Redaction, pattern: re.Pattern[str], kind: PiiKind,
             group: str | None = None) -> None:
        def replace(match: re.Match[str]) -> str:
            result.counts[kind] += 1
            if group is None:
                return f"[{kind}]"
            start, end = match.span(group)
            whole = match.group(0)
            offset = match.start()
            return whole[: start - offset] + f"[{kind}]" + whole[end - offset:]

        result.text = pattern.sub(replace, result.text)

    @staticmethod
    def _cards(result: Redaction) -> None:
        def replace(match: re.Match[str]) -> str:
            digits = re.sub(r"\D", "", match.group(0))
            if 13 <= len(digits) <= 19 and luhn_ok(digits):
                result.counts[PiiKind.CARD] += 1
                return f"[{PiiKind.CARD}]"
            return match.group(0)

        result.text = CARD_RE.sub(replace, result.text)

    @staticmethod
    def _phones(result: Redaction) -> None:
        """Digit runs shaped like phone numbers, kept where libphonenumber calls them valid in
        one of ``PHONE_REGIONS`` (international ``+`` numbers in any region). Checking
        candidates is several times faster than libphonenumber's own text matcher per region."""
        def replace(match: re.Match[str]) -> str:
            candidate = match.group(0)
            digits = sum(ch.isdigit() for ch in candidate)
            if candidate.isdigit() and digits < 10:
                return candidate  # a bare short digit run is an order number or a date
            for region in PHONE_REGIONS:
                try:
                    number = phonenumbers.parse(candidate, region)
                except phonenumbers.NumberParseException:
                    continue
                if phonenumbers.is_valid_number(number):
                    result.counts[PiiKind.PHONE] += 1
                    return f"[{PiiKind.PHONE}]"
            return candidate

        result.text = PHONE_CANDIDATE_RE.sub(replace, result.text)

    @staticmethod
    def _names(result: Redaction) -> None:
        def replace(match: re.Match[str]) -> str:
            value = match.group("value")
            words = value.split()
            if words[0] in NOT_NAMES:
                return match.group(0)
            start, end = match.span("value")
            offset = match.start()
            result.counts[PiiKind.NAME] += 1
            whole = match.group(0)
            return whole[: start - offset] + f"[{PiiKind.NAME}]" + whole[end - offset:]

        result.text = NAME_RE.sub(replace, result.text)

    @staticmethod
    def _bare_names(result: Redaction, names: dict[str, bool]) -> None:
        """Runs of capitalised words: each word on the name list is a name if unambiguous, or
        if it is next to one (Hannah Walsh); adjacent name words become one ``[NAME]``."""
        def replace(match: re.Match[str]) -> str:
            words = match.group(0).split()
            known = [names.get(word) for word in words]
            if True not in known:
                return match.group(0)
            hit = [k is True or (k is False and (
                (i > 0 and known[i - 1] is True) or (i + 1 < len(words) and known[i + 1] is True)))
                for i, k in enumerate(known)]
            out: list[str] = []
            for word, is_name in zip(words, hit, strict=True):
                if not is_name:
                    out.append(word)
                elif not out or out[-1] != f"[{PiiKind.NAME}]":
                    result.counts[PiiKind.NAME] += 1
                    out.append(f"[{PiiKind.NAME}]")
            return " ".join(out)

        result.text = CAPITALISED_RUN_RE.sub(replace, result.text)
