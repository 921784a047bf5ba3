"""Copy the generated benchmark tables into README.md, so the README shows measured, not typed, figures.

    python benchmarks/update_readme.py [--check]

Each `<!-- results:NAME -->` ... `<!-- /results:NAME -->` block of README.md is replaced by the content of
benchmarks/results/NAME.md. With --check nothing is written; exit 1 if the README is out of date.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from benchmarks.common import REPO, RESULTS, parser
from deepisp.atomic import atomic_path

BLOCK = re.compile(r"(<!-- results:([\w-]+) -->\n)(.*?)(<!-- /results:\2 -->)", re.DOTALL)


def render(readme: str, results: Path) -> str:
    def fill(m: re.Match) -> str:
        table = results / f"{m.group(2)}.md"
        if not table.is_file():
            raise SystemExit(f"error: README asks for {table}, which does not exist: run the benchmark that writes it")
        return m.group(1) + table.read_text() + m.group(4)

    return BLOCK.sub(fill, readme)


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--check", action="store_true", help="only report whether README.md is up to date")
    args = ap.parse_args()
    readme = REPO / "README.md"
    old = readme.read_text()
    new = render(old, RESULTS)
    if args.check:
        print("README tables are up to date" if new == old else "README tables are out of date: run benchmarks/update_readme.py")
        return int(new != old)
    with atomic_path(readme) as tmp:
        tmp.write_text(new)
    print(f"updated {len(BLOCK.findall(old))} table(s) in {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
