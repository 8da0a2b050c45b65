"""``dogbreed``: the command line over :mod:`dogbreed.launch`.

Each subcommand is a pair in :data:`COMMANDS`: ``configure(parser)`` adds its options and
``run(args) -> int`` does the work by calling library functions. Heavy imports (boto3, the
SageMaker SDK, smdebug) happen inside ``run``, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dogbreed.contract import BATCH_MAX_PAYLOAD_MB, REALTIME_MAX_PAYLOAD_MB
from dogbreed.launch import defaults

Configure = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]


def _aws_options(parser: argparse.ArgumentParser, role: bool = False) -> None:
    group = parser.add_argument_group("AWS")
    group.add_argument("--region", help="AWS region (default: AWS_REGION / your AWS config)")
    group.add_argument("--profile", help="AWS named profile")
    if role:
        group.add_argument(
            "--role", help="SageMaker execution role ARN (default: $DOGBREED_ROLE_ARN)"
        )


def _connect(args: argparse.Namespace) -> Any:
    from dogbreed.launch.session import Aws

    return Aws.connect(region=args.region, profile=args.profile)


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
        help="start without checking that the role trusts SageMaker, the buckets are in the "
        "region and the image is in ECR (see `dogbreed preflight`)",
    )


def _uri(value: str | None, local: bool) -> str | None:
    if value is None or not local or value.startswith(("s3://", "file://")):
        return value
    return Path(value).resolve().as_uri()


def _channels(args: argparse.Namespace, local: bool = False) -> dict[str, str]:
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


# --- upload -------------------------------------------------------------------------------


def configure_upload(parser: argparse.ArgumentParser) -> None:
    from dogbreed.launch.data.upload import DEFAULT_WORKERS, MAX_WORKERS

    parser.description = (
        "Check a data set's layout, then upload it to S3 for --data. Nothing is sent when a split "
        "is missing, the splits' class folders differ, a class folder is empty or a file is not "
        "an image; junk (__MACOSX/, .DS_Store, ._*, Thumbs.db) is skipped. Run it again to resume: "
        "an object already there with the same size and SHA-256 is not sent again."
    )
    parser.add_argument(
        "source",
        type=Path,
        help="dogImages.zip or a folder: train/ valid/ (or validation/) test/ of class folders, "
        "at its top or in its only folder",
    )
    parser.add_argument(
        "destination", help="s3://BUCKET/PREFIX/: files go to PREFIX/train/, valid/ and test/"
    )
    parser.add_argument(
        "--create-bucket", action="store_true", help="create the bucket in --region if missing"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help=f"uploads at once, 1-{MAX_WORKERS} (default: {DEFAULT_WORKERS})",
    )
    _aws_options(parser)


def run_upload(args: argparse.Namespace) -> int:
    from dogbreed.launch.data.upload import upload_data

    upload_data(
        args.source, args.destination, lambda: _connect(args), args.create_bucket, args.workers
    )
    return 0


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
    from dogbreed.launch.training.ranges import DEFAULT_RANGES
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
    _aws_options(parser, role=True)


def run_tune(args: argparse.Namespace) -> int:
    from dogbreed.launch.session import unique_name
    from dogbreed.launch.training.ranges import parse_ranges
    from dogbreed.launch.training.tune import (
        TuningSpec,
        best_job,
        start_tuning_job,
        tuning_timeout_s,
        wait_for_tuning_job,
    )

    aws = _connect(args)
    if args.status:
        print(best_job(aws, args.status).summary())
        return 0
    from dogbreed.launch.errors import LaunchError
    from dogbreed.launch.training.jobs import parse_key_values

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
    _aws_options(parser, role=True)


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

    aws = Aws.local_mode(region=args.region or "us-east-1") if args.local else _connect(args)
    hyperparameters = parse_key_values(args.hp, "--hp")
    if args.from_tuning_job:
        hyperparameters = merge(
            best_hyperparameters(_connect(args), args.from_tuning_job), hyperparameters
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


# --- deploy / invoke / transform / cleanup -------------------------------------------------


def configure_deploy(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--job", help="training job whose model.tar.gz to serve")
    source.add_argument("--model-data", help="s3://.../model.tar.gz")
    images = parser.add_argument_group(
        "serving images (build_and_push.sh prints both; either one alone serves everywhere)"
    )
    images.add_argument(
        "--slim-image", help="dogbreed-serve-slim URI (ONNX Runtime, no torch): CPU and serverless"
    )
    images.add_argument(
        "--serve-image", "--image", dest="serve_image", help="dogbreed-serve URI (torch): GPU"
    )
    parser.add_argument(
        "--name", help="endpoint (and model, config) name (default: dogbreed-<time>)"
    )
    parser.add_argument(
        "--instance-type", help=f"default: {defaults.SERVING_INSTANCE_TYPE}; not with --serverless"
    )
    parser.add_argument("--instance-count", type=int, default=1)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    serverless = parser.add_argument_group(
        "serverless: billed per ms of compute, nothing while idle; cold starts; 4 MB requests"
    )
    serverless.add_argument("--serverless", action="store_true")
    serverless.add_argument(
        "--memory-mb", type=int, help="1024-6144 in steps of 1024 (default 2048)"
    )
    serverless.add_argument("--max-concurrency", type=int, help="1-200 (default 5)")
    serverless.add_argument(
        "--provisioned-concurrency", type=int, help="warm environments (billed while idle)"
    )
    asynchronous = parser.add_argument_group(
        "async: queued requests and results in S3, up to 1 GB and 1 h each; can scale to 0"
    )
    asynchronous.add_argument("--async", dest="asynchronous", action="store_true")
    asynchronous.add_argument("--output-s3", help="S3 prefix for results (required with --async)")
    asynchronous.add_argument(
        "--failure-s3", help="S3 prefix for errors (default: failures/ beside --output-s3)"
    )
    asynchronous.add_argument("--success-topic", help="SNS topic ARN told of each result")
    asynchronous.add_argument("--error-topic", help="SNS topic ARN told of each failure")
    asynchronous.add_argument("--max-concurrent-invocations-per-instance", type=int)
    scaling = parser.add_argument_group("autoscaling (on when --autoscale-max is given)")
    scaling.add_argument("--autoscale-max", type=int, help="most instances")
    scaling.add_argument(
        "--autoscale-min",
        "--min-instances",
        type=int,
        default=1,
        help="fewest instances; 0 (async only) scales to zero and wakes on a backlog",
    )
    scaling.add_argument(
        "--target-invocations",
        type=float,
        default=100.0,
        help="real-time: invocations per instance per minute to hold (default: %(default)s)",
    )
    scaling.add_argument(
        "--target-backlog",
        type=float,
        default=5.0,
        help="async: queued requests per instance to hold (default: %(default)s)",
    )
    parser.add_argument("--no-wait", action="store_true", help="return before InService")
    _aws_options(parser, role=True)


def run_deploy(args: argparse.Namespace) -> int:
    from dogbreed.launch.endpoints.autoscaling import Autoscaling
    from dogbreed.launch.endpoints.deploy import EndpointSpec, deploy, endpoint_mode
    from dogbreed.launch.endpoints.images import ServingImages, choose_image
    from dogbreed.launch.session import resolve_role, unique_name
    from dogbreed.launch.training.jobs import model_artifact_of, parse_key_values

    serverless, asynchronous = endpoint_mode(vars(args))  # checked before any request
    instance_type = args.instance_type or defaults.SERVING_INSTANCE_TYPE
    image = choose_image(
        ServingImages(args.slim_image, args.serve_image),
        "serverless" if serverless else instance_type,
    )
    if image.warning:
        print(f"dogbreed deploy: warning: {image.warning}", file=sys.stderr)
    scaling = None
    if args.autoscale_max is not None:
        scaling = Autoscaling(
            args.autoscale_min, args.autoscale_max, args.target_invocations, args.target_backlog
        )
    aws = _connect(args)
    spec = EndpointSpec(
        name=args.name or unique_name("dogbreed"),
        image_uri=image.uri,
        model_data=args.model_data or model_artifact_of(aws, args.job),
        role_arn=resolve_role(args.role, aws),
        instance_type=instance_type,
        instance_count=args.instance_count,
        environment=parse_key_values(args.env, "--env"),
        autoscaling=scaling,
        serverless=serverless,
        asynchronous=asynchronous,
    )
    where = "serverless" if serverless else instance_type
    print(f"deploying {spec.model_data} to {spec.mode} endpoint {spec.name} ({where})")
    print(f"image: {image.why}: {image.uri}")
    described = deploy(aws, spec, wait=not args.no_wait)
    print(f"endpoint {spec.name}: {described['EndpointStatus']}")
    print(
        f"query it: dogbreed invoke {spec.name} dog.jpg;  remove it: dogbreed cleanup {spec.name}"
    )
    return 0


def configure_invoke(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("endpoint")
    parser.add_argument("images", nargs="+", type=Path, help="JPEG or PNG files")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the raw predictions as JSON")
    asynchronous = parser.add_argument_group("async endpoints")
    asynchronous.add_argument(
        "--input-s3", help="S3 prefix to upload the images to (default: input/ beside the output)"
    )
    asynchronous.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait for results (default: 900)"
    )
    _aws_options(parser)


def run_invoke(args: argparse.Namespace) -> int:
    import json

    from dogbreed.launch.endpoints.async_invoke import input_prefix, invoke_async
    from dogbreed.launch.endpoints.invoke import (
        LARGEST_PAYLOAD_MB,
        describe_target,
        format_predictions,
        invoke,
        read_image,
    )

    # Every file is checked before any inference: its kind here, its size against the endpoint's.
    images = [read_image(path, LARGEST_PAYLOAD_MB) for path in args.images]
    aws = _connect(args)
    target = describe_target(aws, args.endpoint)
    for image in images:
        target.check(image)
    if target.mode == "async":
        prefix = input_prefix(target, args.input_s3)
        print(f"uploading to {prefix}; waiting up to {args.timeout:g} s", file=sys.stderr)
        answers = invoke_async(aws, target, images, prefix, args.top_k, args.timeout)
    else:
        answers = ((image, invoke(aws, args.endpoint, image, args.top_k)) for image in images)
    for image, predictions in answers:
        if args.json:
            print(json.dumps({"file": str(image.path), "predictions": predictions}))
        else:
            print(format_predictions(image.path, predictions))
    return 0


def configure_transform(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="S3 prefix of the images")
    parser.add_argument("--output", required=True, help="S3 prefix for <image>.out JSON files")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="an existing SageMaker model (e.g. the endpoint's name)")
    source.add_argument("--job", help="training job whose model to use (needs --image)")
    source.add_argument("--model-data", help="s3://.../model.tar.gz (needs --image)")
    parser.add_argument(
        "--image", help="serving image URI, to create a model from --job/--model-data"
    )
    parser.add_argument("--name", help="transform job name (default: dogbreed-batch-<time>)")
    parser.add_argument("--instance-type", default=defaults.SERVING_INSTANCE_TYPE)
    parser.add_argument("--instance-count", type=int, default=1)
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=0,
        help="requests at a time per instance (0: ask the container); "
        f"x --max-payload-mb must be <= {BATCH_MAX_PAYLOAD_MB}",
    )
    parser.add_argument(
        "--max-payload-mb",
        type=int,
        default=REALTIME_MAX_PAYLOAD_MB,
        help=f"largest request in MB, 1-{BATCH_MAX_PAYLOAD_MB} (default: %(default)s)",
    )
    parser.add_argument("--wait", action="store_true")
    _aws_options(parser, role=True)


def run_transform(args: argparse.Namespace) -> int:
    from dogbreed.launch.endpoints.deploy import EndpointSpec, model_request
    from dogbreed.launch.endpoints.transform import (
        TransformSpec,
        start_transform,
        transform_request,
        wait_for_transform,
    )
    from dogbreed.launch.errors import LaunchError
    from dogbreed.launch.session import resolve_role, unique_name
    from dogbreed.launch.training.jobs import model_artifact_of

    if args.model is None and not args.image:
        raise LaunchError("--job / --model-data need --image (the serving image URI)")
    aws = _connect(args)
    name = args.name or unique_name("dogbreed-batch")
    spec = TransformSpec(
        name=name,
        model_name=args.model or name,
        input_uri=args.input,
        output_uri=args.output,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        max_concurrent=args.max_concurrent,
        max_payload_mb=args.max_payload_mb,
    )
    transform_request(spec)  # every check before the first request
    if args.model is None:
        data = args.model_data or model_artifact_of(aws, args.job)
        endpoint = EndpointSpec(name, args.image, data, resolve_role(args.role, aws))
        aws.sagemaker.create_model(**model_request(endpoint))
        print(f"created model {name} (remove it with: dogbreed cleanup {name})")
    start_transform(aws, spec)
    print(f"started transform job {name}: {args.input} -> {args.output}")
    if args.wait:
        wait_for_transform(aws, name)
        print(f"transform job {name} completed; results in {args.output}")
    return 0


def configure_cleanup(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("endpoint", help="the name given to `dogbreed deploy`")
    _aws_options(parser)


def run_cleanup(args: argparse.Namespace) -> int:
    from dogbreed.launch.endpoints.deploy import cleanup

    removed = cleanup(_connect(args), args.endpoint)
    print("\n".join(f"deleted {item}" for item in removed) or f"nothing named {args.endpoint} left")
    return 0


# --- logs / status / endpoints ------------------------------------------------------------


def _follow_command(args: argparse.Namespace, name: str) -> str:
    from dogbreed.launch.training.watch import follow_command

    return follow_command(name, args.region, args.profile)


def configure_logs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name",
        help="a training job, a tuning job (follows its best trial, or --trial) or an endpoint",
    )
    parser.add_argument("--trial", help="with a tuning job: the training job to follow")
    parser.add_argument(
        "--follow",
        action="store_true",
        help="keep printing until the job ends (an endpoint: until it fails or is deleted)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        help="seconds to follow at most (default: the job's max runtime + 1 h; endpoints: 1 h)",
    )
    _aws_options(parser)


def run_logs(args: argparse.Namespace) -> int:
    from dogbreed.launch.training.watch import log_source, show_logs

    aws = _connect(args)
    source = log_source(aws, args.name, trial=args.trial)
    ended = show_logs(aws, source, follow=args.follow, timeout_s=args.timeout)
    if ended:
        print(f"{source.kind} {source.name}: {ended}")
    return 0 if ended in (None, "Completed", "Deleted") else 1


def configure_status(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="a training job or a tuning job")
    _aws_options(parser)


def run_status(args: argparse.Namespace) -> int:
    from dogbreed.launch.training.status import status_lines

    print("\n".join(status_lines(_connect(args), args.name)))
    return 0


def configure_endpoints(parser: argparse.ArgumentParser) -> None:
    _aws_options(parser)


def run_endpoints(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from dogbreed.launch.endpoints.listing import endpoint_table, tool_endpoints

    aws = _connect(args)
    now = datetime.now(UTC)
    print("\n".join(endpoint_table(tool_endpoints(aws, now), aws.region, now)))
    return 0


# --- report -------------------------------------------------------------------------------


def configure_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "trial",
        nargs="?",
        help="smdebug trial: a local folder or s3:// prefix (default: the job's)",
    )
    parser.add_argument("--job", help="training job: adds rule verdicts and the profiler report")
    parser.add_argument("--out", type=Path, default=Path("debugger-report"), help="output folder")
    parser.add_argument(
        "--wait",
        action="store_true",
        help="with --job: first wait until its ProfilerReport rule has finished (at most the "
        "job's max runtime + 1 h)",
    )
    _aws_options(parser)


def run_report(args: argparse.Namespace) -> int:
    from dogbreed.launch.training.report import write_report

    aws = _connect(args) if args.job or (args.trial or "").startswith("s3://") else None
    if args.wait and args.job:
        print(f"waiting for the ProfilerReport rule of training job {args.job} to finish")
    report = write_report(
        args.out, trial_path=args.trial, aws=aws, job_name=args.job, wait=args.wait
    )
    print(report.text)
    print("wrote " + ", ".join(str(p) for p in report.files))
    return 0


# --- preflight ----------------------------------------------------------------------------


def configure_preflight(parser: argparse.ArgumentParser) -> None:
    from dogbreed.launch.training.debugger import DEFAULT_RULES

    parser.description = (
        "Check, before any money is spent, what a run would trip on: credentials, the role, the "
        "bucket and its region, the images in ECR, and the SageMaker quotas for the training "
        "instances, the Debugger rule evaluations (processing jobs), tuning's parallel trials "
        "and the endpoint. Prints OK, PROBLEM (with the fix) or SKIPPED per check; exit 1 on any "
        "PROBLEM."
    )
    parser.add_argument("--bucket", help="bucket (or s3:// URI) for data and output")
    parser.add_argument("--train-image", help="training image URI")
    parser.add_argument("--serve-image", help="serving image URI")
    parser.add_argument("--instance-type", default=defaults.TRAINING_INSTANCE_TYPE)
    parser.add_argument("--instance-count", type=int, default=1, help="per training job")
    parser.add_argument("--max-parallel", type=int, default=2, help="tune's parallel trials")
    parser.add_argument("--serve-instance-type", default=defaults.SERVING_INSTANCE_TYPE)
    parser.add_argument("--rules", default=",".join(DEFAULT_RULES), help="train's --rules")
    parser.add_argument("--no-debugger", action="store_true", help="as train's --no-debugger")
    parser.add_argument("--no-profiler", action="store_true", help="as train's --no-profiler")
    _aws_options(parser, role=True)


def run_preflight(args: argparse.Namespace) -> int:
    import os

    from dogbreed.launch.session import ROLE_ENV
    from dogbreed.launch.training import preflight

    aws = _connect(args)
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    target = preflight.Target(
        role_arn=args.role or os.environ.get(ROLE_ENV),
        buckets=[preflight.bucket_of(args.bucket)] if args.bucket else [],
        images=[("training image", args.train_image), ("serving image", args.serve_image)],
        quotas=[
            *preflight.training_needs(args.instance_type, args.instance_count, args.max_parallel),
            *preflight.rule_needs(aws.region, rules, not args.no_debugger, not args.no_profiler),
            preflight.QuotaNeed("endpoint", args.serve_instance_type, "endpoint", 1),
        ],
    )
    return preflight.print_report(preflight.run_checks(aws, target))


COMMANDS: dict[str, tuple[str, Configure, Run]] = {
    "upload": (
        "check a data set (zip or folder) and upload it to S3",
        configure_upload,
        run_upload,
    ),
    "tune": (
        "start a hyperparameter tuning job (maximise valid:accuracy)",
        configure_tune,
        run_tune,
    ),
    "train": ("one training job with Debugger rules and the profiler", configure_train, run_train),
    "deploy": (
        "serve a trained model: real-time, serverless or async endpoint",
        configure_deploy,
        run_deploy,
    ),
    "invoke": (
        "send JPEG/PNG files to an endpoint, print the top-k breeds",
        configure_invoke,
        run_invoke,
    ),
    "transform": (
        "batch transform over an S3 prefix of images",
        configure_transform,
        run_transform,
    ),
    "cleanup": ("delete an endpoint, its config and model", configure_cleanup, run_cleanup),
    "preflight": (
        "what a run would trip on (role, bucket, images, quotas), with fixes",
        configure_preflight,
        run_preflight,
    ),
    "report": (
        "loss and gradient plots, rule verdicts, profiler report",
        configure_report,
        run_report,
    ),
    "logs": (
        "print or follow the CloudWatch logs of a training job, tuning trial or endpoint",
        configure_logs,
        run_logs,
    ),
    "status": (
        "a training or tuning job's status, times and billed seconds",
        configure_status,
        run_status,
    ),
    "endpoints": (
        "the live endpoints dogbreed made, with instances, age and cost per hour and month",
        configure_endpoints,
        run_endpoints,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dogbreed", description="Train, tune, deploy and query the dog-breed classifier."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (summary, configure, _) in COMMANDS.items():
        child = sub.add_parser(name, help=summary, description=summary)
        configure(child)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from dogbreed.launch.errors import LaunchError

    _, _, run = COMMANDS[args.command]
    try:
        return run(args)
    except LaunchError as error:
        print(f"dogbreed {args.command}: error: {error}", file=sys.stderr)
    except NoCredentialsError:
        print(
            f"dogbreed {args.command}: error: no AWS credentials (run `aws configure` or set "
            "AWS_PROFILE)",
            file=sys.stderr,
        )
    except ClientError as error:
        info = error.response.get("Error", {})
        print(
            f"dogbreed {args.command}: error: AWS refused {error.operation_name}: "
            f"{info.get('Code')}: {info.get('Message')}",
            file=sys.stderr,
        )
    except BotoCoreError as error:
        print(f"dogbreed {args.command}: error: {error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
