"""What Debugger saw: loss curves and per-layer gradient norms as PNG, rule verdicts, profiler report.

Reads an smdebug trial (a local folder or ``s3://`` prefix, or the one a training job wrote) with
``smdebug.trials.create_trial``. An S3 trial is first copied to a temporary folder with the
session's S3 client: smdebug's own client would ignore ``--profile`` and ``--region``. With a job
name it also reads the job's rule evaluation statuses and downloads the ProfilerReport rule's
output when it exists; :func:`wait_for_profiler_report` first waits until that rule has finished.

An S3 key is a name anyone who can write to the prefix chooses: a key whose local path would
leave the target folder (``..``, a leading ``/``) is not written, and the report names it.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dogbreed.launch.errors import LaunchError
from dogbreed.launch.poll import poll
from dogbreed.launch.session import Aws

TRAIN_COLOR = "#1f77b4"
EVAL_COLOR = "#ff7f0e"
LOSSES_PNG = "losses.png"
GRADIENTS_PNG = "gradient_norms.png"
SUMMARY_TXT = "summary.txt"
Series = tuple[list[int], list[float]]
PROFILER_REPORT = "ProfilerReport"
#: A rule evaluation status that will not change any more.
RULE_ENDED = ("NoIssuesFound", "IssuesFound", "Error", "Stopped")


@dataclass
class Report:
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def debugger_output_of(job: dict[str, Any]) -> str:
    """Where a training job's tensors are: ``<DebugHookConfig.S3OutputPath>/<job>/debug-output``."""
    hook = job.get("DebugHookConfig")
    if not hook:
        raise LaunchError(f"training job {job['TrainingJobName']} ran without a Debugger hook")
    return f"{hook['S3OutputPath'].rstrip('/')}/{job['TrainingJobName']}/debug-output"


def safe_local_path(root: Path, name: str) -> Path | None:
    """``root / name`` when it stays inside ``root`` once resolved; None when ``name`` would leave
    it (``..``, a leading ``/``, a link inside ``root`` that points out) or names ``root`` itself.
    """
    try:
        base = root.resolve()
        resolved = (base / name).resolve()
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop
        return None
    if resolved == base or not resolved.is_relative_to(base):
        return None
    return root / resolved.relative_to(base)


#: How many skipped keys a warning names before it only counts the rest.
NAMED_KEYS = 10


@dataclass
class Downloaded:
    """What :func:`download_prefix` wrote, and the keys it skipped: those that would leave it,
    and those whose path another key's holds (S3 may have both ``a`` and ``a/b``)."""

    target: Path
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    clashing: list[str] = field(default_factory=list)

    def warning(self) -> str | None:
        """One line naming the skipped keys (``repr``: no control characters reach a terminal)."""
        parts = []
        if self.skipped:
            parts.append(
                f"skipped {len(self.skipped)} S3 object(s) whose key would be written outside "
                f"{self.target}: {named_keys(self.skipped)}"
            )
        if self.clashing:
            parts.append(
                f"skipped {len(self.clashing)} S3 object(s) whose key is a file and a folder at "
                f"once under {self.target} (like 'a' beside 'a/b'): {named_keys(self.clashing)}"
            )
        return f"warning: {'; '.join(parts)}" if parts else None


def named_keys(keys: list[str]) -> str:
    """The first ``NAMED_KEYS`` of ``keys`` (``repr``), and how many more."""
    named = ", ".join(repr(key) for key in keys[:NAMED_KEYS])
    more = len(keys) - NAMED_KEYS
    return f"{named}{f' and {more} more' if more > 0 else ''}"


def download_prefix(
    s3: Any, uri: str, target: Path, keep: Callable[[str], bool] = lambda relative: True
) -> Downloaded:
    """Copy the objects under an ``s3://`` prefix whose relative key ``keep`` accepts into
    ``target``; a key that would land outside ``target`` is skipped (see :func:`safe_local_path`).
    """
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = f"{prefix.strip('/')}/".lstrip("/")
    result = Downloaded(target)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix) :]
            if not relative or relative.endswith("/") or not keep(relative):
                continue
            path = safe_local_path(target, relative)
            if path is None:
                result.skipped.append(item["Key"])
                continue
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                out = path.open("wb")
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                result.clashing.append(item["Key"])
                continue
            with out:
                shutil.copyfileobj(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"], out)
            result.files.append(path)
    return result


@contextmanager
def local_trial(path: str, aws: Aws | None) -> Iterator[tuple[str, str | None]]:
    """A local folder holding the trial and a warning naming the S3 keys skipped: ``path``, or a
    temporary copy of an S3 trial made with the session's S3 client (its profile, region and
    credentials), removed afterwards."""
    if not path.startswith("s3://"):
        yield path, None
        return
    if aws is None:
        raise LaunchError("an s3:// trial needs AWS access (region, credentials)")
    with tempfile.TemporaryDirectory(prefix="dogbreed-trial-") as folder:
        copied = download_prefix(aws.client("s3"), path, Path(folder))
        if not copied.files:
            skipped = f"; {copied.warning()}" if copied.warning() else ""
            raise LaunchError(f"{path}: no objects there (not an smdebug trial){skipped}")
        yield folder, copied.warning()


def load_trial(path: str) -> Any:
    """An smdebug trial from a local folder."""
    local = Path(path)
    if not (local / "index").is_dir() and not (local / "events").is_dir():
        raise LaunchError(f"{path}: not an smdebug trial (no index/ or events/ inside)")
    from smdebug.trials import create_trial

    return create_trial(path)


def loss_series(trial: Any) -> dict[str, dict[str, Series]]:
    """``{loss tensor: {"TRAIN": (steps, values), "EVAL": ...}}`` by mode step."""
    from smdebug.core.modes import ModeKeys

    result: dict[str, dict[str, Series]] = {}
    for name in trial.tensor_names(collection="losses"):
        tensor = trial.tensor(name)
        for mode in (ModeKeys.TRAIN, ModeKeys.EVAL):
            steps = tensor.steps(mode=mode)
            if steps:
                values = [float(tensor.value(s, mode=mode)) for s in steps]
                result.setdefault(name, {})[mode.name] = (steps, values)
    return result


def depth_key(name: str) -> tuple[int, list[int | str]]:
    """Sort layer names input side first: stem, ``layer1`` .. ``layerN``, then the head (``fc``)."""
    parts: list[int | str] = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
    stage = re.search(r"layer(\d+)", name)
    if stage:
        return 1 + int(stage.group(1)), parts
    if re.search(r"(^|[._])(fc|classifier|head)([._]|$)", name):
        return 1000, parts
    return 0, parts


def gradient_norms(trial: Any) -> dict[str, Series]:
    """L2 norm of each layer's gradient at every saved TRAIN step, input side first."""
    import numpy as np
    from smdebug.core.modes import ModeKeys

    result: dict[str, Series] = {}
    for name in sorted(trial.tensor_names(collection="gradients"), key=depth_key):
        tensor = trial.tensor(name)
        steps = tensor.steps(mode=ModeKeys.TRAIN)
        if steps:
            norms = [float(np.linalg.norm(tensor.value(s, mode=ModeKeys.TRAIN))) for s in steps]
            result[name.removeprefix("gradient/")] = (steps, norms)
    return result


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_losses(series: dict[str, dict[str, Series]], path: Path) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(len(series), 1, figsize=(8, 3.5 * len(series)), squeeze=False)
    for ax, (name, modes) in zip(axes[:, 0], series.items(), strict=True):
        for mode, color in (("TRAIN", TRAIN_COLOR), ("EVAL", EVAL_COLOR)):
            if mode in modes:
                steps, values = modes[mode]
                ax.plot(steps, values, color=color, marker=".", linewidth=1.5, label=mode)
        ax.set_title(f"{name} (Debugger 'losses' collection)")
        ax.set_xlabel("step (per mode)")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_gradient_norms(norms: dict[str, Series], path: Path) -> Path:
    """Left: every layer's gradient norm over steps (colour = depth). Right: last-step norm per layer."""
    plt = _pyplot()
    names = list(norms)
    fig, (curves, bars) = plt.subplots(
        1, 2, figsize=(14, max(5.0, 0.16 * len(names) + 1.5)), gridspec_kw={"width_ratios": [3, 2]}
    )
    cmap = plt.get_cmap("viridis")
    for index, name in enumerate(names):
        steps, values = norms[name]
        curves.plot(steps, values, color=cmap(index / max(1, len(names) - 1)), linewidth=1)
    curves.set_yscale("log")
    curves.set_title("gradient L2 norm per layer (dark: input side, light: output side)")
    curves.set_xlabel("training step")
    curves.set_ylabel("L2 norm")
    curves.grid(alpha=0.3)
    last = [max(norms[n][1][-1], 1e-12) for n in names]
    bars.barh(
        range(len(names)), last, color=[cmap(i / max(1, len(names) - 1)) for i in range(len(names))]
    )
    bars.set_yticks(range(len(names)), labels=names, fontsize=6)
    bars.invert_yaxis()
    bars.set_xscale("log")
    bars.set_title("last saved step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _loss_lines(series: dict[str, dict[str, Series]]) -> list[str]:
    lines = []
    for name, modes in series.items():
        for mode, (steps, values) in modes.items():
            lines.append(
                f"loss {name} {mode}: {len(steps)} steps, first {values[0]:.4f}, last {values[-1]:.4f}, "
                f"min {min(values):.4f}"
            )
    return lines


def _gradient_lines(norms: dict[str, Series]) -> list[str]:
    last = {name: values[-1] for name, (_, values) in norms.items() if math.isfinite(values[-1])}
    if not last:
        return ["gradients: none finite"]
    low, high = min(last, key=last.get), max(last, key=last.get)
    return [
        f"gradients: {len(norms)} layers; smallest last norm {low} {last[low]:.3e}, "
        f"largest {high} {last[high]:.3e}"
    ]


def rule_lines(job: dict[str, Any]) -> list[str]:
    """One line per Debugger and Profiler rule: which fired (IssuesFound), which passed."""
    lines = []
    for key in ("DebugRuleEvaluationStatuses", "ProfilerRuleEvaluationStatuses"):
        for status in job.get(key, []):
            verdict = status.get("RuleEvaluationStatus", "Unknown")
            mark = "FIRED" if verdict == "IssuesFound" else verdict
            detail = f" - {status['StatusDetails']}" if status.get("StatusDetails") else ""
            lines.append(f"rule {status['RuleConfigurationName']}: {mark}{detail}")
    if not lines:
        return ["rules: the job has no Debugger or Profiler rules"]
    fired = [line for line in lines if ": FIRED" in line]
    return [*lines, f"rules fired: {len(fired)} of {len(lines)}"]


def fetch_profiler_report(aws: Aws, job: dict[str, Any], out_dir: Path) -> Downloaded:
    """Download ``<ProfilerConfig.S3OutputPath>/<job>/rule-output/ProfilerReport*`` if present."""
    base = job.get("ProfilerConfig", {}).get("S3OutputPath")
    if not base:
        return Downloaded(out_dir / "profiler-report")
    rule_output = f"{base.rstrip('/')}/{job['TrainingJobName']}/rule-output/"
    return download_prefix(
        aws.client("s3"),
        rule_output,
        out_dir / "profiler-report",
        keep=lambda relative: relative.startswith(PROFILER_REPORT),
    )


def profiler_report_status(job: dict[str, Any]) -> str | None:
    """The ProfilerReport rule's evaluation status; None when the job has no such rule."""
    for status in job.get("ProfilerRuleEvaluationStatuses", []):
        if status["RuleConfigurationName"].startswith(PROFILER_REPORT):
            return status.get("RuleEvaluationStatus", "InProgress")
    return None


def wait_for_profiler_report(
    aws: Aws,
    job_name: str,
    poll_s: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Poll ``DescribeTrainingJob`` until the ProfilerReport rule has finished; return the job.

    The rule runs beside the job and finishes after it, so the wait allows the job's whole
    stopping condition and an hour (:func:`~dogbreed.launch.training.jobs.wait_timeout_s`).
    """
    from dogbreed.launch.training.jobs import wait_timeout_s

    job = aws.sagemaker.describe_training_job(TrainingJobName=job_name)
    if profiler_report_status(job) is None:
        raise LaunchError(
            f"training job {job_name} has no {PROFILER_REPORT} rule (it ran with --no-profiler, "
            "or where rules are unavailable): there is nothing to wait for; drop --wait"
        )
    first: dict[str, Any] | None = job

    def probe() -> dict[str, Any] | None:
        nonlocal first
        current = first or aws.sagemaker.describe_training_job(TrainingJobName=job_name)
        first = None
        return current if profiler_report_status(current) in RULE_ENDED else None

    what = f"the {PROFILER_REPORT} rule of training job {job_name}"
    return poll(probe, what, wait_timeout_s(job["StoppingCondition"]), poll_s, clock, sleep)


def write_report(
    out_dir: Path,
    trial_path: str | None = None,
    aws: Aws | None = None,
    job_name: str | None = None,
    wait: bool = False,
) -> Report:
    """Draw the pictures and write ``summary.txt``; with a job, add rules and the profiler report.

    ``wait`` first waits for the job's ProfilerReport rule to finish.
    """
    job = None
    if wait and not job_name:
        raise LaunchError(
            "--wait needs --job NAME: the training job whose profiler report to wait for"
        )
    if job_name:
        if aws is None:
            raise LaunchError("a job name needs AWS access (region, credentials)")
        job = (
            wait_for_profiler_report(aws, job_name)
            if wait
            else aws.sagemaker.describe_training_job(TrainingJobName=job_name)
        )
        trial_path = trial_path or debugger_output_of(job)
    if not trial_path:
        raise LaunchError("give a trial (local folder or s3:// prefix) or --job NAME")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir, lines=[f"trial: {trial_path}"])
    with local_trial(trial_path, aws) as (folder, skipped):
        if skipped:
            report.lines.append(skipped)
        trial = load_trial(folder)
        losses = loss_series(trial)
        norms = gradient_norms(trial)
    if losses:
        report.files.append(plot_losses(losses, out_dir / LOSSES_PNG))
        report.lines += _loss_lines(losses)
    else:
        report.lines.append("losses: the trial has no 'losses' collection")
    if norms:
        report.files.append(plot_gradient_norms(norms, out_dir / GRADIENTS_PNG))
        report.lines += _gradient_lines(norms)
    else:
        report.lines.append("gradients: the trial has no 'gradients' collection")
    if job is not None and aws is not None:
        report.lines += rule_lines(job)
        fetched = fetch_profiler_report(aws, job, out_dir)
        report.files += fetched.files
        report.lines.append(
            f"profiler report: {len(fetched.files)} files in {fetched.target}"
            if fetched.files
            else "profiler report: not (yet) written for this job"
        )
        warning = fetched.warning()
        if warning:
            report.lines.append(warning)
    summary = out_dir / SUMMARY_TXT
    summary.write_text(report.text + "\n")
    report.files.append(summary)
    return report
