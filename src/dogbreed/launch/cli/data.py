"""``dogbreed upload``: check a data set and put it in S3 (:mod:`dogbreed.launch.data`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dogbreed.launch.cli.options import aws_options, connect


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
    aws_options(parser)


def run_upload(args: argparse.Namespace) -> int:
    from dogbreed.launch.data.upload import upload_data

    upload_data(
        args.source, args.destination, lambda: connect(args), args.create_bucket, args.workers
    )
    return 0
