"""Options and helpers that every group of commands shares: the AWS options and the session."""

from __future__ import annotations

import argparse
from typing import Any


def aws_options(parser: argparse.ArgumentParser, role: bool = False) -> None:
    """``--region`` and ``--profile`` (and ``--role`` for commands that create SageMaker jobs)."""
    group = parser.add_argument_group("AWS")
    group.add_argument("--region", help="AWS region (default: AWS_REGION / your AWS config)")
    group.add_argument("--profile", help="AWS named profile")
    if role:
        group.add_argument(
            "--role", help="SageMaker execution role ARN (default: $DOGBREED_ROLE_ARN)"
        )


def connect(args: argparse.Namespace) -> Any:
    """The :class:`~dogbreed.launch.session.Aws` session of ``--region`` and ``--profile``."""
    from dogbreed.launch.session import Aws

    return Aws.connect(region=args.region, profile=args.profile)
