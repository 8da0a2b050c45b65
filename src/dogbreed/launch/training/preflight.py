"""What a run would trip on, found before any money is spent, each with its fix.

``dogbreed preflight`` runs every check in :func:`run_checks`; ``train`` and ``tune`` run the
cheap ones (:func:`require_ready`: the role, the buckets, the image) just before they create a job.

Service quotas are looked up by name, not code: codes differ per instance type and region, and
AWS names them ``<instance type> for training job usage`` / ``for processing job usage`` /
``for endpoint usage`` (the SageMaker quota list of the AWS General Reference,
https://docs.aws.amazon.com/general/latest/gr/sagemaker.html#limits_sagemaker). The code that a
fix command needs comes from the same ``ListServiceQuotas`` answer.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from botocore.exceptions import ClientError, NoCredentialsError

from dogbreed.launch.errors import LaunchError
from dogbreed.launch.session import ROLE_PATTERN, Aws

if TYPE_CHECKING:
    from dogbreed.launch.training.spec import TrainingJobSpec

OK, PROBLEM, SKIPPED = "OK", "PROBLEM", "SKIPPED"
SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"
TRUST_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": SAGEMAKER_PRINCIPAL},
                "Action": "sts:AssumeRole",
            }
        ],
    },
    separators=(",", ":"),
)
#: Where SageMaker runs a rule evaluation whose configuration names no InstanceType (ours name
#: none): one processing job per rule, for as long as the training job runs. The instance type is
#: the one users report (issue 10); SageMaker's API reference does not state this default.
RULE_INSTANCE_TYPE = "ml.m5.xlarge"
ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[a-z0-9._/-]+?)(?::(?P<tag>[\w.-]+)|@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
DENIED = {"AccessDenied", "AccessDeniedException", "403", "UnauthorizedOperation"}


@dataclass(frozen=True)
class Check:
    """One finding: OK, PROBLEM (with the fix) or SKIPPED (with why)."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def lines(self) -> str:
        text = f"{self.status:<8} {self.name}: {self.detail}"
        return text + (f"\n         fix: {self.fix}" if self.fix else "")


@dataclass(frozen=True)
class QuotaNeed:
    """How many instances of a type one step runs at once, under one Service Quotas name."""

    check: str
    instance_type: str
    usage: str  # "training job", "processing job" or "endpoint"
    count: int
    alternative: str = ""  # another fix besides an increase

    @property
    def quota_name(self) -> str:
        return f"{self.instance_type} for {self.usage} usage"


@dataclass(frozen=True)
class Target:
    """What a run would use: ``None`` where the user did not say (its check is skipped)."""

    role_arn: str | None = None
    buckets: Sequence[str] = ()  # none: skipped
    images: Sequence[tuple[str, str | None]] = ()  # (what, URI), e.g. ("training image", "...")
    quotas: Sequence[QuotaNeed] = ()


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _denied(name: str, error: ClientError) -> Check:
    return Check(name, SKIPPED, f"not allowed to look ({error.operation_name}: {_code(error)})")


def check_credentials(aws: Aws) -> Check:
    try:
        identity = aws.client("sts").get_caller_identity()
    except NoCredentialsError:
        return Check(
            "credentials",
            PROBLEM,
            "no AWS credentials found",
            "aws configure (or aws sso login --profile NAME, then --profile NAME)",
        )
    except ClientError as error:
        return Check(
            "credentials",
            PROBLEM,
            f"AWS refused them ({_code(error)})",
            "aws configure (new access keys), or aws sso login for an expired session",
        )
    return Check("credentials", OK, f"account {identity['Account']}, {identity['Arn']}")


def _statements(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, str):
        document = json.loads(unquote(document))
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def trusts_sagemaker(document: Any) -> bool:
    """Whether a trust policy lets SageMaker assume the role (an Allow of sts:AssumeRole)."""
    for statement in _statements(document):
        services = _as_list((statement.get("Principal") or {}).get("Service", []))
        actions = _as_list(statement.get("Action", []))
        if (
            statement.get("Effect") == "Allow"
            and SAGEMAKER_PRINCIPAL in services
            and any(a in ("sts:AssumeRole", "sts:*", "*") for a in actions)
        ):
            return True
    return False


def check_role(aws: Aws, role_arn: str | None) -> Check:
    if not role_arn:
        return Check(
            "role",
            PROBLEM,
            "no SageMaker execution role given",
            "pass --role ARN or set DOGBREED_ROLE_ARN (create one as below if you have none)",
        )
    if not ROLE_PATTERN.match(role_arn):
        return Check(
            "role",
            PROBLEM,
            f"{role_arn!r} is not an IAM role ARN",
            "--role arn:aws:iam::<account>:role/<name> (aws iam list-roles shows yours)",
        )
    role_name = role_arn.rsplit("/", 1)[-1]
    create = (
        f"aws iam create-role --role-name {role_name} --assume-role-policy-document "
        f"'{TRUST_POLICY}' && aws iam attach-role-policy --role-name {role_name} "
        "--policy-arn arn:aws:iam::aws:policy/AmazonSageMakerFullAccess"
    )
    try:
        role = aws.client("iam").get_role(RoleName=role_name)["Role"]
    except ClientError as error:
        if _code(error) == "NoSuchEntity":
            return Check("role", PROBLEM, f"{role_arn} does not exist", create)
        if _code(error) in DENIED:
            return _denied("role", error)
        raise
    if role["Arn"] != role_arn:
        return Check(
            "role",
            PROBLEM,
            f"{role_arn} does not exist; {role['Arn']} does",
            f"--role {role['Arn']}",
        )
    if not trusts_sagemaker(role.get("AssumeRolePolicyDocument", {})):
        return Check(
            "role",
            PROBLEM,
            f"{role_name} exists but does not trust {SAGEMAKER_PRINCIPAL}: jobs would fail to "
            "assume it",
            f"aws iam update-assume-role-policy --role-name {role_name} --policy-document "
            f"'{TRUST_POLICY}'",
        )
    return Check("role", OK, f"{role_name} exists and trusts {SAGEMAKER_PRINCIPAL}")


def bucket_of(uri: str) -> str:
    """``s3://bucket/prefix`` (or a plain bucket name) -> ``bucket``."""
    return uri.removeprefix("s3://").split("/", 1)[0]


def check_bucket(aws: Aws, bucket: str) -> Check:
    name = f"bucket {bucket}"
    s3 = aws.client("s3")
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        if _code(error) in ("404", "NoSuchBucket"):
            return Check(
                name,
                PROBLEM,
                "does not exist",
                f"aws s3 mb s3://{bucket} --region {aws.region}",
            )
        if _code(error) in DENIED:
            return Check(
                name,
                PROBLEM,
                "exists, but these credentials may not read it (another account's bucket?)",
                "use a bucket of your own (aws s3 mb s3://NAME --region "
                f"{aws.region}) or ask its owner for s3:ListBucket and s3:GetObject",
            )
        raise
    try:
        location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    except ClientError as error:
        if _code(error) in DENIED:
            return _denied(name, error)
        raise
    region = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)
    if region != aws.region:
        return Check(
            name,
            PROBLEM,
            f"is in {region}, the jobs in {aws.region}: SageMaker reads channels and writes "
            "output only in the job's region",
            f"run in its region (--region {region}), or copy the data to a bucket in "
            f"{aws.region} (aws s3 mb s3://NAME --region {aws.region}; aws s3 sync ...)",
        )
    return Check(name, OK, f"exists, in {region}")


def check_image(aws: Aws, what: str, uri: str) -> Check:
    """The image URI's repository and tag (or digest) exist in ECR, in the job's region."""
    match = ECR_IMAGE.match(uri)
    if match is None:
        return Check(
            what, SKIPPED, f"{uri} is not an ECR URI (<account>.dkr.ecr.<region>...): not checked"
        )
    push = f"scripts/build_and_push.sh --region {aws.region}"
    if match["region"] != aws.region:
        return Check(
            what,
            PROBLEM,
            f"{uri} is in {match['region']}, the jobs in {aws.region}: SageMaker pulls images "
            "only from its own region",
            push,
        )
    tag = match["tag"] or ("latest" if not match["digest"] else None)
    image_id = {"imageTag": tag} if tag else {"imageDigest": match["digest"]}
    try:
        aws.client("ecr").describe_images(
            registryId=match["account"],
            repositoryName=match["repository"],
            imageIds=[image_id],
        )
    except ClientError as error:
        code = _code(error)
        if code == "RepositoryNotFoundException":
            return Check(what, PROBLEM, f"no repository {match['repository']}", push)
        if code == "ImageNotFoundException":
            shown = tag or match["digest"]
            return Check(
                what, PROBLEM, f"{match['repository']} has no image {shown}", f"{push} --tag {tag}"
            )
        if code in DENIED:
            return _denied(what, error)
        raise
    return Check(what, OK, f"{uri} is in ECR")


def _quotas(pages: Iterable[dict[str, Any]], wanted: set[str]) -> dict[str, dict[str, Any]]:
    return {q["QuotaName"]: q for page in pages for q in page["Quotas"] if q["QuotaName"] in wanted}


def find_quotas(aws: Aws, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """SageMaker quotas by exact name: the applied value, else AWS's default.

    ListServiceQuotas omits quotas whose applied value is not available; for those,
    ListAWSDefaultServiceQuotas gives the default. Names found in neither are left out.
    """
    client = aws.client("service-quotas")
    wanted = set(names)
    found = _quotas(
        client.get_paginator("list_service_quotas").paginate(ServiceCode="sagemaker"), wanted
    )
    if wanted - set(found):
        defaults = client.get_paginator("list_aws_default_service_quotas")
        found = _quotas(defaults.paginate(ServiceCode="sagemaker"), wanted - set(found)) | found
    return found


def check_quotas(aws: Aws, needs: Sequence[QuotaNeed]) -> list[Check]:
    if not needs:
        return []
    try:
        quotas = find_quotas(aws, {need.quota_name for need in needs})
    except ClientError as error:
        if _code(error) in DENIED:
            return [_denied(need.check, error) for need in needs]
        raise
    checks = []
    for need in needs:
        quota = quotas.get(need.quota_name)
        if quota is None or "Value" not in quota:
            checks.append(
                Check(need.check, SKIPPED, f"no SageMaker quota named {need.quota_name!r} here")
            )
            continue
        value = int(quota["Value"])
        said = f"{need.quota_name!r} is {value}, needs {need.count}"
        if value >= need.count:
            checks.append(Check(need.check, OK, said))
            continue
        increase = (
            "aws service-quotas request-service-quota-increase --service-code sagemaker "
            f"--quota-code {quota['QuotaCode']} --desired-value {need.count} --region {aws.region} "
            "(or Service Quotas console > AWS services > Amazon SageMaker > the quota > Request "
            "increase)"
        )
        fix = increase + (f"; or {need.alternative}" if need.alternative else "")
        checks.append(Check(need.check, PROBLEM, said, fix))
    return checks


def rule_evaluations(debug_request: dict[str, Any]) -> Counter[str]:
    """Processing instances a training request's rules run on, by type (one per rule)."""
    rules = [
        *debug_request.get("DebugRuleConfigurations", []),
        *debug_request.get("ProfilerRuleConfigurations", []),
    ]
    return Counter(rule.get("InstanceType", RULE_INSTANCE_TYPE) for rule in rules)


def run_checks(aws: Aws, target: Target) -> list[Check]:
    """Every check, in order; after failed credentials the rest are skipped."""
    credentials = check_credentials(aws)
    if credentials.status != OK:
        names = ["role", *(f"bucket {b}" for b in target.buckets)]
        names += [what for what, _ in target.images] + [need.check for need in target.quotas]
        return [credentials, *(Check(n, SKIPPED, "needs credentials") for n in names)]
    return [credentials, *cheap_checks(aws, target), *check_quotas(aws, target.quotas)]


def cheap_checks(aws: Aws, target: Target) -> list[Check]:
    """The role, each bucket, each image: one or two requests each."""
    checks = [check_role(aws, target.role_arn)]
    checks += [check_bucket(aws, bucket) for bucket in dict.fromkeys(target.buckets)]
    if not target.buckets:
        checks.append(Check("bucket", SKIPPED, "none given (--bucket)"))
    for what, uri in target.images:
        checks.append(check_image(aws, what, uri) if uri else Check(what, SKIPPED, "none given"))
    return checks


def problems(checks: Iterable[Check]) -> list[Check]:
    return [c for c in checks if c.status == PROBLEM]


def require_ready(aws: Aws, spec: TrainingJobSpec) -> None:
    """What ``train`` and ``tune`` check before creating a job (not in local mode): the role, the
    buckets of every S3 URI, the image; a LaunchError lists each problem with its fix."""
    if aws.local:
        return
    debug_output = spec.debugger.s3_output if spec.debugger else None
    uris = [*spec.channels.values(), spec.output_s3, spec.checkpoint_s3, debug_output]
    buckets = [bucket_of(u) for u in uris if u and u.startswith("s3://")]
    images = [("training image", spec.image_uri)]
    found = problems(cheap_checks(aws, Target(spec.role_arn, buckets, images)))
    if found:
        raise LaunchError(
            "preflight found a problem before any job started (--skip-preflight skips this):\n"
            + "\n".join(c.lines() for c in found)
        )


def training_needs(instance_type: str, count: int, max_parallel: int) -> list[QuotaNeed]:
    """``train``'s instances, and tune's: every parallel trial's instances count (AWS's automatic
    model tuning limits page: each concurrent training instance counts against the training
    instance quota)."""
    return [
        QuotaNeed("training", instance_type, "training job", count),
        QuotaNeed(
            f"tuning ({max_parallel} parallel trials)",
            instance_type,
            "training job",
            max_parallel * count,
            "tune with fewer parallel trials (--max-parallel)",
        ),
    ]


def rule_needs(region: str, rules: Sequence[str], tensors: bool, profiler: bool) -> list[QuotaNeed]:
    """The processing instances ``train``'s rules would take (none where there is no rule image)."""
    from dogbreed.launch.training.debugger import DebuggerSettings, debugger_request, rule_image_uri

    if not (tensors or profiler) or rule_image_uri(region) is None:
        return []
    settings = DebuggerSettings("s3://preflight/", tensors=tensors, rules=rules, profiler=profiler)
    return [
        QuotaNeed(
            f"rule evaluations ({count} processing jobs)",
            instance_type,
            "processing job",
            count,
            "train with fewer rules (--rules A,B) or without them (--no-debugger --no-profiler)",
        )
        for instance_type, count in rule_evaluations(debugger_request(settings, region)).items()
    ]


def print_report(checks: Sequence[Check], out: Callable[[str], None] = print) -> int:
    """Print each check; 1 if any is a PROBLEM."""
    for check in checks:
        out(check.lines())
    found = len(problems(checks))
    out(f"{found} problem(s): fix them before a run" if found else "ready: nothing to fix")
    return 1 if found else 0
