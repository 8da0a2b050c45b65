"""What a run would trip on, found before any money is spent, each with its fix.

``dogbreed preflight`` runs every check in :func:`run_checks`; ``train`` and ``tune`` run the
cheap ones (:func:`require_ready`: the role, the buckets, the image, what the role may do with
them) and their training instance quota just before they create a job.

The findings are :class:`~.checks.Check` s; the role's trust policy is read by :mod:`.trust`, the
service quotas looked up by :mod:`.quotas`, and what the role may do with the run's buckets,
images and keys is asked of IAM's policy simulator (:mod:`.permissions`).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError, NoCredentialsError

from dogbreed.launch.errors import LaunchError
from dogbreed.launch.session import ROLE_PATTERN, Aws
from dogbreed.launch.training.checks import (
    OK,
    PROBLEM,
    SKIPPED,
    WARNING,
    Check,
    denied,
    problems,
    warnings,
)
from dogbreed.launch.training.permissions import (
    DENIED,
    ECR_IMAGE,
    POLICY_NAME,
    Needs,
    SimulatorRefused,
    assess,
    code_of,
)
from dogbreed.launch.training.quotas import QuotaNeed, check_quotas, training_need
from dogbreed.launch.training.trust import SAGEMAKER_PRINCIPAL, trust_of, trust_policy

if TYPE_CHECKING:
    from dogbreed.launch.training.spec import TrainingJobSpec

PERMISSIONS = "role permissions"


@dataclass(frozen=True)
class Target:
    """What a run would use: ``None`` where the user did not say (its check is skipped)."""

    role_arn: str | None = None
    buckets: Sequence[str] = ()  # besides those of reads and writes; none at all: skipped
    images: Sequence[tuple[str, str | None]] = ()  # (what, URI), e.g. ("training image", "...")
    quotas: Sequence[QuotaNeed] = ()
    reads: Sequence[str | None] = ()  # S3 URIs the role reads: the data channels
    writes: Sequence[str | None] = ()  # S3 URIs it writes: output, checkpoints, Debugger output

    @property
    def all_buckets(self) -> list[str]:
        uris = [u for u in (*self.reads, *self.writes) if u and u.startswith("s3://")]
        return list(dict.fromkeys([*self.buckets, *(bucket_of(u) for u in uris)]))

    def needs(self) -> Needs | None:
        """What the role must be allowed (None without a role ARN to ask about)."""
        if not self.role_arn or not ROLE_PATTERN.match(self.role_arn):
            return None
        return Needs.of(self.role_arn, self.reads, self.writes, [uri for _, uri in self.images])


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
            f"AWS refused them ({code_of(error)})",
            "aws configure (new access keys), or aws sso login for an expired session",
        )
    return Check("credentials", OK, f"account {identity['Account']}, {identity['Arn']}")


def put_role_policy(role_name: str, needs: Needs) -> str:
    """The command that attaches the least-privilege inline policy a run needs."""
    return (
        f"aws iam put-role-policy --role-name {role_name} --policy-name {POLICY_NAME} "
        f"--policy-document {shlex.quote(needs.policy_json())}"
    )


def check_role(aws: Aws, role_arn: str | None, needs: Needs | None = None) -> Check:
    """The role exists and trusts SageMaker; a fix that creates it also attaches the inline policy
    that ``needs`` asks for."""
    return _role(aws, role_arn, needs)[0]


def _role(aws: Aws, role_arn: str | None, needs: Needs | None) -> tuple[Check, bool]:
    """:func:`check_role`, and whether the role exists at that ARN (the simulator can ask)."""
    if not role_arn:
        return Check(
            "role",
            PROBLEM,
            "no SageMaker execution role given",
            "pass --role ARN or set DOGBREED_ROLE_ARN (create one as below if you have none)",
        ), False
    if not ROLE_PATTERN.match(role_arn):
        return Check(
            "role",
            PROBLEM,
            f"{role_arn!r} is not an IAM role ARN",
            "--role arn:aws:iam::<account>:role/<name> (aws iam list-roles shows yours)",
        ), False
    role_name = role_arn.rsplit("/", 1)[-1]
    trust = shlex.quote(trust_policy(role_arn.split(":")[4]))
    create = (
        f"aws iam create-role --role-name {role_name} --assume-role-policy-document {trust} && "
        f"aws iam attach-role-policy --role-name {role_name} "
        "--policy-arn arn:aws:iam::aws:policy/AmazonSageMakerFullAccess"
    )
    if needs:
        create += f" && {put_role_policy(role_name, needs)}"
    try:
        role = aws.client("iam").get_role(RoleName=role_name)["Role"]
    except ClientError as error:
        if code_of(error) == "NoSuchEntity":
            return Check("role", PROBLEM, f"{role_arn} does not exist", create), False
        if code_of(error) in DENIED:
            return denied("role", error), True  # the simulator may still answer
        raise
    if role["Arn"] != role_arn:
        return Check(
            "role",
            PROBLEM,
            f"{role_arn} does not exist; {role['Arn']} does",
            f"--role {role['Arn']}",
        ), False
    update = f"aws iam update-assume-role-policy --role-name {role_name} --policy-document {trust}"
    trust_found = trust_of(role.get("AssumeRolePolicyDocument", {}))
    if trust_found == "anyone":
        return Check(
            "role",
            WARNING,
            f'{role_name}\'s trust policy lets any principal ("*") assume it, under its '
            f"conditions: whether {SAGEMAKER_PRINCIPAL} may depends on them",
            f"name the service instead: {update}",
        ), True
    if trust_found != "sagemaker":
        return Check(
            "role",
            PROBLEM,
            f"{role_name} exists but does not trust {SAGEMAKER_PRINCIPAL}: jobs would fail to "
            "assume it",
            update,
        ), True
    return Check("role", OK, f"{role_name} exists and trusts {SAGEMAKER_PRINCIPAL}"), True


def bucket_of(uri: str) -> str:
    """``s3://bucket/prefix`` (or a plain bucket name) -> ``bucket``."""
    return uri.removeprefix("s3://").split("/", 1)[0]


def check_bucket(aws: Aws, bucket: str) -> Check:
    name = f"bucket {bucket}"
    s3 = aws.client("s3")
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        if code_of(error) in ("404", "NoSuchBucket"):
            return Check(
                name,
                PROBLEM,
                "does not exist",
                f"aws s3 mb s3://{bucket} --region {aws.region}",
            )
        if code_of(error) in DENIED:
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
        if code_of(error) in DENIED:
            return denied(name, error)
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
        code = code_of(error)
        if code == "RepositoryNotFoundException":
            return Check(what, PROBLEM, f"no repository {match['repository']}", push)
        if code == "ImageNotFoundException":
            if tag:
                fix = f"{push} --tag {tag}"
            else:  # a digest names one pushed image: pushing again makes another digest
                fix = (
                    f"{push}, then pass the URI it prints; or a digest that "
                    f"{match['repository']} has: aws ecr describe-images --registry-id "
                    f"{match['account']} --repository-name {match['repository']} --region "
                    f"{aws.region} --query 'imageDetails[].imageDigest'"
                )
            shown = tag or match["digest"]
            return Check(what, PROBLEM, f"{match['repository']} has no image {shown}", fix)
        if code in DENIED:
            return denied(what, error)
        raise
    return Check(what, OK, f"{uri} is in ECR")


def check_permissions(aws: Aws, role_arn: str, needs: Needs) -> list[Check]:
    """May the role read, list and write the run's prefixes, pull its images, use its buckets'
    keys? One PROBLEM or WARNING per action and resource it may not, problems first; the last
    problem (else the last warning) carries the fix, which ``train``'s refusal shows too."""
    role_name = role_arn.rsplit("/", 1)[-1]
    try:
        found = assess(aws, role_arn, needs)
    except SimulatorRefused as refused:
        why = (
            f"not allowed to ask IAM's policy simulator ({refused}; it takes "
            f"iam:SimulatePrincipalPolicy on {role_arn})"
            if code_of(refused.error) in DENIED
            else f"IAM's policy simulator did not answer ({refused})"
        )
        return [
            Check(
                PERMISSIONS,
                SKIPPED,
                f"{why}: whether {role_name} may read the data, write the output and pull the "
                "images was not checked",
            )
        ]
    checks = [Check(PERMISSIONS, SKIPPED, note) for note in found.notes]
    bad = [
        Check(PERMISSIONS, PROBLEM if f.final else WARNING, f"{role_name} may not {f.text()}")
        for f in sorted(found.findings, key=lambda f: not f.final)
    ]
    if not bad:
        said = [f"read {', '.join(p.uri for p in found.needs.reads)}"] if found.needs.reads else []
        said += (
            [f"write {', '.join(p.uri for p in found.needs.writes)}"] if found.needs.writes else []
        )
        if found.needs.repositories:
            names = [arn.split(":repository/", 1)[1] for arn in found.needs.repositories]
            said.append(f"pull {', '.join(names)} from ECR")
        if found.needs.keys:
            said.append(f"use the buckets' KMS key{'s' if len(found.needs.keys) > 1 else ''}")
        return [
            *checks,
            Check(PERMISSIONS, OK, f"{role_name} may {'; '.join(said)} (IAM policy simulator)"),
        ]
    last = len(problems(bad)) - 1 if problems(bad) else len(bad) - 1
    fix = put_role_policy(role_name, found.needs)
    bad[last] = Check(bad[last].name, bad[last].status, bad[last].detail, fix)
    return checks + bad


def run_checks(aws: Aws, target: Target) -> list[Check]:
    """Every check, in order; after failed credentials the rest are skipped."""
    credentials = check_credentials(aws)
    if credentials.status != OK:
        names = ["role", *(f"bucket {b}" for b in target.all_buckets)]
        names += [what for what, _ in target.images]
        names += [PERMISSIONS] if target.needs() else []
        names += [need.check for need in target.quotas]
        return [credentials, *(Check(n, SKIPPED, "needs credentials") for n in names)]
    return [credentials, *cheap_checks(aws, target), *check_quotas(aws, target.quotas)]


def cheap_checks(aws: Aws, target: Target) -> list[Check]:
    """The role, each bucket, each image (one or two requests each), then what the role may do
    with them (IAM's policy simulator: a few requests)."""
    needs = target.needs()
    role, exists = _role(aws, target.role_arn, needs)
    checks = [role]
    buckets = target.all_buckets
    checks += [check_bucket(aws, bucket) for bucket in buckets]
    if not buckets:
        checks.append(Check("bucket", SKIPPED, "none given (--bucket, --data, --output)"))
    for what, uri in target.images:
        checks.append(check_image(aws, what, uri) if uri else Check(what, SKIPPED, "none given"))
    if needs and target.role_arn:
        if exists:
            checks += check_permissions(aws, target.role_arn, needs)
        else:
            checks.append(Check(PERMISSIONS, SKIPPED, "no role to ask about (see role)"))
    return checks


def checkpoint_of(spec: TrainingJobSpec) -> str | None:
    """Where the job keeps checkpoints: ``--checkpoint-s3``, or with spot ``<output>/<job>/...``
    (as :func:`~dogbreed.launch.training.jobs.training_job_request` sends it)."""
    if spec.checkpoint_s3 or not spec.spot:
        return spec.checkpoint_s3
    return f"{spec.output_s3.rstrip('/')}/{spec.name}/checkpoints"


def require_ready(aws: Aws, spec: TrainingJobSpec, parallel: int | None = None) -> list[Check]:
    """What ``train`` and ``tune`` check before creating a job (not in local mode): the role, the
    buckets of every S3 URI, the image, what the role may do with them, and the training instance
    quota (the spot one with spot; ``parallel`` trials at once for ``tune``). A LaunchError lists
    each problem with its fix; the warnings are returned."""
    if aws.local:
        return []
    debug_output = spec.debugger.s3_output if spec.debugger else None
    checkpoint = checkpoint_of(spec)
    quota = training_need(spec.instance_type, spec.instance_count, spec.spot, parallel)
    target = Target(
        role_arn=spec.role_arn,
        images=[("training image", spec.image_uri)],
        quotas=[quota],
        reads=[*spec.channels.values(), checkpoint],
        writes=[spec.output_s3, checkpoint, debug_output],
    )
    checks = [*cheap_checks(aws, target), *check_quotas(aws, target.quotas)]
    found = problems(checks)
    if found:
        raise LaunchError(
            "preflight found a problem before any job started (--skip-preflight skips this):\n"
            + "\n".join(c.lines() for c in found)
        )
    return warnings(checks)
