"""Follow what a job prints: the CloudWatch logs of a training job, a tuning trial or an endpoint.

A training job writes one log stream per instance, ``<job>/algo-1-<epoch>``, ``<job>/algo-2-...``,
in ``/aws/sagemaker/TrainingJobs``; an endpoint writes one per instance
(``AllTraffic/i-...``) in ``/aws/sagemaker/Endpoints/<endpoint>``. Each round reads every stream
on from where the last round stopped (``GetLogEvents`` with its forward token) and prints the new
events interleaved by timestamp. Following polls with :func:`dogbreed.launch.poll.poll` until the
job ends (one more round after that, for events CloudWatch had not yet ingested), bounded by a
timeout.
"""

from __future__ import annotations

import heapq
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from dogbreed.launch.errors import LaunchError
from dogbreed.launch.poll import poll
from dogbreed.launch.session import Aws
from dogbreed.launch.training.jobs import wait_timeout_s
from dogbreed.launch.training.status import (
    describe_training_job,
    describe_tuning_job,
    is_not_found,
    trials_of,
)

TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
ENDPOINT_LOG_GROUP = "/aws/sagemaker/Endpoints/{}"
TRAINING_ENDED = ("Completed", "Failed", "Stopped")
#: How long ``logs --follow`` follows an endpoint, which never ends by itself, without --timeout.
ENDPOINT_FOLLOW_S = 3600
POLL_S = 10.0
#: How far one read drains a stream. GetLogEvents ends a stream only by handing back the token it
#: was sent; pages on the way may be empty or partial (a time gap in the stream), so an empty page
#: is no end. A stream that keeps growing (an endpoint's, under traffic) or a long run of empty
#: pages could keep a read going, so each read stops after this many pages or seconds, whichever
#: comes first, and says so; following reads on from there. 500 pages hold up to 5 million events
#: (10,000 each), far more than one training job prints. At GetLogEvents' quota (25 requests a
#: second per account and region, shared with every reader) they take 20 s; 60 s leaves room for
#: a slow link and throttled retries.
MAX_PAGES_PER_READ = 500
MAX_READ_S = 60.0
HOST = re.compile(r"^(algo-\d+)-\d+$")  # a training stream's host, without its epoch suffix


@dataclass
class LogSource:
    """Where a job's logs are, and how to ask whether it has ended (None while it runs)."""

    kind: str
    name: str
    group: str
    prefix: str
    ended: Callable[[], str | None]
    timeout_s: float


@dataclass
class LogReader:
    """Reads the events that are new since its last read, from every stream under a prefix.

    Each stream is read up to its end (the token sent comes back), at most ``max_pages`` pages and
    ``max_s`` seconds per read; :attr:`unfinished` names the streams the last read left early.
    """

    logs: Any
    group: str
    prefix: str
    tokens: dict[str, str | None] = field(default_factory=dict)
    max_pages: int = MAX_PAGES_PER_READ
    max_s: float = MAX_READ_S
    clock: Callable[[], float] = time.monotonic
    unfinished: list[str] = field(default_factory=list)

    def streams(self) -> list[str]:
        """The streams under the prefix, by name; none while the log group does not exist."""
        pages = self.logs.get_paginator("describe_log_streams")
        request = {"logGroupName": self.group}
        if self.prefix:
            request["logStreamNamePrefix"] = self.prefix
        try:
            return sorted(
                stream["logStreamName"]
                for page in pages.paginate(**request)
                for stream in page["logStreams"]
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return []
            raise

    def _new_events(self, stream: str) -> list[tuple[int, str, str]]:
        events: list[tuple[int, str, str]] = []
        token = self.tokens.get(stream)
        deadline = self.clock() + self.max_s
        for _ in range(self.max_pages):
            request: dict[str, Any] = {
                "logGroupName": self.group,
                "logStreamName": stream,
                "startFromHead": True,
            }
            if token:
                request["nextToken"] = token
            page = self.logs.get_log_events(**request)
            events += [(e["timestamp"], stream, e["message"]) for e in page["events"]]
            returned = page["nextForwardToken"]
            self.tokens[stream] = returned
            if returned == token:  # the end: the token sent comes back (empty pages are not)
                return events
            token = returned
            if self.clock() >= deadline:
                break
        self.unfinished.append(stream)
        return events

    def read(self) -> list[tuple[int, str, str]]:
        """New ``(timestamp, stream, message)`` events of all streams, merged by timestamp."""
        self.unfinished = []
        per_stream = [self._new_events(stream) for stream in self.streams()]
        return list(heapq.merge(*per_stream, key=lambda event: event[0]))

    def label(self, stream: str) -> str:
        """``algo-1`` for ``<job>/algo-1-1700000000``; the stream name past the prefix otherwise."""
        short = stream[len(self.prefix) :]
        host = HOST.match(short)
        return host.group(1) if host else short


def training_source(aws: Aws, job: Mapping[str, Any]) -> LogSource:
    name = job["TrainingJobName"]

    def ended() -> str | None:
        status = aws.sagemaker.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]
        return status if status in TRAINING_ENDED else None

    timeout = wait_timeout_s(job["StoppingCondition"])
    return LogSource("training job", name, TRAINING_LOG_GROUP, f"{name}/", ended, timeout)


def endpoint_source(aws: Aws, name: str) -> LogSource | None:
    """An endpoint's logs; it has ended when it failed or was deleted. None if there is none."""

    def status() -> str:
        try:
            return aws.sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"]
        except ClientError as error:
            if is_not_found(error):
                return "Deleted"
            raise

    if status() == "Deleted":
        return None

    def ended() -> str | None:
        current = status()
        return current if current in ("Failed", "Deleted") else None

    return LogSource(
        "endpoint", name, ENDPOINT_LOG_GROUP.format(name), "", ended, ENDPOINT_FOLLOW_S
    )


def trial_to_follow(
    aws: Aws, tuning: Mapping[str, Any], trial: str | None, announce: Callable[[str], None]
) -> str:
    """The trial to follow: ``trial`` if given, else the best so far, else the newest."""
    name = tuning["HyperParameterTuningJobName"]
    trials = trials_of(aws, name)
    if not trials:
        raise LaunchError(
            f"tuning job {name} ({tuning['HyperParameterTuningJobStatus']}) has no training jobs "
            "yet; try again in a minute"
        )
    best = tuning.get("BestTrainingJob", {}).get("TrainingJobName")
    names = [summary["TrainingJobName"] for summary in trials]
    if trial is not None and trial not in names:
        raise LaunchError(
            f"{trial!r} is not a training job of tuning job {name}; its trials: {', '.join(names)}"
        )
    chosen = trial or best or names[-1]
    announce(f"tuning job {name}: {len(trials)} training jobs")
    for summary in trials:
        trial_name = summary["TrainingJobName"]
        marks = [
            m for m, on in (("best", trial_name == best), ("following", trial_name == chosen)) if on
        ]
        note = f"  ({', '.join(marks)})" if marks else ""
        announce(f"  {trial_name}  {summary['TrainingJobStatus']}{note}")
    if trial is None:
        why = "the best so far" if best else "the newest; none has an objective value yet"
        announce(f"following {chosen} ({why}; --trial NAME follows another)")
    return chosen


def log_source(
    aws: Aws, name: str, trial: str | None = None, announce: Callable[[str], None] = print
) -> LogSource:
    """The logs ``name`` stands for: a training job's, a tuning job's trial's, an endpoint's."""
    job = describe_training_job(aws, name)
    if job is None:
        tuning = describe_tuning_job(aws, name)
        if tuning is not None:
            chosen = trial_to_follow(aws, tuning, trial, announce)
            job = aws.sagemaker.describe_training_job(TrainingJobName=chosen)
    if trial is not None and (job is None or job["TrainingJobName"] == name):
        raise LaunchError(f"--trial needs a tuning job's name; {name!r} is not a tuning job")
    if job is not None:
        return training_source(aws, job)
    source = endpoint_source(aws, name)
    if source is None:
        raise LaunchError(
            f"no training job, tuning job or endpoint named {name!r} in {aws.region} "
            "(check the name, and --region / --profile)"
        )
    return source


def show_logs(
    aws: Aws,
    source: LogSource,
    emit: Callable[[str], None] = print,
    follow: bool = False,
    timeout_s: float | None = None,
    poll_s: float = POLL_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] | None = None,
) -> str | None:
    """Print the logs so far; with ``follow``, keep printing until the source ends.

    Lines carry their stream's host (``[algo-2] ...``) once there is more than one stream.
    Returns how it ended when following (Completed, Failed, ...). Raises
    :class:`LaunchError` after ``timeout_s`` (default: the source's own bound).
    """
    reader = LogReader(aws.client("logs"), source.group, source.prefix)

    def show(last: bool = True) -> None:
        events = reader.read()
        several = len(reader.tokens) > 1
        for _, stream, message in events:
            emit(f"[{reader.label(stream)}] {message}" if several else message)
        if last:  # a round that follows reads on from here; the last one says what it left
            for stream in reader.unfinished:
                emit(
                    f"(stopped reading {stream} after {reader.max_pages} pages or "
                    f"{reader.max_s:g} s; its later events are not shown)"
                )

    if not follow:
        show()
        if not reader.tokens:
            emit(f"no logs yet for {source.kind} {source.name} (they start once it runs)")
        return None
    ended: str | None = None

    def probe() -> str | None:
        nonlocal ended
        if ended is not None:  # one last round after the end, for late events
            show()
            return ended
        ended = source.ended()
        show(last=False)
        return None

    what = f"{source.kind} {source.name} to end"
    return poll(probe, what, timeout_s or source.timeout_s, poll_s, clock=clock, sleep=sleep)


def follow_command(name: str, region: str | None, profile: str | None) -> str:
    """The exact ``dogbreed logs`` command line that follows ``name``."""
    options = (f" --region {region}" if region else "") + (
        f" --profile {profile}" if profile else ""
    )
    return f"dogbreed logs {name} --follow{options}"
