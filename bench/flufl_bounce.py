"""Does Mailman's flufl.bounce find failed recipients that our reader misses, where a bounce
carries no DSN part (plain-text formats)? Measured on tests/fixtures/bounces.

flufl.bounce is not a dependency (it added nothing; see docs/bounces.md). To measure again,
install it into a throw-away venv and point this script at it:

    python3 -m venv /tmp/flufl && /tmp/flufl/bin/pip install flufl.bounce==6.0.0
    .venv/bin/python bench/flufl_bounce.py --site /tmp/flufl/lib/python3.11/site-packages
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "fixtures" / "bounces"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, help="site-packages holding flufl.bounce")
    args = parser.parse_args()
    if args.site:
        sys.path.append(str(args.site))
    from flufl.bounce import all_failures

    from rollout.bounces import Bounce, read_message
    from rollout.bounces.mime import STATUS_TYPES, parse, walk
    from rollout.bounces.reader import _dsn_blocks

    expected = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
    files = failed = ours = theirs = only_theirs = 0
    for name, entry in sorted(expected.items()):
        data = (CORPUS / name).read_bytes()
        msg = parse(data)
        if any(p.get_content_type() in STATUS_TYPES for p in walk(msg)) or _dsn_blocks(msg):
            continue  # a DSN: both read it; the question is the plain-text rest
        wanted = [r["recipient"] for r in entry["recipients"] if r["expect"] != "none"]
        if not wanted:
            continue
        files += 1
        found = {
            a.lower()
            for n in read_message(name, data)
            if isinstance(n, Bounce)
            for a in n.addresses
        }
        try:
            permanent, temporary = all_failures(msg)
            flufl = {a.decode("utf-8", "replace").lower() for a in permanent | temporary}
        except Exception:  # a third-party detector on odd input: counts as nothing found
            flufl = set()
        for address in wanted:
            failed += 1
            ours += address in found
            theirs += address in flufl
            if address in flufl and address not in found:
                only_theirs += 1
                print(f"only flufl.bounce: {name} {address}")
    print(f"messages without a DSN part: {files}, failed recipients in them: {failed}")
    print(f"found by rollout.bounces: {ours} ({ours / failed:.1%})")
    print(f"found by flufl.bounce:    {theirs} ({theirs / failed:.1%})")
    print(f"flufl_bounce_adds: {only_theirs} recipients")


if __name__ == "__main__":
    main()
