"""What the execution role may do, asked of IAM's policy simulator by `preflight`, `train`, `tune`.

A role with only AmazonSageMakerFullAccess reaches S3 objects only in buckets or keys named
"sagemaker" (any case) or "aws-glue", or objects tagged SageMaker=true: it cannot read the docs'
own my-dogbreed-bucket. The simulator (SimulatePrincipalPolicy) answers for the role's own
policies, not for bucket or key policies: an explicit deny is a PROBLEM, and so is an implicit deny
where the bucket has no bucket policy (GetBucketPolicy: NoSuchBucketPolicy); any other implicit
deny is a WARNING. Every request below is stubbed with its exact parameters (Stubber also checks
them against botocore's model): the actions, the resource ARNs and the context keys.
"""

from __future__ import annotations

import json

import pytest

from dogbreed.launch.cli.main import main
from dogbreed.launch.training import permissions
from dogbreed.launch.training.permissions import Needs, Question

from .conftest import ROLE, TRAIN_IMAGE, role_description, stub_dog_images
from .permission_stubs import (
    PULL,
    allowed,
    answer,
    asked,
    decided,
    quota,
    repository_arn,
    stub_simulation,
)

BUCKET = "my-dogbreed-bucket"
DATA = f"arn:aws:s3:::{BUCKET}/dogImages/*"
OUTPUT = f"arn:aws:s3:::{BUCKET}/runs/*"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
REPOSITORY = repository_arn(TRAIN_IMAGE)
KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
PREFLIGHT = [
    "preflight",
    "--role",
    ROLE,
    "--data",
    f"s3://{BUCKET}/dogImages",
    "--output",
    f"s3://{BUCKET}/runs",
    "--train-image",
    TRAIN_IMAGE,
    "--no-debugger",
    "--no-profiler",
]
TRAIN = [
    "train",
    "--image",
    TRAIN_IMAGE,
    "--role",
    ROLE,
    "--name",
    "dogbreed-train-1",
    "--data",
    f"s3://{BUCKET}/dogImages",
    "--output",
    f"s3://{BUCKET}/runs",
]
#: The inline policy a run over PREFLIGHT's (or TRAIN's) data, output and image needs.
POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": DATA},
        {
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": BUCKET_ARN,
            "Condition": {"StringLike": {"s3:prefix": ["dogImages/*"]}},
        },
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": OUTPUT},
        {"Effect": "Allow", "Action": PULL, "Resource": REPOSITORY},
        {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
    ],
}
PUT_POLICY = (
    "aws iam put-role-policy --role-name dogbreed-sagemaker --policy-name dogbreed-access "
    f"--policy-document '{json.dumps(POLICY, separators=(',', ':'))}'"
)
SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
SSE_KMS = {
    "Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY}}
    ]
}


def stub_role_and_resources(stub, *, caller: bool = True, encryption: dict = SSE_S3) -> None:
    """Before the simulator: the caller (preflight only), the role (it trusts SageMaker), the
    bucket (in us-east-1), the image (in ECR), the bucket's default encryption."""
    if caller:
        stub("sts").add_response(
            "get_caller_identity",
            {
                "UserId": "AIDA",
                "Account": "123456789012",
                "Arn": "arn:aws:iam::123456789012:user/me",
            },
        )
    stub("iam").add_response("get_role", role_description(), {"RoleName": "dogbreed-sagemaker"})
    stub("s3").add_response("head_bucket", {}, {"Bucket": BUCKET})
    stub("s3").add_response("get_bucket_location", {}, {"Bucket": BUCKET})
    repository = TRAIN_IMAGE.split("/", 1)[1].split(":")[0]
    stub("ecr").add_response(
        "describe_images",
        {"imageDetails": [{}]},
        {
            "registryId": "123456789012",
            "repositoryName": repository,
            "imageIds": [{"imageTag": "1.0"}],
        },
    )
    stub("s3").add_response(
        "get_bucket_encryption",
        {"ServerSideEncryptionConfiguration": encryption},
        {"Bucket": BUCKET},
    )


def stub_s3_questions(stub, get: str, listing: str, put: str) -> None:
    """The data, listing and output questions, each answered with one decision."""
    iam = stub("iam")
    stub_simulation(iam, ROLE, ["s3:GetObject"], [DATA], [decided("s3:GetObject", {DATA: get})])
    stub_simulation(
        iam,
        ROLE,
        ["s3:ListBucket"],
        [BUCKET_ARN],
        [decided("s3:ListBucket", {BUCKET_ARN: listing})],
    )
    stub_simulation(iam, ROLE, ["s3:PutObject"], [OUTPUT], [decided("s3:PutObject", {OUTPUT: put})])


def stub_image_questions(stub) -> None:
    iam = stub("iam")
    stub_simulation(iam, ROLE, PULL, [REPOSITORY], allowed(*PULL))
    stub_simulation(
        iam, ROLE, ["ecr:GetAuthorizationToken"], ["*"], allowed("ecr:GetAuthorizationToken")
    )


def stub_quotas(stub, *names: str) -> None:
    stub("service-quotas").add_response(
        "list_service_quotas",
        {"Quotas": [quota(name, 8) for name in names]},
        {"ServiceCode": "sagemaker"},
    )


PREFLIGHT_QUOTAS = ("ml.g4dn.xlarge for training job usage", "ml.m5.large for endpoint usage")


def lines(out: str, status: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(status)]


def test_the_simulator_is_asked_exactly_what_a_spot_run_reads_writes_and_pulls(
    stub, capsys
) -> None:
    """--spot with --checkpoint-s3: SageMaker copies the checkpoints onto the instance at start
    (read) and uploads them (write); the Debugger output is written too."""
    checkpoints = f"arn:aws:s3:::{BUCKET}/checkpoints/run1/*"
    debug = f"arn:aws:s3:::{BUCKET}/debug/*"
    stub_role_and_resources(stub)
    iam = stub("iam")
    stub_simulation(iam, ROLE, ["s3:GetObject"], [DATA, checkpoints], allowed("s3:GetObject"))
    stub_simulation(iam, ROLE, ["s3:ListBucket"], [BUCKET_ARN], allowed("s3:ListBucket"))
    stub_simulation(
        iam, ROLE, ["s3:PutObject"], [OUTPUT, checkpoints, debug], allowed("s3:PutObject")
    )
    stub_image_questions(stub)
    stub_quotas(
        stub,
        "ml.g4dn.xlarge for spot training job usage",
        "ml.m5.xlarge for processing job usage",
        "ml.m5.large for endpoint usage",
    )
    args = [a for a in PREFLIGHT if a not in ("--no-debugger", "--no-profiler")]
    args += ["--spot", "--checkpoint-s3", f"s3://{BUCKET}/checkpoints/run1"]
    args += ["--debug-output", f"s3://{BUCKET}/debug"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert (
        "OK       role permissions: dogbreed-sagemaker may read s3://my-dogbreed-bucket/dogImages/, "
        "s3://my-dogbreed-bucket/checkpoints/run1/; write s3://my-dogbreed-bucket/runs/, "
        "s3://my-dogbreed-bucket/checkpoints/run1/, s3://my-dogbreed-bucket/debug/; pull "
        "dogbreed-train from ECR (IAM policy simulator)"
    ) in out
    assert lines(out, "PROBLEM") == [] and lines(out, "WARNING") == []


def test_an_async_endpoints_input_and_output_are_asked_about(stub, capsys) -> None:
    """An async endpoint reads its requests from S3 and writes its answers there, as the role."""
    requests = f"arn:aws:s3:::{BUCKET}/async/input/*"
    answers = f"arn:aws:s3:::{BUCKET}/async/out/*"
    stub_role_and_resources(stub)
    iam = stub("iam")
    stub_simulation(iam, ROLE, ["s3:GetObject"], [DATA, requests], allowed("s3:GetObject"))
    stub_simulation(iam, ROLE, ["s3:ListBucket"], [BUCKET_ARN], allowed("s3:ListBucket"))
    stub_simulation(iam, ROLE, ["s3:PutObject"], [OUTPUT, answers], allowed("s3:PutObject"))
    stub_image_questions(stub)
    stub_quotas(stub, *PREFLIGHT_QUOTAS)
    assert main([*PREFLIGHT, "--async-output", f"s3://{BUCKET}/async/out"]) == 0
    out = capsys.readouterr().out
    assert "read s3://my-dogbreed-bucket/dogImages/, s3://my-dogbreed-bucket/async/input/;" in out
    assert "write s3://my-dogbreed-bucket/runs/, s3://my-dogbreed-bucket/async/out/;" in out
    assert lines(out, "PROBLEM") == [] and lines(out, "WARNING") == []


def test_a_role_that_cannot_read_the_bucket_is_a_problem_with_the_inline_policy_to_attach(
    stub, capsys
) -> None:
    """The role trusts SageMaker, but no policy of it allows the bucket (an implicit deny), and
    the bucket has no bucket policy: nothing can let the jobs read it."""
    stub_role_and_resources(stub)
    stub_s3_questions(stub, "implicitDeny", "implicitDeny", "implicitDeny")
    stub("s3").add_client_error(
        "get_bucket_policy",
        "NoSuchBucketPolicy",
        http_status_code=404,
        expected_params={"Bucket": BUCKET},
    )
    stub_image_questions(stub)
    stub_quotas(stub, *PREFLIGHT_QUOTAS)
    assert main(PREFLIGHT) == 1
    out = capsys.readouterr().out
    no_policy = "no policy of the role allows it, and bucket my-dogbreed-bucket has no bucket policy that could"
    assert lines(out, "PROBLEM") == [
        f"PROBLEM  role permissions: dogbreed-sagemaker may not s3:GetObject on {DATA}: {no_policy}",
        f"PROBLEM  role permissions: dogbreed-sagemaker may not s3:ListBucket on {BUCKET_ARN}: "
        f"{no_policy}",
        f"PROBLEM  role permissions: dogbreed-sagemaker may not s3:PutObject on {OUTPUT}: {no_policy}",
    ]
    assert f"         fix: {PUT_POLICY}\n" in out
    assert "OK       role: dogbreed-sagemaker exists and trusts sagemaker.amazonaws.com" in out
    assert out.rstrip().endswith("3 problem(s): fix them before a run")


def test_train_refuses_before_create_training_job_when_the_role_cannot_read_the_bucket(
    stub, capsys
) -> None:
    stub_dog_images(stub("s3"), BUCKET)
    stub_role_and_resources(stub, caller=False)
    stub_s3_questions(stub, "implicitDeny", "allowed", "allowed")
    stub("s3").add_client_error(
        "get_bucket_policy",
        "NoSuchBucketPolicy",
        http_status_code=404,
        expected_params={"Bucket": BUCKET},
    )
    stub_image_questions(stub)
    stub_quotas(stub, "ml.g4dn.xlarge for training job usage")
    stub("sagemaker")  # nothing queued: a CreateTrainingJob would fail the test
    assert main(TRAIN) == 1
    printed = capsys.readouterr()
    assert "preflight found a problem before any job started" in printed.err
    assert (
        f"PROBLEM  role permissions: dogbreed-sagemaker may not s3:GetObject on {DATA}: no policy "
        "of the role allows it, and bucket my-dogbreed-bucket has no bucket policy that could"
    ) in printed.err
    assert f"fix: {PUT_POLICY}" in printed.err
    assert "starting training job" not in printed.out


def test_a_caller_that_may_not_simulate_gets_skipped_and_why(stub, capsys) -> None:
    stub_role_and_resources(stub)
    stub("iam").add_client_error(
        "simulate_principal_policy",
        "AccessDenied",
        "User: arn:aws:iam::123456789012:user/me is not authorized to perform: "
        "iam:SimulatePrincipalPolicy",
        http_status_code=403,
        expected_params=asked(ROLE, ["s3:GetObject"], [DATA]),
    )
    stub_quotas(stub, *PREFLIGHT_QUOTAS)
    assert main(PREFLIGHT) == 0
    out = capsys.readouterr().out
    assert (
        "SKIPPED  role permissions: not allowed to ask IAM's policy simulator "
        "(SimulatePrincipalPolicy: AccessDenied; it takes iam:SimulatePrincipalPolicy on "
        f"{ROLE}): whether dogbreed-sagemaker may read the data, write the output and pull the "
        "images was not checked"
    ) in out
    assert out.rstrip().endswith("ready: nothing to fix")


def test_an_explicit_deny_is_a_problem_even_where_the_bucket_has_a_policy(stub, capsys) -> None:
    """The bucket policy could allow the implicit deny (a warning), never the explicit one."""
    stub_role_and_resources(stub)
    stub_s3_questions(stub, "explicitDeny", "implicitDeny", "allowed")
    stub("s3").add_response(
        "get_bucket_policy",
        {"Policy": '{"Version":"2012-10-17","Statement":[]}'},
        {"Bucket": BUCKET},
    )
    stub_image_questions(stub)
    stub_quotas(stub, *PREFLIGHT_QUOTAS)
    assert main(PREFLIGHT) == 1
    out = capsys.readouterr().out
    assert lines(out, "PROBLEM") == [
        f"PROBLEM  role permissions: dogbreed-sagemaker may not s3:GetObject on {DATA}: "
        "explicitly denied by the role's policies (no resource policy can undo that)"
    ]
    assert lines(out, "WARNING") == [
        f"WARNING  role permissions: dogbreed-sagemaker may not s3:ListBucket on {BUCKET_ARN}: no "
        "policy of the role allows it; the bucket policy of bucket my-dogbreed-bucket may (the "
        "simulator does not weigh it)"
    ]
    assert f"{lines(out, 'PROBLEM')[0]}\n         fix: {PUT_POLICY}\n" in out  # on the problem


def test_an_implicit_deny_where_the_bucket_has_a_policy_is_a_warning_and_train_goes_on(
    stub, capsys
) -> None:
    stub_dog_images(stub("s3"), BUCKET)
    stub_role_and_resources(stub, caller=False)
    stub_s3_questions(stub, "implicitDeny", "implicitDeny", "implicitDeny")
    stub("s3").add_response("get_bucket_policy", {"Policy": "{}"}, {"Bucket": BUCKET})
    stub_image_questions(stub)
    stub_quotas(stub, "ml.g4dn.xlarge for training job usage")
    stub("sagemaker").add_response("create_training_job", {"TrainingJobArn": "arn:t"})
    assert main(TRAIN) == 0
    out = capsys.readouterr().out
    warned = lines(out, "WARNING")
    assert len(warned) == 3 and all(
        "bucket policy of bucket my-dogbreed-bucket may" in w for w in warned
    )
    assert f"fix: {PUT_POLICY}" in out
    assert "starting training job dogbreed-train-1" in out


def test_where_a_policy_reads_s3_prefix_each_prefix_is_asked_with_it(stub, capsys) -> None:
    """Asked without the key, the simulator names s3:prefix as missing: preflight asks again once
    per prefix (a request's context applies to all its resources), with ContextEntries."""
    checkpoints = f"arn:aws:s3:::{BUCKET}/checkpoints/*"
    stub_role_and_resources(stub)
    iam = stub("iam")
    stub_simulation(iam, ROLE, ["s3:GetObject"], [DATA, checkpoints], allowed("s3:GetObject"))
    stub_simulation(
        iam,
        ROLE,
        ["s3:ListBucket"],
        [BUCKET_ARN],
        [decided("s3:ListBucket", {BUCKET_ARN: "implicitDeny"}, missing=["s3:prefix"])],
    )
    for prefix, decision in (("dogImages/", "allowed"), ("checkpoints/", "implicitDeny")):
        stub_simulation(
            iam,
            ROLE,
            ["s3:ListBucket"],
            [BUCKET_ARN],
            [decided("s3:ListBucket", {BUCKET_ARN: decision})],
            context={"s3:prefix": prefix},
        )
    stub_simulation(iam, ROLE, ["s3:PutObject"], [OUTPUT, checkpoints], allowed("s3:PutObject"))
    stub("s3").add_client_error(
        "get_bucket_policy",
        "NoSuchBucketPolicy",
        http_status_code=404,
        expected_params={"Bucket": BUCKET},
    )
    stub_image_questions(stub)
    stub_quotas(stub, *PREFLIGHT_QUOTAS)
    assert main([*PREFLIGHT, "--checkpoint-s3", f"s3://{BUCKET}/checkpoints"]) == 1
    out = capsys.readouterr().out
    assert lines(out, "PROBLEM") == [
        f"PROBLEM  role permissions: dogbreed-sagemaker may not s3:ListBucket on {BUCKET_ARN} "
        "with s3:prefix 'checkpoints/': no policy of the role allows it, and bucket "
        "my-dogbreed-bucket has no bucket policy that could"
    ]
    policy = json.loads(out.split("--policy-document '", 1)[1].split("'\n", 1)[0])
    assert policy["Statement"][1] == {
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": BUCKET_ARN,
        "Condition": {"StringLike": {"s3:prefix": ["dogImages/*", "checkpoints/*"]}},
    }


def test_every_page_of_the_simulators_answer_is_read(stub, aws) -> None:
    """IsTruncated and Marker; old-style answers (one result per action and resource) too."""
    other = f"arn:aws:s3:::{BUCKET}/other/*"
    iam = stub("iam")
    question = Question(("s3:GetObject",), (DATA, other))
    first = {"EvalActionName": "s3:GetObject", "EvalResourceName": DATA, "EvalDecision": "allowed"}
    second = {**first, "EvalResourceName": other, "EvalDecision": "explicitDeny"}
    iam.add_response(
        "simulate_principal_policy",
        answer([first], marker="page-2"),
        asked(ROLE, ["s3:GetObject"], [DATA, other]),
    )
    iam.add_response(
        "simulate_principal_policy",
        answer([second]),
        asked(ROLE, ["s3:GetObject"], [DATA, other], marker="page-2"),
    )
    assert permissions.simulate(aws, ROLE, question) == {
        ("s3:GetObject", DATA): ("allowed", ()),
        ("s3:GetObject", other): ("explicitDeny", ()),
    }


def test_a_bucket_with_sse_kms_needs_its_key_and_only_a_key_policy_can_tell(stub, aws) -> None:
    """kms:Decrypt and kms:GenerateDataKey on the bucket's key; every key has a key policy, so an
    implicit deny there is a warning."""
    stub("s3").add_response(
        "get_bucket_encryption", {"ServerSideEncryptionConfiguration": SSE_KMS}, {"Bucket": BUCKET}
    )
    iam = stub("iam")
    stub_simulation(iam, ROLE, ["s3:GetObject"], [DATA], allowed("s3:GetObject"))
    stub_simulation(iam, ROLE, ["s3:ListBucket"], [BUCKET_ARN], allowed("s3:ListBucket"))
    stub_simulation(
        iam,
        ROLE,
        ["kms:Decrypt", "kms:GenerateDataKey"],
        [KEY],
        [decided("kms:Decrypt", {KEY: "implicitDeny"}), *allowed("kms:GenerateDataKey")],
    )
    found = permissions.assess(aws, ROLE, Needs.of(ROLE, reads=[f"s3://{BUCKET}/dogImages"]))
    assert [(f.action, f.resource, f.final) for f in found.findings] == [
        ("kms:Decrypt", KEY, False)
    ]
    assert "the key's key policy may" in found.findings[0].why
    assert found.needs.policy()["Statement"][-1] == {
        "Effect": "Allow",
        "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
        "Resource": KEY,
    }


@pytest.mark.parametrize(
    ("uri", "key"),
    [
        ("s3://b/dogImages", "dogImages/"),
        ("s3://b/dogImages/", "dogImages/"),
        ("s3://b", ""),
    ],
)
def test_a_prefix_is_the_folder_sagemaker_reads(uri, key) -> None:
    assert permissions.Prefix.of(uri).key == key
