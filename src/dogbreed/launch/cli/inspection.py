"""``dogbreed logs``, ``status``, ``report`` and ``preflight``: look at jobs, and at what a run
would trip on, before and after the money is spent (:mod:`dogbreed.launch.training`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dogbreed.launch import defaults
from dogbreed.launch.cli.options import aws_options, connect

# --- logs / status ------------------------------------------------------------------------


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
    aws_options(parser)


def run_logs(args: argparse.Namespace) -> int:
    from dogbreed.launch.training.watch import log_source, show_logs

    aws = connect(args)
    source = log_source(aws, args.name, trial=args.trial)
    ended = show_logs(aws, source, follow=args.follow, timeout_s=args.timeout)
    if ended:
        print(f"{source.kind} {source.name}: {ended}")
    return 0 if ended in (None, "Completed", "Deleted") else 1


def configure_status(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="a training job or a tuning job")
    aws_options(parser)


def run_status(args: argparse.Namespace) -> int:
    from dogbreed.launch.training.status import status_lines

    print("\n".join(status_lines(connect(args), args.name)))
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
    aws_options(parser)


def run_report(args: argparse.Namespace) -> int:
    from dogbreed.launch.training.report import write_report

    aws = connect(args) if args.job or (args.trial or "").startswith("s3://") else None
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
        "Check, before any money is spent, what a run would trip on: credentials, the role and "
        "its trust, the buckets and their region, the images in ECR, what the role may do with "
        "them (IAM's policy simulator: read --data, write --output, --checkpoint-s3 and the "
        "Debugger output, read --async-input and write --async-output, pull the images, use the "
        "buckets' KMS keys), and the SageMaker quotas "
        "for the training instances (the spot ones with --spot), the Debugger rule evaluations "
        "(processing jobs), tuning's parallel trials and the endpoint. Prints OK, PROBLEM (with "
        "the fix), WARNING (what may stop a run, and why) or SKIPPED per check; exit 1 on any "
        "PROBLEM."
    )
    parser.add_argument("--bucket", help="bucket (or s3:// URI) for data and output")
    parser.add_argument("--data", help="as train's --data: the S3 prefix the jobs read")
    parser.add_argument("--output", help="as train's --output: the S3 prefix the jobs write")
    parser.add_argument(
        "--checkpoint-s3",
        "--checkpoint",
        dest="checkpoint_s3",
        help="as train's --checkpoint-s3 (default with --spot: under --output)",
    )
    parser.add_argument("--debug-output", help="as train's --debug-output (default: --output)")
    parser.add_argument("--train-image", help="training image URI")
    parser.add_argument("--serve-image", help="serving image URI")
    parser.add_argument("--instance-type", default=defaults.TRAINING_INSTANCE_TYPE)
    parser.add_argument("--instance-count", type=int, default=1, help="per training job")
    parser.add_argument("--max-parallel", type=int, default=2, help="tune's parallel trials")
    parser.add_argument(
        "--spot",
        action="store_true",
        help="as train's and tune's --spot: check the spot training quota, and that the role "
        "may read and write the checkpoints",
    )
    parser.add_argument("--serve-instance-type", default=defaults.SERVING_INSTANCE_TYPE)
    parser.add_argument(
        "--async-output",
        help="as deploy --async's --output-s3: the prefix an async endpoint writes its results to",
    )
    parser.add_argument(
        "--async-input",
        help="as invoke's --input-s3: the prefix an async endpoint reads its requests from "
        "(default: input/ beside --async-output)",
    )
    parser.add_argument("--rules", default=",".join(DEFAULT_RULES), help="train's --rules")
    parser.add_argument("--no-debugger", action="store_true", help="as train's --no-debugger")
    parser.add_argument("--no-profiler", action="store_true", help="as train's --no-profiler")
    aws_options(parser, role=True)


def run_preflight(args: argparse.Namespace) -> int:
    from dogbreed.launch.endpoints.async_endpoint import beside
    from dogbreed.launch.session import ROLE_ENV
    from dogbreed.launch.training import preflight, quotas
    from dogbreed.launch.training.checks import print_report
    from dogbreed.launch.training.debugger import rule_image_uri

    aws = connect(args)
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    debugging = not (args.no_debugger and args.no_profiler) and rule_image_uri(aws.region)
    debug_output = (args.debug_output or args.output) if debugging else None
    # With --spot and no --checkpoint-s3, the job keeps checkpoints under <output>/<job>/.
    checkpoint = args.checkpoint_s3 or (args.output if args.spot else None)
    async_input = args.async_input or (
        beside(args.async_output, "input") if args.async_output else None
    )
    target = preflight.Target(
        role_arn=args.role or os.environ.get(ROLE_ENV),
        buckets=[preflight.bucket_of(args.bucket)] if args.bucket else [],
        images=[("training image", args.train_image), ("serving image", args.serve_image)],
        quotas=[
            quotas.training_need(args.instance_type, args.instance_count, args.spot),
            quotas.training_need(
                args.instance_type, args.instance_count, args.spot, args.max_parallel
            ),
            *quotas.rule_needs(aws.region, rules, not args.no_debugger, not args.no_profiler),
            quotas.QuotaNeed("endpoint", args.serve_instance_type, "endpoint", 1),
        ],
        reads=[args.data, checkpoint, async_input],
        writes=[args.output, args.checkpoint_s3, debug_output, args.async_output],
    )
    return print_report(preflight.run_checks(aws, target))
