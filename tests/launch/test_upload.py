"""``dogbreed upload``: layout checks, bucket and region, upload and resume against moto's S3;
the request shapes against botocore's S3 model (Stubber); the progress display."""

from __future__ import annotations

import io
import os
import resource
import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber
from PIL import Image

from dogbreed.archives import ArchiveError, Limits, read_bounded
from dogbreed.launch.cli.main import main
from dogbreed.launch.data import upload
from dogbreed.launch.data.progress import Progress
from dogbreed.launch.data.upload_source import open_source
from dogbreed.launch.errors import LaunchError
from dogbreed.launch.session import Aws

from .conftest import BREEDS, SPLITS

BUCKET = "dogbreed-data"
DEST = f"s3://{BUCKET}/dogImages/"
JUNK = (
    "__MACOSX/dogImages/train/001.Affenpinscher/._a.jpg",
    "dogImages/.DS_Store",
    "dogImages/train/001.Affenpinscher/._b.jpg",
    "dogImages/valid/Thumbs.db",
)


def tiny_jpeg(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, 255 - shade, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


def images(splits: tuple[str, ...] = SPLITS, classes: tuple[str, ...] = BREEDS) -> dict[str, bytes]:
    """Two distinct tiny JPEGs per class folder of each split: ``{path: bytes}``."""
    files, shade = {}, 0
    for split in splits:
        for breed in classes:
            for name in ("a.jpg", "b.jpg"):
                files[f"{split}/{breed}/{name}"] = tiny_jpeg(shade)
                shade += 7
    return files


def write_zip(
    path: Path, files: dict[str, bytes], root: str = "dogImages/", junk: tuple[str, ...] = JUNK
) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(root + name, data)
        for name in junk:
            archive.writestr(name, b"junk")
    return path


@pytest.fixture
def calls(s3_url: str, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(operation, key) of every request the uploader's S3 client sends."""
    sent: list[tuple[str, str]] = []
    real = upload.s3_client

    def recording(aws: Aws) -> object:
        client = real(aws)
        client.meta.events.register(
            "before-parameter-build.s3.*",
            lambda model, params, **_: sent.append((model.name, params.get("Key", ""))),
        )
        return client

    monkeypatch.setattr(upload, "s3_client", recording)
    return sent


def s3(region: str = "us-east-1", **config: str) -> object:
    return boto3.client("s3", region_name=region, config=Config(**config))


def stored(prefix: str = "dogImages/") -> dict[str, bytes]:
    client = s3()
    keys = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in keys}


def puts(sent: list[tuple[str, str]]) -> list[str]:
    return sorted(key for operation, key in sent if operation == "PutObject")


def test_a_zip_is_uploaded_into_a_new_bucket_then_a_second_run_sends_nothing(
    calls, tmp_path, capsys
):
    files = images()
    source = write_zip(tmp_path / "dogImages.zip", files)
    args = ["upload", str(source), DEST, "--create-bucket", "--region", "eu-west-1"]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "3 classes, 18 images (train 6, valid 6, test 6)" in printed.out
    assert "skipped 4 junk files" in printed.out
    assert f"created bucket {BUCKET} in eu-west-1" in printed.out
    assert f"uploaded 18 files ({sum(map(len, files.values())) / 1e6:.1f} MB), 0 already" in (
        printed.out
    )
    assert "[########################] 18/18 files" in printed.err
    assert stored() == {f"dogImages/{name}": data for name, data in files.items()}
    assert s3().get_bucket_location(Bucket=BUCKET)["LocationConstraint"] == "eu-west-1"

    calls.clear()
    assert main(args) == 0
    assert "uploaded 0 files (0.0 MB), 18 already there" in capsys.readouterr().out
    assert puts(calls) == []
    assert len([op for op, _ in calls if op == "HeadObject"]) == 18


def test_truncated_changed_and_unchecksummed_objects_are_sent_again(calls, tmp_path, capsys):
    files = images()
    source = write_zip(tmp_path / "dogImages.zip", files)
    s3().create_bucket(Bucket=BUCKET)
    assert main(["upload", str(source), DEST]) == 0
    truncated, changed, unchecked = (f"dogImages/{name}" for name in list(files)[:3])
    plain = s3(request_checksum_calculation="when_required")  # sends no checksum
    plain.put_object(Bucket=BUCKET, Key=truncated, Body=files[truncated[10:]][:-10])
    same_size = bytes(255 - b for b in files[changed[10:]])
    s3().put_object(Bucket=BUCKET, Key=changed, Body=same_size, ChecksumAlgorithm="SHA256")
    plain.put_object(Bucket=BUCKET, Key=unchecked, Body=files[unchecked[10:]])
    capsys.readouterr()
    calls.clear()

    assert main(["upload", str(source), DEST]) == 0
    assert "uploaded 3 files" in capsys.readouterr().out
    assert puts(calls) == sorted([truncated, changed, unchecked])
    assert stored() == {f"dogImages/{name}": data for name, data in files.items()}


def test_a_folder_with_the_splits_at_its_top_and_validation_for_valid(calls, tmp_path, capsys):
    files = images(("train", "validation", "test"))
    for name, data in files.items():
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / name).write_bytes(data)
    (tmp_path / "data" / ".DS_Store").write_bytes(b"junk")
    s3().create_bucket(Bucket=BUCKET)
    assert main(["upload", str(tmp_path / "data"), f"s3://{BUCKET}/dogs", "--workers", "2"]) == 0
    assert "train with: --data s3://dogbreed-data/dogs/" in capsys.readouterr().out
    renamed = {name.replace("validation/", "valid/"): data for name, data in files.items()}
    assert stored("dogs/") == {f"dogs/{name}": data for name, data in renamed.items()}


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        (images(("train", "valid")), "no test split: expected a test/ folder of class folders"),
        (
            {**images(("train", "valid")), **images(("test",), (*BREEDS[:2], "004.Akita"))},
            "class folders differ between train and test: only in train: 003.Airedale_terrier; "
            "only in test: 004.Akita",
        ),
        (
            {**images(), "valid/001.Affenpinscher/notes.txt": b"x"},
            "1 non-image files in valid/ (images end in .bmp, .gif, .jpeg, .jpg, .png, .tif, "
            ".tiff, .webp): valid/001.Affenpinscher/notes.txt",
        ),
        (
            {**images(), "test/004.Akita/.DS_Store": b"junk"},
            "class folders without images in test/: 004.Akita",
        ),
        ({**images(), "train/c.jpg": b"x"}, "files outside class folders in train/: train/c.jpg"),
        (
            {**images(), **images(("val",))},
            "valid split twice: valid, val; keep one",
        ),
    ],
    ids=["no-test", "classes-differ", "not-an-image", "empty-class", "stray-file", "two-valid"],
)
def test_a_layout_with_problems_is_refused_before_any_request(
    files, problem, calls, tmp_path, capsys
):
    source = write_zip(tmp_path / "dogImages.zip", files)
    assert main(["upload", str(source), DEST, "--create-bucket"]) == 1
    err = capsys.readouterr().err
    assert "nothing uploaded, the data set has problems:" in err
    assert f"  - {problem}" in err
    assert calls == []


def test_a_source_without_splits_names_what_it_holds(calls, tmp_path, capsys):
    source = write_zip(tmp_path / "photos.zip", {"a.jpg": b"x", "b/c.jpg": b"y"}, "", ())
    assert main(["upload", str(source), DEST]) == 1
    assert "no train/ valid/ test/ at its top or in its only folder (found a.jpg, b)" in (
        capsys.readouterr().err
    )
    assert calls == []


def test_a_missing_bucket_without_create_bucket_is_an_error_naming_the_flag(
    calls, tmp_path, capsys
):
    source = write_zip(tmp_path / "dogImages.zip", images())
    assert main(["upload", str(source), DEST, "--region", "eu-west-1"]) == 1
    assert (
        f"bucket {BUCKET} does not exist: pass --create-bucket to create it in eu-west-1"
        in capsys.readouterr().err
    )
    assert puts(calls) == []


def test_a_bucket_in_another_region_is_refused(calls, tmp_path, capsys):
    location = {"LocationConstraint": "us-west-2"}
    s3("us-west-2").create_bucket(Bucket=BUCKET, CreateBucketConfiguration=location)
    source = write_zip(tmp_path / "dogImages.zip", images())
    assert main(["upload", str(source), DEST, "--region", "eu-west-1", "--create-bucket"]) == 1
    assert (
        f"bucket {BUCKET} is in us-west-2, not in eu-west-1: a training job reads its data from "
        "its own region; pass --region us-west-2"
    ) in capsys.readouterr().err
    assert [op for op, _ in calls] == ["HeadBucket"]


# --- request shapes, validated against botocore's S3 model -----------------------------------


@pytest.fixture
def stubbed(fake_aws: None) -> Iterator[tuple[object, Stubber]]:
    client = upload.s3_client(Aws.connect(region="eu-west-1"))
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("region", "configuration"),
    [
        ("us-east-1", {}),
        ("eu-west-1", {"CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}}),
    ],
)
def test_create_bucket_request(region, configuration, fake_aws):
    client = upload.s3_client(Aws.connect(region=region))
    with Stubber(client) as stubber:
        stubber.add_client_error("head_bucket", "404", "Not Found", 404, {"Bucket": BUCKET})
        stubber.add_response("create_bucket", {}, {"Bucket": BUCKET, **configuration})
        assert upload.ensure_bucket(client, BUCKET, region, create=True) is True
        stubber.assert_no_pending_responses()


def test_resume_and_put_requests(stubbed, tmp_path):
    client, stubber = stubbed
    files = images()
    with open_source(write_zip(tmp_path / "dogImages.zip", files)) as source:
        first, second, *rest = source.files
        checksum = upload.sha256_base64(files[first.key])
        listed = [
            {"Key": f"dogImages/{first.key}", "Size": first.size, "ChecksumAlgorithm": ["SHA256"]},
            {"Key": f"dogImages/{second.key}", "Size": second.size - 1},
        ]
        stubber.add_response(
            "list_objects_v2",
            {"Contents": listed, "IsTruncated": False, "KeyCount": 2},
            {"Bucket": BUCKET, "Prefix": "dogImages/"},
        )
        head = {"Bucket": BUCKET, "Key": f"dogImages/{first.key}", "ChecksumMode": "ENABLED"}
        stubber.add_response("head_object", {"ChecksumSHA256": checksum}, head)
        for file in (second, *rest):
            data = files[file.key]
            put = {"Bucket": BUCKET, "Key": f"dogImages/{file.key}", "Body": data}
            put |= {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": upload.sha256_base64(data)}
            stubber.add_response("put_object", {}, {**put, "ContentType": "image/jpeg"})
        remote = upload.list_remote(client, BUCKET, "dogImages/")
        progress = Progress(len(source.files), source.size, io.StringIO())
        tally = upload.send(client, source, BUCKET, "dogImages/", remote, 1, progress)
    assert (tally.uploaded, tally.already_there) == (17, 1)


def test_a_failed_put_names_the_file_and_the_key(stubbed, tmp_path):
    client, stubber = stubbed
    with open_source(write_zip(tmp_path / "dogImages.zip", images())) as source:
        for _ in range(2):  # the first file fails while the second waits; no third starts
            stubber.add_client_error("put_object", "AccessDenied", "Access Denied", 403)
        progress = Progress(len(source.files), source.size, io.StringIO())
        with pytest.raises(LaunchError) as raised:
            upload.send(client, source, BUCKET, "dogImages/", {}, 1, progress)
    error = "An error occurred (AccessDenied) when calling the PutObject operation: Access Denied"
    failed = [f"dogImages/test/001.Affenpinscher/{name}" for name in ("a.jpg", "b.jpg")]
    assert str(raised.value) == (
        "2 files failed (0 uploaded, 0 already there); run the same command again to send the "
        "rest:\n" + "\n".join(f"  - {path} -> s3://{BUCKET}/{path}: {error}" for path in failed)
    )


# --- progress ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_in_a_log_is_a_line_every_interval():
    clock, log = Clock(), io.StringIO()
    progress = Progress(files=4, size=4_000_000, stream=log, clock=clock, interval=10)
    for _ in range(4):
        clock.now += 4
        progress.advance(1_000_000)
    progress.finish()
    assert log.getvalue().splitlines() == [
        "[##################------] 3/4 files  3.0/4.0 MB  0.2 MB/s",
        "[########################] 4/4 files  4.0/4.0 MB  0.2 MB/s",
    ]


def test_progress_on_a_terminal_redraws_one_line():
    clock, terminal = Clock(), Terminal()
    progress = Progress(files=2, size=2_000_000, stream=terminal, clock=clock)
    for _ in range(2):
        clock.now += 1
        progress.advance(1_000_000)
    progress.finish()
    assert terminal.getvalue() == (
        "\r[############------------] 1/2 files  1.0/2.0 MB  1.0 MB/s"
        "\r[########################] 2/2 files  2.0/2.0 MB  1.0 MB/s"
        "\r[########################] 2/2 files  2.0/2.0 MB  1.0 MB/s\n"
    )


# --- hostile files and names (issue 23, finding 6) -------------------------------------------

MIB = 1 << 20


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_symlinks_are_skipped_and_counted_never_followed(calls, tmp_path, capsys):
    """On da1db7c the link to the credentials file was sent, with that file's 53 bytes, as
    train/001.Affenpinscher/creds.jpg (and a linked class folder failed the layout check)."""
    files = images()
    data = write_folder(tmp_path / "data", files)
    credentials = tmp_path / "credentials"
    credentials.write_text("[default]\naws_secret_access_key = SECRET-DO-NOT-SEND\n")
    (data / "train/001.Affenpinscher/creds.jpg").symlink_to(credentials)
    s3().create_bucket(Bucket=BUCKET)
    assert main(["upload", str(data), DEST]) == 0
    assert "18 images" in (out := capsys.readouterr().out) and "skipped 1 symlinks" in out
    assert stored() == {f"dogImages/{name}": data for name, data in files.items()}

    write_folder(tmp_path / "elsewhere", {"c.jpg": tiny_jpeg(1)})
    (data / "train/004.Akita").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert main(["upload", str(data), DEST]) == 0
    assert "18 images" in (out := capsys.readouterr().out) and "skipped 2 symlinks" in out
    assert "uploaded 0 files" in out


def test_a_name_that_is_not_utf8_is_refused_naming_the_file(calls, tmp_path, capsys):
    """On da1db7c: accepted, then a raw UnicodeEncodeError when its key was sent."""
    data = write_folder(tmp_path / "data", images())
    with open(os.fsencode(data / "valid/002.Afghan_hound") + b"/caf\xe9.jpg", "wb") as out:
        out.write(tiny_jpeg(3))
    assert main(["upload", str(data), DEST, "--create-bucket"]) == 1
    err = capsys.readouterr().err
    assert "nothing uploaded, names that cannot become S3 keys (1):" in err
    assert "  - 'valid/002.Afghan_hound/caf\\udce9.jpg': not UTF-8 (rename it)" in err
    assert calls == []


def flag_member(path: Path, name: str, *, flags: int = 0, method: int | None = None) -> None:
    """Set ``flags`` and (if given) the compression ``method`` of ``name``'s headers in the zip
    at ``path``, as an encrypting or deflate64 zip tool writes them (zipfile writes neither)."""
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    # (signature, offset of the flags, of the name's length, of the name): local, then central.
    headers = ((b"PK\x03\x04", 6, 26, 30), (b"PK\x01\x02", 8, 28, 46))
    for signature, flag_at, length_at, name_at in headers:
        start = data.find(signature)
        while start != -1:
            length = int.from_bytes(data[start + length_at : start + length_at + 2], "little")
            if data[start + name_at : start + name_at + length] == encoded:
                data[start + flag_at] |= flags
                if method is not None:
                    data[start + flag_at + 2 : start + flag_at + 4] = method.to_bytes(2, "little")
            start = data.find(signature, start + 4)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("flags", "method", "says"),
    [(0x1, None, "encrypted"), (0, 9, "compression method 9")],
    ids=["encrypted", "deflate64"],
)
def test_a_zip_with_unreadable_members_is_refused_before_any_request(
    flags, method, says, calls, tmp_path, capsys
):
    """On 512debb an encrypted member stopped the upload midway with a RuntimeError traceback
    (a deflate64 one: NotImplementedError), after the files before it were sent."""
    files = images()
    source = write_zip(tmp_path / "dogImages.zip", files)
    name = "dogImages/" + sorted(files)[-1]
    flag_member(source, name, flags=flags, method=method)
    assert main(["upload", str(source), DEST, "--create-bucket"]) == 1
    err = capsys.readouterr().err
    assert "nothing uploaded, 1 files cannot be read" in err
    assert f"  - {name!r}: {says}" in err
    assert "Traceback" not in err
    assert calls == []


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("a\nb.jpg", "a\\nb.jpg"),
        ("\x1b[2Jx.jpg", "\\x1b[2Jx.jpg"),
        ("x\u202egpj.jpg", "x\\u202egpj.jpg"),
    ],
    ids=["newline", "escape", "right-to-left-override"],
)
def test_names_with_control_characters_are_refused_shown_escaped(
    name, shown, calls, tmp_path, capsys
):
    """On da1db7c each was uploaded under a key holding that name as is."""
    files = {**images(), f"train/001.Affenpinscher/{name}": tiny_jpeg(9)}
    source = write_zip(tmp_path / "dogImages.zip", files)
    assert main(["upload", str(source), DEST, "--create-bucket"]) == 1
    err = capsys.readouterr().err
    assert f"  - 'dogImages/train/001.Affenpinscher/{shown}': holds the control character " in err
    assert all(ord(c) >= 32 and c not in "\u202e" for c in err.replace("\n", ""))
    assert calls == []


def test_names_that_would_leave_their_folder_never_become_keys(calls, tmp_path, capsys):
    """A ``..`` part is skipped as a hidden name (so it was on da1db7c too); a leading ``/`` is
    now refused by name (da1db7c refused it for its layout: no train/ at the top)."""
    files = {**images(), "train/001.Affenpinscher/../../../../etc/x.jpg": tiny_jpeg(9)}
    source = write_zip(tmp_path / "dogImages.zip", files, root="/dogImages/")
    assert main(["upload", str(source), DEST, "--create-bucket"]) == 1
    err = capsys.readouterr().err
    assert (
        "  - '/dogImages/train/001.Affenpinscher/a.jpg': leaves its folder (a leading / or " in err
    )
    assert calls == []
    source = write_zip(tmp_path / "dogImages.zip", files)
    assert main(["upload", str(source), DEST, "--create-bucket"]) == 0
    assert "skipped 5 junk files" in capsys.readouterr().out
    assert [key for _, key in calls if ".." in key] == []


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data set zip holding a 512 MiB member (zeros) deflated to ~0.5 MB, written streaming."""
    path = write_zip(tmp_path_factory.mktemp("bomb") / "dogImages.zip", images())
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        name = "dogImages/train/001.Affenpinscher/bomb.jpg"
        with archive.open(name, "w", force_zip64=True) as member:
            for _ in range(512):
                member.write(bytes(MIB))
    assert path.stat().st_size < MIB
    return path


def test_a_zip_member_inflating_past_the_cap_is_refused_before_it_is_read(zip_bomb, calls, capsys):
    """On da1db7c the 0.5 MB member was read whole: 512 MiB in memory (max RSS +1 GiB)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(["upload", str(zip_bomb), DEST, "--create-bucket"]) == 1
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert "1 files over 64 MiB, the cap on an image: train/001.Affenpinscher/bomb.jpg" in (
        capsys.readouterr().err
    )
    assert calls == [] and grown_mib < 64


class Endless(io.RawIOBase):
    """A stream that never ends, as a member whose header lies about its size reads."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:
        buffer[:] = bytes(len(buffer))
        return len(buffer)


def test_reading_stops_at_the_cap_whatever_the_header_said():
    limits = Limits("an image", 3 * MIB)
    with pytest.raises(ArchiveError, match=r"'x.jpg' inflates past the cap on an image: 3,145,728"):
        read_bounded(io.BufferedReader(Endless()), "x.jpg", limits)
    assert read_bounded(io.BytesIO(bytes(3 * MIB)), "x.jpg", limits) == bytes(3 * MIB)
