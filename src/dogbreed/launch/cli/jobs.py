"""``dogbreed tune`` and ``dogbreed train``: start SageMaker training and tuning jobs
(:mod:`dogbreed.launch.training`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dogbreed.launch import defaults
from dogbreed.launch.cli.options import aws_options, connect
from dogbreed.launch.errors import LaunchError
from dogbreed.launch.training.ranges import DEFAULT_RANGES, parse_ranges


def _job_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """Image, data channels, output and compute: shared by ``tune`` and ``train``."""
    parser.add_argument(
        "--image", required=required, help="training image URI (from build_and_push.sh)"
    )
    data = parser.add_argument_group("data channels (S3 prefixes; file:// or paths with --local)")
    data.add_argument("--data", help="one 'training' channel holding train/ valid/ test/")
    data.add_argument("--train", help="'train' channel (class folders)")
    data.add_argument("--valid", help="'valid' channel")
    data.add_argument("--test", help="'test' channel")
    data.add_argument("--pretrained", help="'pretrained' channel: a folder with a state-dict file")
    data.add_argument(
        "--input-mode",
        choices=("File", "FastFile"),
        default="File",
        help="File copies data to the instance first; FastFile streams it from S3 (default: File)",
    )
    parser.add_argument(
        "--output", required=required, help="S3 prefix for model.tar.gz and outputs"
    )
    parser.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a hyperparameter for the trainer (repeatable), e.g. --hp optimizer=adamw",
    )
    compute = parser.add_argument_group("compute")
    compute.add_argument("--instance-type", default=defaults.TRAINING_INSTANCE_TYPE)
    compute.add_argument(
        "--instance-count", type=int, default=1, help="> 1 runs PyTorch DDP across instances"
    )
    compute.add_argument("--volume-gb", type=int, default=defaults.VOLUME_GB)
    compute.add_argument(
        "--max-runtime", type=int, default=defaults.MAX_RUNTIME_S, help="seconds per job"
    )
    compute.add_argument("--spot", action="store_true", help="managed spot training (checkpointed)")
    compute.add_argument("--max-wait", type=int, help="spot: seconds to wait for capacity + run")
    compute.add_argument(
        "--checkpoint-s3", help="checkpoint prefix (default: <output>/<job>/checkpoints)"
    )
    parser.add_argument("--name", help="job name (default: dogbreed-<time>)")
    parser.add_argument("--wait", action="store_true", help="wait for the job to end")
    parser.add_argument(
        "--skip-preflight",
        action="store_true",
        help="start without checking that the role trusts SageMaker and may read the data, "
        "write the output and pull the image, the buckets are in the region, the image is in "
        "ECR and the training instance quota (the spot one with --spot) allows the job (see "
        "`dogbreed preflight`)",
    )


def _uri(value: str | None, local: bool) -> str | None:
    """In local mode a path becomes a ``file://`` URI; S3 and ``file://`` URIs stay as they are."""
    if value is None or not local or value.startswith(("s3://", "file://")):
        return value
    return Path(value).resolve().as_uri()


def _channels(args: argparse.Namespace, local: bool = False) -> dict[str, str]:
    """The data channels given on the command line, by their SageMaker channel name."""
    names = {"data": "training", "train": "train", "valid": "valid", "test": "test"}
    names |= {"pretrained": "pretrained"}
    return {
        channel: _uri(getattr(args, option), local)
        for option, channel in names.items()
        if getattr(args, option)
    }


def _training_spec(
    args: argparse.Namespace, aws: Any, name: str, hyperparameters: dict, debugger: Any = None
) -> Any:
    """The training job of ``train``, or each trial of ``tune``, from the job options."""
    from dogbreed.launch.session import resolve_role
    from dogbreed.launch.training.jobs import TrainingJobSpec, hyperparameter_strings

    return TrainingJobSpec(
        name=name,
        image_uri=args.image,
        role_arn=resolve_role(args.role, aws),
        output_s3=_uri(args.output, aws.local),
        channels=_channels(args, aws.local),
        hyperparameters=hyperparameter_strings(hyperparameters),
        instance_type="local" if aws.local else args.instance_type,
        instance_count=args.instance_count,
        volume_gb=args.volume_gb,
        max_runtime_s=args.max_runtime,
        input_mode=args.input_mode,
        spot=args.spot,
        max_wait_s=args.max_wait,
        checkpoint_s3=args.checkpoint_s3,
        debugger=debugger,
    )


def _follow_command(args: argparse.Namespace, name: str) -> str:
    """The ``dogbreed logs`` command line that follows job ``name`` (with its AWS options)."""
    from dogbreed.launch.training.watch import follow_command

    return follow_command(name, args.region, args.profile)


# --- tune ---------------------------------------------------------------------------------


TUNING_CHECKPOINTS = (
    "Checkpoints (--spot or --checkpoint-s3): all trials of a tuning job share one checkpoint URI "
    "(default <output>/<tuning job>/checkpoints/). Each trial keeps its checkpoint under "
    "<uri>/<its training job name>/ (the trainer reads TRAINING_JOB_NAME) and deletes that folder "
    "when it completes; SageMaker deletes it in S3 too. When a trial starts, SageMaker copies "
    "everything under the URI into it: the folders of the trials still running and of those "
    "stopped early or failed, about 135 MB each (ResNet18 weights and optimizer state). In a "
    "50-trial job with early stopping or Hyperband, a late trial may copy dozens of them before "
    "it trains: give each tuning job its own URI and empty it afterwards."
)


def configure_tune(parser: argparse.ArgumentParser) -> None:
    from dogbreed.launch.training.tune import STRATEGIES

    parser.epilog = TUNING_CHECKPOINTS
    parser.add_argument(
        "--status",
        metavar="TUNING_JOB",
        help="print the best job of an existing tuning job and exit (nothing else needed)",
    )
    parser.add_argument(
        "--range",
        action="append",
        default=[],
        metavar="NAME=KIND:SPEC",
        help="replace or add a range (repeatable); defaults: " + "  ".join(DEFAULT_RANGES),
    )
    parser.add_argument(
        "--no-range",
        action="append",
        default=[],
        metavar="NAME",
        help="drop a default range (repeatable), e.g. --no-range lr to fix it with --hp lr=0.01",
    )
    parser.add_argument(
        "--max-jobs", type=int, help="training jobs in all (default: 12; Grid: every combination)"
    )
    parser.add_argument("--max-parallel", type=int, default=2)
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="Bayesian",
        help="Hyperband: epochs is its resource, not a range: the epochs range's MIN:MAX become "
        "MinResource:MaxResource, every trial runs epochs=MAX and Hyperband stops the weaker ones "
        "(its own early stopping: --no-early-stopping is implied). Grid: categorical ranges only "
        "(e.g. --range lr=categorical:0.001,0.01 --no-range epochs); it runs every combination "
        "once (default: %(default)s)",
    )
    parser.add_argument(
        "--no-early-stopping",
        action="store_true",
        help="let every trial run to the end (Bayesian, Random, Grid)",
    )
    _job_options(parser, required=False)  # checked in run_tune: --status needs neither
    aws_options(parser, role=True)


def run_tune(args: argparse.Namespace) -> int:
    from dogbreed.launch.session import unique_name
    from dogbreed.launch.training.jobs import parse_key_values
    from dogbreed.launch.training.tune import (
        TuningSpec,
        best_job,
        start_tuning_job,
        tuning_timeout_s,
        wait_for_tuning_job,
    )

    aws = connect(args)
    if args.status:
        print(best_job(aws, args.status).summary())
        return 0
    if not (args.image and args.output):
        raise LaunchError("--image and --output are required to start a tuning job")
    name = args.name or unique_name("dogbreed-hpo", max_length=32)
    training = _training_spec(args, aws, name, parse_key_values(args.hp, "--hp"))
    spec = TuningSpec(
        name=name,
        training=training,
        ranges=parse_ranges(args.range, dropped=args.no_range),
        max_jobs=args.max_jobs,
        max_parallel_jobs=args.max_parallel,
        strategy=args.strategy,
        early_stopping=not args.no_early_stopping,
    )
    request = start_tuning_job(aws, spec, announce=print, preflight=not args.skip_preflight)
    checkpoints = request["TrainingJobDefinition"].get("CheckpointConfig")
    if checkpoints:
        uri = checkpoints["S3Uri"]
        print(f"checkpoints: all trials share {uri}; each keeps its own under {uri}<job name>/")
    limits = request["HyperParameterTuningJobConfig"]["ResourceLimits"]
    print(
        f"started tuning job {name} ({limits['MaxNumberOfTrainingJobs']} jobs, "
        f"{limits['MaxParallelTrainingJobs']} at a time)"
    )
    if not args.wait:
        print(f"check it with: dogbreed tune --status {name}")
        print(f"follow the best trial's logs: {_follow_command(args, name)}")
        return 0
    print(wait_for_tuning_job(aws, name, tuning_timeout_s(request)).summary())
    return 0


# --- train --------------------------------------------------------------------------------


def configure_train(parser: argparse.ArgumentParser) -> None:
    from dogbreed.launch.training.debugger import DEFAULT_RULES, PROFILER_RULE_EXAMPLES

    parser.add_argument(
        "--from-tuning-job",
        metavar="NAME",
        help="start from the best hyperparameters of this tuning job (--hp overrides them)",
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="run in SageMaker local mode: docker compose on this machine, local paths, no AWS",
    )
    _job_options(parser)
    debug = parser.add_argument_group(
        "Debugger and Profiler",
        "Rules run in SageMaker's rule image, which some regions lack (e.g. eu-central-2, "
        "il-central-1): there the job trains without Debugger and the profiler, with a warning.",
    )
    debug.add_argument("--no-debugger", action="store_true", help="no tensors, no tensor rules")
    debug.add_argument(
        "--rules",
        default=",".join(DEFAULT_RULES),
        help="comma-separated built-in rules: Debugger rules and profiler rules (e.g. "
        f"{', '.join(PROFILER_RULE_EXAMPLES)}) (default: %(default)s)",
    )
    debug.add_argument(
        "--losses-interval",
        type=int,
        default=defaults.LOSSES_INTERVAL,
        help="steps between saved losses",
    )
    debug.add_argument("--weights-interval", type=int, default=defaults.WEIGHTS_INTERVAL)
    debug.add_argument("--gradients-interval", type=int, default=defaults.GRADIENTS_INTERVAL)
    debug.add_argument(
        "--no-profiler",
        action="store_true",
        help="no profiler, no ProfilerReport, no profiler rules",
    )
    debug.add_argument(
        "--profiling-interval-ms", type=int, default=500, choices=(100, 200, 500, 1000, 5000, 60000)
    )
    debug.add_argument(
        "--debug-output", help="S3 prefix for tensors and reports (default: --output)"
    )
    aws_options(parser, role=True)


def _debugger_settings(args: argparse.Namespace, region: str) -> Any:
    """What ``train`` asks of Debugger and the profiler: None in local mode, where they cannot run,
    and, with a warning, in a region without SageMaker's rule image."""
    from dogbreed.launch.training.debugger import DebuggerSettings, rule_image_uri

    wanted = not (args.no_debugger and args.no_profiler)
    if args.local:
        if wanted:
            print(
                "local mode: Debugger rules and the profiler run on AWS only; training without them"
            )
        return None
    if rule_image_uri(region) is None:
        if wanted:
            print(
                f"warning: SageMaker Debugger and the profiler are not available in {region}; "
                "training without tensors, rules or the profiler",
                file=sys.stderr,
            )
        return None
    return DebuggerSettings(
        s3_output=args.debug_output or args.output,
        tensors=not args.no_debugger,
        losses_interval=args.losses_interval,
        weights_interval=args.weights_interval,
        gradients_interval=args.gradients_interval,
        rules=[r.strip() for r in args.rules.split(",") if r.strip()],
        profiler=not args.no_profiler,
        profiling_interval_ms=args.profiling_interval_ms,
    )


def run_train(args: argparse.Namespace) -> int:
    from dogbreed.launch.session import Aws, unique_name
    from dogbreed.launch.training.jobs import (
        model_artifact_of,
        parse_key_values,
        start_training_job,
        wait_for_training_job,
        wait_timeout_s,
    )
    from dogbreed.launch.training.tune import best_hyperparameters, merge

    aws = Aws.local_mode(region=args.region or "us-east-1") if args.local else connect(args)
    hyperparameters = parse_key_values(args.hp, "--hp")
    if args.from_tuning_job:
        hyperparameters = merge(
            best_hyperparameters(connect(args), args.from_tuning_job), hyperparameters
        )
    debugger = _debugger_settings(args, aws.region)
    name = args.name or unique_name("dogbreed-train")
    spec = _training_spec(args, aws, name, hyperparameters, debugger)
    request = start_training_job(aws, spec, announce=print, preflight=not args.skip_preflight)
    if aws.local or args.wait:
        if not aws.local:
            timeout_s = wait_timeout_s(request["StoppingCondition"])
            wait_for_training_job(aws, name, timeout_s, on_status=print)
        print(f"model: {model_artifact_of(aws, name)}")
    else:
        print(f"follow its logs: {_follow_command(args, name)}")
        print(f"then: dogbreed deploy --job {name} ...")
    return 0
