"""torchrun, plus the cause of a failed rank in ``output/failure``.

``python -m dogbreed.train.ranks TORCHRUN_ARGS`` runs torchrun's own launcher in this process. When a
rank fails, torchrun stops the others (SIGTERM) and reports the first failure only in its log;
here that first failure also becomes the job's failure reason: a rank killed by a signal (which
can write nothing itself) is named with the signal and its likely cause, and a rank that failed
on its own keeps the reason it wrote.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run

from dogbreed.train.failures import describe_signal
from dogbreed.train.job_paths import JobPaths

log = logging.getLogger("dogbreed.train.ranks")


def report_failed_rank(error: ChildFailedError, paths: JobPaths) -> None:
    """Write the first failed rank's cause to ``output/failure``."""
    rank, failure = error.get_first_failure()
    who = f"rank {rank} (pid {failure.pid})"
    if failure.exitcode < 0:
        message = describe_signal(-failure.exitcode, who)
        paths.write_failure(f"{message} The other ranks were stopped.")
    else:
        paths.write_failure(f"{who} exited with code {failure.exitcode}; see its log", False)


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        run(parse_args(list(argv)))
    except ChildFailedError as error:
        log.error("%s", error)
        report_failed_rank(error, JobPaths.from_env())
        return 1
    except SignalException as stop:
        log.warning("stopped by signal %s: the ranks were asked to stop", stop.sigval.name)
        return 128 + int(stop.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
