"""`dogbreed preflight`, and the cheap checks `train` runs before CreateTrainingJob.

Service quota names follow AWS's pattern "<instance type> for <training job | processing job |
endpoint> usage": the SageMaker quota list of the AWS General Reference
(https://docs.aws.amazon.com/general/latest/gr/sagemaker.html#limits_sagemaker) and AWS's own
sample aws-samples/amazon-sagemaker-promote-code-not-models, terraform/main/service_quotas.tf,
which names "ml.g4dn.xlarge for training job usage" with code L-3F53BF0F (the one real code used
here). The launcher looks quotas up by name; the other codes below are placeholders
("L-EXAMPLE..."), there only to show that a fix names the code ListServiceQuotas returned.
Each concurrent tuning trial's instances count against the training instance quota: AWS's
"Resource Limits for Automatic Model Tuning"
(https://docs.aws.amazon.com/sagemaker/latest/dg/automatic-model-tuning-limits.html). Managed spot
training counts against "<instance type> for spot training job usage" instead.

What the role may do is asked of IAM's policy simulator (test_preflight_permissions.py); here the
role only pulls the two images.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from dogbreed.launch.cli.main import main
from dogbreed.launch.training.preflight import check_image
from dogbreed.launch.training.trust import trust_of

from .conftest import (
    ROLE,
    SERVE_IMAGE,
    TRAIN_IMAGE,
    role_description,
    stub_dog_images,
    trust_policy,
)
from .permission_stubs import (
    PULL,
    allowed,
    repository_arn,
    stub_role_may_run,
    stub_simulation,
    stub_training_quotas,
)
from .test_train_job import TRAIN_ARGS

TRAINING_QUOTA = "ml.g4dn.xlarge for training job usage"
SPOT_QUOTA = "ml.g4dn.xlarge for spot training job usage"
PROCESSING_QUOTA = "ml.m5.xlarge for processing job usage"
ENDPOINT_QUOTA = "ml.m5.large for endpoint usage"
CODES = {
    TRAINING_QUOTA: "L-3F53BF0F",  # aws-samples/amazon-sagemaker-promote-code-not-models
    SPOT_QUOTA: "L-EXAMPLE03",  # placeholder
    PROCESSING_QUOTA: "L-EXAMPLE01",  # placeholder
    ENDPOINT_QUOTA: "L-EXAMPLE02",  # placeholder
}
#: The default `train`: 5 Debugger rules + ProfilerReport, one processing job each.
DEFAULT_RULE_EVALUATIONS = 6
HEALTHY_QUOTAS = {TRAINING_QUOTA: 2, PROCESSING_QUOTA: 8, ENDPOINT_QUOTA: 2}
ARGS = [
    "preflight",
    "--role",
    ROLE,
    "--bucket",
    "s3://bucket/runs",
    "--train-image",
    TRAIN_IMAGE,
    "--serve-image",
    SERVE_IMAGE,
]
HEALTHY = object()


def quota(name: str, value: float) -> dict:
    return {
        "ServiceCode": "sagemaker",
        "ServiceName": "Amazon SageMaker",
        "QuotaCode": CODES[name],
        "QuotaName": name,
        "Value": value,
    }


def describe_images_params(image: str) -> dict:
    registry, _, path = image.partition("/")
    repository, _, tag = path.partition(":")
    return {
        "registryId": registry.split(".")[0],
        "repositoryName": repository,
        "imageIds": [{"imageTag": tag}],
    }


def stub_account(
    stub,
    role: dict | str | None = HEALTHY,
    bucket_region: str | None = None,
    bucket_error: str | None = None,
    image_error: str | None = None,
    quotas: dict[str, float] | None = None,
    serve_image: bool = True,
) -> None:
    """Every request `preflight` sends for ARGS, healthy unless told: ``role`` a GetRole response
    or an error code (None: not asked for); the bucket's LocationConstraint or a HeadBucket error;
    a DescribeImages error for the training image (and the serving image unless
    ``serve_image=False``); the role may pull the images (IAM's policy simulator, asked where the
    role exists); the quota values (ListServiceQuotas, in two pages)."""
    stub("sts").add_response(
        "get_caller_identity",
        {
            "UserId": "AIDAEXAMPLE",
            "Account": "123456789012",
            "Arn": "arn:aws:iam::123456789012:user/me",
        },
    )
    iam = stub("iam")
    if isinstance(role, str):
        iam.add_client_error("get_role", role, http_status_code=404)
    elif role is not None:
        iam.add_response("get_role", role_description() if role is HEALTHY else role)
    s3 = stub("s3")
    if bucket_error:
        s3.add_client_error("head_bucket", bucket_error, http_status_code=int(bucket_error))
    else:
        s3.add_response("head_bucket", {}, {"Bucket": "bucket"})
        location = {"LocationConstraint": bucket_region} if bucket_region else {}
        s3.add_response("get_bucket_location", location, {"Bucket": "bucket"})
    ecr = stub("ecr")
    if image_error:
        ecr.add_client_error(
            "describe_images", image_error, expected_params=describe_images_params(TRAIN_IMAGE)
        )
    else:
        ecr.add_response(
            "describe_images", {"imageDetails": [{}]}, describe_images_params(TRAIN_IMAGE)
        )
    if serve_image:
        ecr.add_response(
            "describe_images", {"imageDetails": [{}]}, describe_images_params(SERVE_IMAGE)
        )
    if role is not None and not isinstance(role, str):
        images = [TRAIN_IMAGE, SERVE_IMAGE] if serve_image else [TRAIN_IMAGE]
        stub_may_pull(stub, [repository_arn(image) for image in images])
    values = [quota(name, value) for name, value in (quotas or HEALTHY_QUOTAS).items()]
    sq = stub("service-quotas")
    sq.add_response(
        "list_service_quotas",
        {"Quotas": values[:1], "NextToken": "page-2"},
        {"ServiceCode": "sagemaker"},
    )
    sq.add_response(
        "list_service_quotas",
        {"Quotas": values[1:]},
        {"ServiceCode": "sagemaker", "NextToken": "page-2"},
    )


def stub_may_pull(stub, repositories: list[str]) -> None:
    """IAM's policy simulator: the role may pull from ``repositories`` and log in to ECR."""
    stub_simulation(stub("iam"), ROLE, PULL, repositories, allowed(*PULL))
    stub_simulation(
        stub("iam"),
        ROLE,
        ["ecr:GetAuthorizationToken"],
        ["*"],
        allowed("ecr:GetAuthorizationToken"),
    )


def problem_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("PROBLEM")]


def test_a_healthy_account_passes_every_check(stub, capsys) -> None:
    stub_account(stub)
    assert main(ARGS) == 0
    out = capsys.readouterr().out
    assert "OK       credentials: account 123456789012, arn:aws:iam::123456789012:user/me" in out
    assert "OK       role: dogbreed-sagemaker exists and trusts sagemaker.amazonaws.com" in out
    assert "OK       bucket bucket: exists, in us-east-1" in out
    assert f"OK       training image: {TRAIN_IMAGE} is in ECR" in out
    assert f"OK       serving image: {SERVE_IMAGE} is in ECR" in out
    assert f"OK       training: '{TRAINING_QUOTA}' is 2, needs 1" in out
    assert f"OK       tuning (2 parallel trials): '{TRAINING_QUOTA}' is 2, needs 2" in out
    assert (
        f"OK       rule evaluations ({DEFAULT_RULE_EVALUATIONS} processing jobs): "
        f"'{PROCESSING_QUOTA}' is 8, needs {DEFAULT_RULE_EVALUATIONS}"
    ) in out
    assert f"OK       endpoint: '{ENDPOINT_QUOTA}' is 2, needs 1" in out
    assert (
        "OK       role permissions: dogbreed-sagemaker may pull dogbreed-train, dogbreed-serve "
        "from ECR (IAM policy simulator)"
    ) in out
    assert problem_lines(out) == [] and out.rstrip().endswith("ready: nothing to fix")


def test_a_quota_without_an_applied_value_falls_back_to_awss_default(stub, capsys) -> None:
    """ListServiceQuotas leaves out quotas without an applied value."""
    stub_account(stub, quotas={TRAINING_QUOTA: 1, PROCESSING_QUOTA: 8})
    stub("service-quotas").add_response(
        "list_aws_default_service_quotas",
        {"Quotas": [quota(ENDPOINT_QUOTA, 0)]},
        {"ServiceCode": "sagemaker"},
    )
    assert main([*ARGS, "--max-parallel", "1"]) == 1
    out = capsys.readouterr().out
    assert problem_lines(out) == [f"PROBLEM  endpoint: '{ENDPOINT_QUOTA}' is 0, needs 1"]
    assert "--quota-code L-EXAMPLE02 --desired-value 1 --region us-east-1" in out


def test_no_credentials_is_a_problem_and_the_rest_is_skipped(stub, monkeypatch, capsys) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert main(ARGS) == 1
    out = capsys.readouterr().out
    assert problem_lines(out) == ["PROBLEM  credentials: no AWS credentials found"]
    assert "fix: aws configure" in out
    assert "SKIPPED  role: needs credentials" in out


TRUST_POLICY_JSON = (
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":'
    '"sagemaker.amazonaws.com"},"Action":"sts:AssumeRole","Condition":{"StringEquals":'
    '{"aws:SourceAccount":"123456789012"}}}]}'
)
#: What the role needs for ARGS: pull both images (no --data or --output).
PULL_POLICY_JSON = (
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecr:BatchGetImage",'
    '"ecr:GetDownloadUrlForLayer"],"Resource":["arn:aws:ecr:us-east-1:123456789012:repository/'
    'dogbreed-train","arn:aws:ecr:us-east-1:123456789012:repository/dogbreed-serve"]},'
    '{"Effect":"Allow","Action":"ecr:GetAuthorizationToken","Resource":"*"}]}'
)


@pytest.mark.parametrize(
    ("account", "problem", "fix"),
    [
        (
            {"role": "NoSuchEntity"},
            f"role: {ROLE} does not exist",
            "aws iam create-role --role-name dogbreed-sagemaker --assume-role-policy-document "
            f"'{TRUST_POLICY_JSON}' && aws iam attach-role-policy --role-name dogbreed-sagemaker "
            "--policy-arn arn:aws:iam::aws:policy/AmazonSageMakerFullAccess && aws iam "
            "put-role-policy --role-name dogbreed-sagemaker --policy-name dogbreed-access "
            f"--policy-document '{PULL_POLICY_JSON}'",
        ),
        (
            {"role": role_description(policy=trust_policy("ec2.amazonaws.com"))},
            "role: dogbreed-sagemaker exists but does not trust sagemaker.amazonaws.com: jobs "
            "would fail to assume it",
            "aws iam update-assume-role-policy --role-name dogbreed-sagemaker --policy-document "
            f"'{TRUST_POLICY_JSON}'",
        ),
        (
            {"bucket_region": "eu-west-2"},
            "bucket bucket: is in eu-west-2, the jobs in us-east-1: SageMaker reads channels and "
            "writes output only in the job's region",
            "run in its region (--region eu-west-2), or copy the data to a bucket in us-east-1",
        ),
        (
            {"bucket_error": "404"},
            "bucket bucket: does not exist",
            "aws s3 mb s3://bucket --region us-east-1",
        ),
        (
            {"image_error": "ImageNotFoundException"},
            "training image: dogbreed-train has no image 1.0",
            "scripts/build_and_push.sh --region us-east-1 --tag 1.0",
        ),
    ],
    ids=["role missing", "role not trusting sagemaker", "bucket elsewhere", "no bucket", "no tag"],
)
def test_each_problem_is_named_with_its_fix(stub, capsys, account, problem, fix) -> None:
    stub_account(stub, **account)
    assert main(ARGS) == 1
    out = capsys.readouterr().out
    assert problem_lines(out) == [f"PROBLEM  {problem}"]
    assert f"         fix: {fix}" in out
    assert out.rstrip().endswith("1 problem(s): fix them before a run")


def test_a_malformed_role_arn_is_a_problem_without_asking_iam(stub, capsys) -> None:
    stub_account(stub, role=None)  # a GetRole would fail the test
    assert main([a if a != ROLE else "dogbreed-sagemaker" for a in ARGS]) == 1
    assert problem_lines(capsys.readouterr().out) == [
        "PROBLEM  role: 'dogbreed-sagemaker' is not an IAM role ARN"
    ]


def test_an_image_outside_ecr_is_not_checked(stub, capsys) -> None:
    args = [a if a != SERVE_IMAGE else "ghcr.io/me/dogbreed-serve:1.0" for a in ARGS]
    stub_account(stub, serve_image=False)  # its DescribeImages would fail the test
    assert main(args) == 0
    assert (
        "SKIPPED  serving image: ghcr.io/me/dogbreed-serve:1.0 is not an ECR URI "
        "(<account>.dkr.ecr.<region>...): not checked"
    ) in capsys.readouterr().out


def test_no_training_instances_is_a_problem(stub, capsys) -> None:
    stub_account(stub, quotas={**HEALTHY_QUOTAS, TRAINING_QUOTA: 0})
    assert main(ARGS) == 1
    out = capsys.readouterr().out
    assert problem_lines(out) == [
        f"PROBLEM  training: '{TRAINING_QUOTA}' is 0, needs 1",
        f"PROBLEM  tuning (2 parallel trials): '{TRAINING_QUOTA}' is 0, needs 2",
    ]
    assert (
        "fix: aws service-quotas request-service-quota-increase --service-code sagemaker "
        "--quota-code L-3F53BF0F --desired-value 1 --region us-east-1"
    ) in out


def test_fewer_processing_instances_than_rule_evaluations_is_a_problem(stub, capsys) -> None:
    """The default `train` starts 6 rule evaluations; a new account is often allowed 4."""
    stub_account(stub, quotas={**HEALTHY_QUOTAS, PROCESSING_QUOTA: 4})
    assert main(ARGS) == 1
    out = capsys.readouterr().out
    assert problem_lines(out) == [
        f"PROBLEM  rule evaluations (6 processing jobs): '{PROCESSING_QUOTA}' is 4, needs 6"
    ]
    assert "--quota-code L-EXAMPLE01 --desired-value 6" in out
    assert "or train with fewer rules (--rules A,B) or without them" in out


def test_fewer_rules_need_fewer_processing_instances(stub, capsys) -> None:
    stub_account(stub, quotas={**HEALTHY_QUOTAS, PROCESSING_QUOTA: 2})
    assert main([*ARGS, "--rules", "Overfit"]) == 0  # Overfit + ProfilerReport
    assert f"'{PROCESSING_QUOTA}' is 2, needs 2" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("policy", "trusted"),
    [
        (
            {
                "Statement": {
                    "Effect": "Allow",
                    "Principal": {"Service": ["ec2.amazonaws.com", "sagemaker.amazonaws.com"]},
                    "Action": ["sts:AssumeRole"],
                }
            },
            True,
        ),
        (
            {
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Principal": {"Service": "sagemaker.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ]
            },
            False,
        ),
        (
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                        "Action": "sts:AssumeRole",
                    }
                ]
            },
            False,
        ),
        (
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "sagemaker.amazonaws.com"},
                        "Action": "sts:TagSession",
                    }
                ]
            },
            False,
        ),
    ],
)
def test_trust_policies(policy, trusted) -> None:
    assert (trust_of(policy) == "sagemaker") is trusted


def test_train_refuses_before_create_training_job_when_the_role_does_not_trust_sagemaker(
    stub, capsys
) -> None:
    stub_dog_images(stub("s3"))
    stub("iam").add_response("get_role", role_description(policy=trust_policy("ec2.amazonaws.com")))
    stub("s3").add_response("head_bucket", {}, {"Bucket": "bucket"})
    stub("s3").add_response("get_bucket_location", {}, {"Bucket": "bucket"})
    stub("ecr").add_response(
        "describe_images", {"imageDetails": [{}]}, describe_images_params(TRAIN_IMAGE)
    )
    stub_role_may_run(stub, ROLE, TRAIN_IMAGE, "bucket")
    stub_training_quotas(stub)
    stub("sagemaker")  # nothing queued: CreateTrainingJob would fail the test
    assert main(TRAIN_ARGS) == 1
    printed = capsys.readouterr()
    assert "preflight found a problem before any job started (--skip-preflight skips this)" in (
        printed.err
    )
    assert "does not trust sagemaker.amazonaws.com" in printed.err
    assert "aws iam update-assume-role-policy --role-name dogbreed-sagemaker" in printed.err
    assert "starting training job" not in printed.out


# --- spot quotas ------------------------------------------------------------------------------


def test_spot_looks_up_the_spot_training_quota(stub, capsys) -> None:
    """Managed spot training counts against "<type> for spot training job usage", a quota of its
    own: an account with on-demand instances may have no spot ones."""
    stub_account(stub, quotas={SPOT_QUOTA: 0, PROCESSING_QUOTA: 8, ENDPOINT_QUOTA: 2})
    assert main([*ARGS, "--spot"]) == 1
    out = capsys.readouterr().out
    assert problem_lines(out) == [
        f"PROBLEM  training: '{SPOT_QUOTA}' is 0, needs 1",
        f"PROBLEM  tuning (2 parallel trials): '{SPOT_QUOTA}' is 0, needs 2",
    ]
    assert "--quota-code L-EXAMPLE03 --desired-value 1 --region us-east-1" in out
    assert TRAINING_QUOTA not in out


def stub_ready_but_quotas(stub) -> None:
    """`train`/`tune`'s checks up to the quotas: role, bucket, image and permissions are fine;
    8 on-demand training instances, no spot ones."""
    stub("iam").add_response("get_role", role_description())
    stub("s3").add_response("head_bucket", {}, {"Bucket": "bucket"})
    stub("s3").add_response("get_bucket_location", {}, {"Bucket": "bucket"})
    stub("ecr").add_response(
        "describe_images", {"imageDetails": [{}]}, describe_images_params(TRAIN_IMAGE)
    )
    stub_role_may_run(stub, ROLE, TRAIN_IMAGE, "bucket")
    stub("service-quotas").add_response(
        "list_service_quotas",
        {"Quotas": [quota(TRAINING_QUOTA, 8), quota(SPOT_QUOTA, 0)]},
        {"ServiceCode": "sagemaker"},
    )


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ("train", f"training: '{SPOT_QUOTA}' is 0, needs 1"),
        ("tune", f"tuning (3 parallel trials): '{SPOT_QUOTA}' is 0, needs 3"),
    ],
)
def test_train_and_tune_with_spot_check_the_spot_quota_before_creating_a_job(
    stub, capsys, command, problem
) -> None:
    """8 on-demand instances do not make one spot instance: both refuse before creating a job."""
    from .conftest import stub_split_channels
    from .test_tune import TUNE_ARGS

    if command == "train":
        stub_dog_images(stub("s3"))
    else:
        stub_split_channels(stub("s3"), "bucket", "dogs/")
    stub_ready_but_quotas(stub)
    stub("sagemaker")  # nothing queued: creating a job would fail the test
    args = TRAIN_ARGS if command == "train" else TUNE_ARGS
    assert main([*args, "--spot"]) == 1
    printed = capsys.readouterr()
    assert (
        f"PROBLEM  {problem}\n         fix: aws service-quotas request-service-quota-increase"
        in (printed.err)
    )
    assert "--quota-code L-EXAMPLE03" in printed.err
    assert "starting" not in printed.out


# --- trust policies with "*" ------------------------------------------------------------------

ANYONE_IN_THE_ORG = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-exampleorgid"}},
        }
    ],
}


@pytest.mark.parametrize(
    ("principal", "trust"),
    [
        ("*", "anyone"),
        ({"AWS": "*"}, "anyone"),
        ({"AWS": ["arn:aws:iam::123456789012:root", "*"]}, "anyone"),
        ({"Service": "sagemaker.amazonaws.com"}, "sagemaker"),
        ({"Service": ["ec2.amazonaws.com", "sagemaker.amazonaws.com"]}, "sagemaker"),
        ("arn:aws:iam::123456789012:root", "no"),
        ({"AWS": "arn:aws:iam::123456789012:root"}, "no"),
        ({"Federated": "cognito-identity.amazonaws.com"}, "no"),
    ],
)
def test_every_form_of_principal_is_read(principal, trust) -> None:
    statement = {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}
    assert trust_of({"Statement": [statement]}) == trust
    assert trust_of({"Statement": statement}) == trust  # a lone statement, not in a list


def test_a_role_trusting_any_principal_under_a_condition_is_a_warning_not_a_crash(
    stub, capsys
) -> None:
    stub_account(stub, role=role_description(policy=quote(json.dumps(ANYONE_IN_THE_ORG))))
    assert main(ARGS) == 0
    out = capsys.readouterr().out
    assert (
        'WARNING  role: dogbreed-sagemaker\'s trust policy lets any principal ("*") assume it, '
        "under its conditions: whether sagemaker.amazonaws.com may depends on them\n"
        "         fix: name the service instead: aws iam update-assume-role-policy --role-name "
        f"dogbreed-sagemaker --policy-document '{TRUST_POLICY_JSON}'"
    ) in out
    assert out.rstrip().endswith("ready: nothing to fix; 1 warning(s) to read")


# --- images given by digest -------------------------------------------------------------------

DIGEST = "sha256:" + "ab" * 32


def test_a_missing_image_given_by_digest_gets_a_fix_that_names_no_tag(stub, aws) -> None:
    """A digest names one pushed image: `--tag None` pushes nothing of use. Push again and use the
    URI the script prints, or pick a digest the repository has."""
    stub("ecr").add_client_error(
        "describe_images",
        "ImageNotFoundException",
        expected_params={
            "registryId": "123456789012",
            "repositoryName": "dogbreed-train",
            "imageIds": [{"imageDigest": DIGEST}],
        },
    )
    uri = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/dogbreed-train@{DIGEST}"
    check = check_image(aws, "training image", uri)
    assert (check.status, check.detail) == ("PROBLEM", f"dogbreed-train has no image {DIGEST}")
    assert check.fix == (
        "scripts/build_and_push.sh --region us-east-1, then pass the URI it prints; or a digest "
        "that dogbreed-train has: aws ecr describe-images --registry-id 123456789012 "
        "--repository-name dogbreed-train --region us-east-1 --query 'imageDetails[].imageDigest'"
    )
