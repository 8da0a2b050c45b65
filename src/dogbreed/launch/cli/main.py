"""``dogbreed``: the command line over :mod:`dogbreed.launch`.

Each subcommand is a pair in :data:`COMMANDS`: ``configure(parser)`` adds its options and
``run(args) -> int`` does the work by calling library functions. The pairs live in one module per
group of commands (:mod:`.data`, :mod:`.jobs`, :mod:`.inspection`, :mod:`.endpoints`), the
options they share in :mod:`.options`. Heavy imports (boto3, the SageMaker SDK, smdebug) happen
inside ``run``, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from dogbreed.launch.cli import data, endpoints, inspection, jobs
from dogbreed.launch.errors import LaunchError

Configure = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]


COMMANDS: dict[str, tuple[str, Configure, Run]] = {
    "upload": (
        "check a data set (zip or folder) and upload it to S3",
        data.configure_upload,
        data.run_upload,
    ),
    "tune": (
        "start a hyperparameter tuning job (maximise valid:accuracy)",
        jobs.configure_tune,
        jobs.run_tune,
    ),
    "train": (
        "one training job with Debugger rules and the profiler",
        jobs.configure_train,
        jobs.run_train,
    ),
    "deploy": (
        "serve a trained model: real-time, serverless or async endpoint",
        endpoints.configure_deploy,
        endpoints.run_deploy,
    ),
    "invoke": (
        "send JPEG/PNG files to an endpoint, print the top-k breeds",
        endpoints.configure_invoke,
        endpoints.run_invoke,
    ),
    "transform": (
        "batch transform over an S3 prefix of images",
        endpoints.configure_transform,
        endpoints.run_transform,
    ),
    "cleanup": (
        "delete what dogbreed deployed for an endpoint and nothing still uses (asks first)",
        endpoints.configure_cleanup,
        endpoints.run_cleanup,
    ),
    "preflight": (
        "what a run would trip on (role, bucket, images, quotas), with fixes",
        inspection.configure_preflight,
        inspection.run_preflight,
    ),
    "report": (
        "loss and gradient plots, rule verdicts, profiler report",
        inspection.configure_report,
        inspection.run_report,
    ),
    "logs": (
        "print or follow the CloudWatch logs of a training job, tuning trial or endpoint",
        inspection.configure_logs,
        inspection.run_logs,
    ),
    "status": (
        "a training or tuning job's status, times and billed seconds",
        inspection.configure_status,
        inspection.run_status,
    ),
    "endpoints": (
        "the live endpoints dogbreed made, with instances, age and cost per hour and month",
        endpoints.configure_endpoints,
        endpoints.run_endpoints,
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
