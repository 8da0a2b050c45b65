"""Write docs/cli.md: every ``dogbreed`` command's ``--help``, generated from the parser itself.

    .venv/bin/python scripts/cli_reference.py          # rewrite docs/cli.md
    .venv/bin/python scripts/cli_reference.py --check  # exit 1 if docs/cli.md is stale

tests/launch/test_cli_reference.py runs ``--check``, so an option, a default or a help text
cannot change without its reference.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
WIDTH = (
    "100"  # argparse wraps help text at $COLUMNS: fixed, so the page does not depend on a terminal
)


def help_text(argv: list[str]) -> str:
    from dogbreed.launch.cli.main import build_parser  # noqa: PLC0415 (after COLUMNS is set)

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return out.getvalue().rstrip() + "\n"


def reference() -> str:
    from dogbreed.launch.cli.main import COMMANDS  # noqa: PLC0415

    parts = [
        "# `dogbreed` command reference\n",
        "Generated from the parser by `scripts/cli_reference.py`; do not edit by hand.\n",
        f"```\n{help_text([])}```\n",
    ]
    for name in COMMANDS:
        parts.append(f"## `dogbreed {name}`\n\n```\n{help_text([name])}```\n")
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/cli.md is stale")
    args = parser.parse_args()
    os.environ["COLUMNS"] = WIDTH
    text = reference()
    if args.check:
        if not DOC.is_file() or DOC.read_text() != text:
            print(f"{DOC} is stale: run scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
