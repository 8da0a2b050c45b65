"""A preflight finding (:class:`Check`), and the report ``dogbreed preflight`` prints of them.

Besides OK, PROBLEM and SKIPPED, a check can be a WARNING: something that may stop a run but that
preflight cannot settle (a bucket policy the simulator does not weigh); ``train`` and ``tune``
refuse only on a PROBLEM.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from botocore.exceptions import ClientError

from dogbreed.launch.training.permissions import code_of

OK, PROBLEM, SKIPPED, WARNING = "OK", "PROBLEM", "SKIPPED", "WARNING"


@dataclass(frozen=True)
class Check:
    """One finding: OK, PROBLEM (with the fix), WARNING (what may stop a run, and why) or
    SKIPPED (with why)."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def lines(self) -> str:
        text = f"{self.status:<8} {self.name}: {self.detail}"
        return text + (f"\n         fix: {self.fix}" if self.fix else "")


def denied(name: str, error: ClientError) -> Check:
    """SKIPPED: these credentials may not make the request that would tell."""
    return Check(name, SKIPPED, f"not allowed to look ({error.operation_name}: {code_of(error)})")


def problems(checks: Iterable[Check]) -> list[Check]:
    return [c for c in checks if c.status == PROBLEM]


def warnings(checks: Iterable[Check]) -> list[Check]:
    return [c for c in checks if c.status == WARNING]


def print_report(checks: Sequence[Check], out: Callable[[str], None] = print) -> int:
    """Print each check; 1 if any is a PROBLEM (warnings do not fail it)."""
    for check in checks:
        out(check.lines())
    found, warned = len(problems(checks)), len(warnings(checks))
    also = f"; {warned} warning(s) to read" if warned else ""
    out(
        f"{found} problem(s): fix them before a run{also}"
        if found
        else f"ready: nothing to fix{also}"
    )
    return 1 if found else 0
