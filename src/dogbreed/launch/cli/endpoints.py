"""``dogbreed deploy``, ``invoke``, ``transform``, ``cleanup`` and ``endpoints``: serve a trained
model on SageMaker and query it (:mod:`dogbreed.launch.endpoints`)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from dogbreed.contract import BATCH_MAX_PAYLOAD_MB, REALTIME_MAX_PAYLOAD_MB
from dogbreed.launch import defaults
from dogbreed.launch.cli.options import aws_options, connect
from dogbreed.launch.endpoints.images import ServingImages, choose_image
from dogbreed.launch.errors import LaunchError


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
    aws_options(parser, role=True)


def run_deploy(args: argparse.Namespace) -> int:
    from dogbreed.launch.endpoints.autoscaling import Autoscaling
    from dogbreed.launch.endpoints.deploy import EndpointSpec, deploy, endpoint_mode
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
    aws = connect(args)
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
    aws_options(parser)


def run_invoke(args: argparse.Namespace) -> int:
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
    aws = connect(args)
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
    aws_options(parser, role=True)


def run_transform(args: argparse.Namespace) -> int:
    from dogbreed.launch.endpoints.deploy import EndpointSpec, model_request
    from dogbreed.launch.endpoints.transform import (
        TransformSpec,
        start_transform,
        transform_request,
        wait_for_transform,
    )
    from dogbreed.launch.session import resolve_role, unique_name
    from dogbreed.launch.training.jobs import model_artifact_of

    if args.model is None and not args.image:
        raise LaunchError("--job / --model-data need --image (the serving image URI)")
    aws = connect(args)
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
    parser.add_argument(
        "--yes",
        action="store_true",
        help="delete without asking (needed when stdin is not a terminal)",
    )
    aws_options(parser)


def run_cleanup(args: argparse.Namespace) -> int:
    """List what goes and what stays, ask, delete. Only what dogbreed tagged and nothing else
    uses goes; without a terminal to ask on and without --yes, exit 2 having deleted nothing."""
    from dogbreed.launch.endpoints.deploy import apply_cleanup, plan_cleanup

    aws = connect(args)
    plan = plan_cleanup(aws, args.endpoint)
    print("\n".join(plan.lines()))
    if not plan.count:
        if plan.keep:
            print(f"dogbreed cleanup: nothing deleted for {args.endpoint}", file=sys.stderr)
            return 1
        print(f"nothing named {args.endpoint} left")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            print(
                "dogbreed cleanup: nothing deleted: stdin is not a terminal, so there is no one "
                "to ask; pass --yes to delete the above",
                file=sys.stderr,
            )
            return 2
        answer = input(f"delete these {plan.count}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    print("\n".join(f"deleted {item}" for item in apply_cleanup(aws, plan)))
    return 0


def configure_endpoints(parser: argparse.ArgumentParser) -> None:
    aws_options(parser)


def run_endpoints(args: argparse.Namespace) -> int:
    from dogbreed.launch.endpoints.listing import endpoint_table, tool_endpoints

    aws = connect(args)
    now = datetime.now(UTC)
    print("\n".join(endpoint_table(tool_endpoints(aws, now), aws.region, now)))
    return 0
