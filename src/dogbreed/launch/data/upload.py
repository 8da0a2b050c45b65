"""``dogbreed upload``: a data set to ``s3://bucket/prefix/{train,valid,test}/``, resumable.

In order, before anything is sent: the source's layout is checked (:mod:`.upload_source`), the
bucket is found in the job's region (or created there with ``--create-bucket``), and the prefix is
listed. Then each file is sent with ``PutObject`` and its SHA-256 (``ChecksumSHA256``, which S3
verifies and keeps), unless an object of the same size is there whose stored SHA-256
(``HeadObject``, ``ChecksumMode=ENABLED``) is the file's: an object that was truncated, changed,
or uploaded without a SHA-256 is sent again. A few uploads run at once; every request has the
timeouts and bounded retries of :data:`CLIENT_CONFIG`.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import sys
import zipfile
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from dogbreed.archives import ArchiveError
from dogbreed.launch.data.progress import MB, Progress
from dogbreed.launch.data.upload_source import DataSource, SourceFile, open_source
from dogbreed.launch.errors import LaunchError
from dogbreed.launch.session import Aws, check_s3_prefix

DEFAULT_WORKERS = 4
MAX_WORKERS = 16
FAILURES_SHOWN = 5
#: Per request: 10 s to connect, 60 s between bytes read, 5 attempts with backoff.
CLIENT_CONFIG = Config(
    connect_timeout=10,
    read_timeout=60,
    retries={"max_attempts": 5, "mode": "standard"},
    max_pool_connections=MAX_WORKERS,
)


@dataclass(frozen=True)
class Remote:
    """An object already under the prefix: its size, and whether S3 keeps its SHA-256."""

    size: int
    has_sha256: bool


@dataclass
class Tally:
    uploaded: int = 0
    uploaded_size: int = 0
    already_there: int = 0


def s3_client(aws: Aws) -> Any:
    return aws.session.client("s3", region_name=aws.region, config=CLIENT_CONFIG)


def split_destination(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix/`` -> ``("bucket", "prefix/")``; the prefix always ends in ``/``."""
    bucket, _, prefix = check_s3_prefix(uri, "the destination").removeprefix("s3://").partition("/")
    return bucket, prefix.lstrip("/")


def ensure_bucket(s3: Any, bucket: str, region: str, create: bool) -> bool:
    """Check the bucket is in ``region``, creating it there if asked; True when created."""
    try:
        found = s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code in ("403", "AccessDenied"):
            raise LaunchError(
                f"no access to bucket {bucket}: it belongs to another account (bucket names are "
                "global: pick another), or your credentials lack s3:ListBucket on it"
            ) from None
        if code not in ("404", "NoSuchBucket"):
            raise
        if not create:
            raise LaunchError(
                f"bucket {bucket} does not exist: pass --create-bucket to create it in {region}"
            ) from None
        create_bucket(s3, bucket, region)
        return True
    where = found.get("BucketRegion")
    if where and where != region:
        raise LaunchError(
            f"bucket {bucket} is in {where}, not in {region}: a training job reads its data from "
            f"its own region; pass --region {where} (and train there) or use a bucket in {region}"
        )
    return False


def create_bucket(s3: Any, bucket: str, region: str) -> None:
    # us-east-1 takes no LocationConstraint (it is refused there); every other region needs one.
    where = {} if region == "us-east-1" else {"LocationConstraint": region}
    try:
        s3.create_bucket(Bucket=bucket, **({"CreateBucketConfiguration": where} if where else {}))
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "BucketAlreadyExists":
            raise
        raise LaunchError(
            f"bucket name {bucket} is taken by another account (names are global): pick another"
        ) from None


def list_remote(s3: Any, bucket: str, prefix: str) -> dict[str, Remote]:
    """Every object under ``prefix``, by key."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = Remote(item["Size"], "SHA256" in item.get("ChecksumAlgorithm", []))
    return found


def sha256_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def send_one(s3: Any, bucket: str, key: str, data: bytes, remote: Remote | None) -> bool:
    """Put ``data`` at ``key`` unless the object there has its size and SHA-256; True if put."""
    checksum = sha256_base64(data)
    if remote and remote.has_sha256 and remote.size == len(data):
        there = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        if there.get("ChecksumSHA256") == checksum:
            return False
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=data,
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=checksum,
        ContentType=mimetypes.guess_type(key)[0] or "application/octet-stream",
    )
    return True


def send(
    s3: Any,
    source: DataSource,
    bucket: str,
    prefix: str,
    remote: dict[str, Remote],
    workers: int,
    progress: Progress,
) -> Tally:
    """Send every file of ``source`` that is not there yet, ``workers`` at a time.

    Files are read here, one after the other (a zip member by member); at most ``2 * workers``
    wait in memory. After a failure no new file starts; the error names each failed file and key.
    """
    tally, failures = Tally(), []
    pending: dict[Future[bool], SourceFile] = {}

    def collect(done: Iterable[Future[bool]]) -> None:
        for future in done:
            file = pending.pop(future)
            try:
                put = future.result()
            except (BotoCoreError, ClientError) as error:
                failures.append(f"{file.name} -> s3://{bucket}/{prefix}{file.key}: {error}")
                continue
            tally.uploaded += put
            tally.uploaded_size += file.size if put else 0
            tally.already_there += not put
            progress.advance(file.size)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upload") as pool:
        for file in source.files:
            if failures:
                break
            try:
                data = source.read(file)
            except (OSError, zipfile.BadZipFile, ArchiveError) as error:  # an image past its cap
                failures.append(f"{file.name}: cannot read it from {source.location}: {error}")
                break
            key = prefix + file.key
            pending[pool.submit(send_one, s3, bucket, key, data, remote.get(key))] = file
            if len(pending) >= 2 * workers:
                collect(wait(pending, return_when=FIRST_COMPLETED).done)
        collect(wait(pending).done)
    progress.finish()
    if failures:
        listed = "\n".join(f"  - {failure}" for failure in sorted(failures)[:FAILURES_SHOWN])
        raise LaunchError(
            f"{len(failures)} files failed ({tally.uploaded} uploaded, {tally.already_there} "
            f"already there); run the same command again to send the rest:\n{listed}"
        )
    return tally


def upload_data(
    source_path: Path,
    destination: str,
    connect: Callable[[], Aws],
    create_bucket: bool = False,
    workers: int = DEFAULT_WORKERS,
) -> Tally:
    """The command: check the source, then the bucket, list the prefix and send what is missing."""
    if not 1 <= workers <= MAX_WORKERS:
        raise LaunchError(f"--workers must be 1 to {MAX_WORKERS}; got {workers}")
    bucket, prefix = split_destination(destination)
    with open_source(source_path) as source:
        print(source.summary())
        aws = connect()
        s3 = s3_client(aws)
        if ensure_bucket(s3, bucket, aws.region, create_bucket):
            print(f"created bucket {bucket} in {aws.region}")
        remote = list_remote(s3, bucket, prefix)
        progress = Progress(len(source.files), source.size, sys.stderr)
        tally = send(s3, source, bucket, prefix, remote, workers, progress)
    target = f"s3://{bucket}/{prefix}"
    print(
        f"uploaded {tally.uploaded} files ({tally.uploaded_size / MB:.1f} MB), "
        f"{tally.already_there} already there (same size and SHA-256): {target}",
    )
    extra = set(remote) - {prefix + file.key for file in source.files}
    if extra:
        print(
            f"note: {len(extra)} objects under {target} are not in {source.location}; they were "
            "left as they are (jobs read any image in a class folder there)",
        )
    print(f"train with: --data {target}")
    return tally
