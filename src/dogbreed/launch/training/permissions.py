"""May the execution role do what a run needs? Asked of IAM's policy simulator, never tried.

A role with only ``AmazonSageMakerFullAccess`` reaches S3 objects only in buckets or keys whose
names contain "sagemaker" or "aws-glue" (or objects tagged ``SageMaker=true``), so its jobs cannot
read ``s3://my-dogbreed-bucket/...``. :func:`assess` asks ``SimulatePrincipalPolicy``, for the role:

- ``s3:GetObject`` on the objects of each prefix it reads (``arn:aws:s3:::bucket/prefix/*``): the
  data channels, and the checkpoint prefix, which SageMaker copies onto the instance at start;
- ``s3:ListBucket`` on each of their buckets, for each prefix (``s3:prefix``). Asked first without
  the key, once per bucket: where a policy reads ``s3:prefix`` the simulator names it among the
  ``MissingContextValues``, and each prefix is asked again with it (a request's context applies to
  all of its resources, so one request per prefix); where none does, the answer holds for every
  prefix;
- ``s3:PutObject`` on the output, checkpoint and Debugger output prefixes;
- ``ecr:BatchGetImage`` and ``ecr:GetDownloadUrlForLayer`` on each image's repository, and
  ``ecr:GetAuthorizationToken`` on ``*``;
- ``kms:Decrypt`` and ``kms:GenerateDataKey`` on the customer managed key of a bucket whose default
  encryption is SSE-KMS (``GetBucketEncryption``; the AWS managed ``aws/s3`` key needs no grant).

The simulator weighs the role's own policies (and its permissions boundary and SCPs), not bucket,
repository or key policies. So an explicit deny is final, and so is an implicit deny where no
resource policy could allow it (``GetBucketPolicy`` says ``NoSuchBucketPolicy``; ECR says
``RepositoryPolicyNotFoundException``; ``*`` has none); any other implicit deny is only a warning,
and so is a decision that hangs on a context key preflight cannot supply (a condition on
encryption headers, say).

The simulator answers one ``EvaluationResult`` per action, its per-resource decisions in
``ResourceSpecificResults`` (it used to answer one result per action and resource: both are read).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from botocore.exceptions import ClientError

from dogbreed.launch.session import Aws

ALLOWED, EXPLICIT_DENY, IMPLICIT_DENY, UNANSWERED = (
    "allowed",
    "explicitDeny",
    "implicitDeny",
    "unanswered",
)
READ = ("s3:GetObject",)
LIST = ("s3:ListBucket",)
WRITE = ("s3:PutObject",)
PULL = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
LOGIN = ("ecr:GetAuthorizationToken",)
USE_KEY = ("kms:Decrypt", "kms:GenerateDataKey")
#: The inline policy's name: ``put-role-policy`` replaces an inline policy of the same name.
POLICY_NAME = "dogbreed-access"
DENIED = {"AccessDenied", "AccessDeniedException", "403", "UnauthorizedOperation"}
ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[a-z0-9._/-]+?)(?::(?P<tag>[\w.-]+)|@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
KEY_ARN = re.compile(r"^arn:[\w-]+:kms:[a-z0-9-]+:\d{12}:key/")


def code_of(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@dataclass(frozen=True)
class Prefix:
    """An S3 prefix as SageMaker uses it: ``s3://bucket/dogImages`` is ``dogImages/``."""

    bucket: str
    key: str  # "" (the whole bucket) or ending in "/"

    @classmethod
    def of(cls, uri: str) -> Prefix:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return cls(bucket, key if not key or key.endswith("/") else f"{key}/")

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class Question:
    """One ``SimulatePrincipalPolicy`` request: each action on each resource, in one context."""

    actions: tuple[str, ...]
    resources: tuple[str, ...]
    context: tuple[tuple[str, str], ...] = ()  # (key, value) of string context keys

    def request(self, role_arn: str) -> dict[str, Any]:
        request: dict[str, Any] = {
            "PolicySourceArn": role_arn,
            "ActionNames": list(self.actions),
            "ResourceArns": list(self.resources),
        }
        if self.context:
            request["ContextEntries"] = [
                {"ContextKeyName": key, "ContextKeyValues": [value], "ContextKeyType": "string"}
                for key, value in self.context
            ]
        return request

    def said(self, action: str, resource: str) -> str:
        where = "".join(f" with {key} {value!r}" for key, value in self.context)
        return f"{action} on {resource}{where}"


@dataclass(frozen=True)
class Needs:
    """What a run's role must be allowed, from the URIs it reads and writes and its images."""

    partition: str = "aws"
    reads: tuple[Prefix, ...] = ()
    writes: tuple[Prefix, ...] = ()
    repositories: tuple[str, ...] = ()  # repository ARNs
    keys: tuple[str, ...] = ()  # KMS key ARNs

    @classmethod
    def of(
        cls,
        role_arn: str,
        reads: Iterable[str | None] = (),
        writes: Iterable[str | None] = (),
        images: Iterable[str | None] = (),
    ) -> Needs:
        """``s3://`` URIs only (``file://`` and unset ones are skipped); ECR images only."""
        partition = role_arn.split(":")[1]
        repositories = []
        for uri in images:
            match = ECR_IMAGE.match(uri or "")
            if match:
                repositories.append(
                    f"arn:{partition}:ecr:{match['region']}:{match['account']}:repository/"
                    f"{match['repository']}"
                )
        return cls(
            partition=partition,
            reads=_prefixes(reads),
            writes=_prefixes(writes),
            repositories=tuple(dict.fromkeys(repositories)),
        )

    def __bool__(self) -> bool:
        return bool(self.reads or self.writes or self.repositories)

    @property
    def buckets(self) -> list[str]:
        return list(dict.fromkeys(p.bucket for p in (*self.reads, *self.writes)))

    def listings(self, bucket_arn: str) -> list[Question]:
        """``s3:ListBucket`` on one bucket, once for each prefix read in it, with ``s3:prefix``."""
        return [
            Question(LIST, (bucket_arn,), (("s3:prefix", p.key),))
            for p in self.reads
            if self.bucket_arn(p.bucket) == bucket_arn
        ]

    def objects(self, prefixes: Iterable[Prefix]) -> tuple[str, ...]:
        return tuple(f"arn:{self.partition}:s3:::{p.bucket}/{p.key}*" for p in prefixes)

    def bucket_arn(self, bucket: str) -> str:
        return f"arn:{self.partition}:s3:::{bucket}"

    def questions(self) -> list[Question]:
        """What :func:`assess` asks, in order: one request each."""
        asked = []
        if self.reads:
            asked.append(Question(READ, self.objects(self.reads)))
            buckets = dict.fromkeys(p.bucket for p in self.reads)
            asked += [Question(LIST, (self.bucket_arn(bucket),)) for bucket in buckets]
        if self.writes:
            asked.append(Question(WRITE, self.objects(self.writes)))
        if self.repositories:
            asked += [Question(PULL, self.repositories), Question(LOGIN, ("*",))]
        if self.keys:
            asked.append(Question(USE_KEY, self.keys))
        return asked

    def policy(self) -> dict[str, Any]:
        """The least-privilege inline policy: exactly these actions on exactly these resources."""
        statements: list[dict[str, Any]] = []
        if self.reads:
            statements.append(_allow(READ, self.objects(self.reads)))
            for bucket in dict.fromkeys(p.bucket for p in self.reads):
                keys = [p.key for p in self.reads if p.bucket == bucket]
                statement = _allow(LIST, (self.bucket_arn(bucket),))
                if "" not in keys:
                    statement["Condition"] = {"StringLike": {"s3:prefix": [f"{k}*" for k in keys]}}
                statements.append(statement)
        if self.writes:
            statements.append(_allow(WRITE, self.objects(self.writes)))
        if self.repositories:
            statements += [_allow(PULL, self.repositories), _allow(LOGIN, ("*",))]
        if self.keys:
            statements.append(_allow(USE_KEY, self.keys))
        return {"Version": "2012-10-17", "Statement": statements}

    def policy_json(self) -> str:
        return json.dumps(self.policy(), separators=(",", ":"))


def _prefixes(uris: Iterable[str | None]) -> tuple[Prefix, ...]:
    """The distinct prefixes of the ``s3://`` URIs, less those inside another one."""
    found = list(dict.fromkeys(Prefix.of(u) for u in uris if u and u.startswith("s3://")))
    return tuple(
        p
        for p in found
        if not any(o != p and o.bucket == p.bucket and p.key.startswith(o.key) for o in found)
    )


def _allow(actions: Sequence[str], resources: Sequence[str]) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Action": actions[0] if len(actions) == 1 else list(actions),
        "Resource": resources[0] if len(resources) == 1 else list(resources),
    }


@dataclass(frozen=True)
class Finding:
    """One action on one resource that the role may not, or may not surely, perform."""

    question: Question
    action: str
    resource: str
    decision: str  # EXPLICIT_DENY, IMPLICIT_DENY or UNANSWERED
    final: bool  # True: no resource policy can change it (a PROBLEM); False: a WARNING
    why: str

    def text(self) -> str:
        return f"{self.question.said(self.action, self.resource)}: {self.why}"


@dataclass
class Assessment:
    """What :func:`assess` found: ``findings`` (empty: all allowed) and ``notes`` (what it could
    not look at, e.g. a bucket's encryption)."""

    needs: Needs
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class SimulatorRefused(Exception):
    """The caller may not call ``SimulatePrincipalPolicy`` (or the role vanished)."""

    def __init__(self, error: ClientError) -> None:
        super().__init__(f"{error.operation_name}: {code_of(error)}")
        self.error = error


Decision = tuple[str, tuple[str, ...]]  # (decision, context keys the policies read but lacked)


def simulate(aws: Aws, role_arn: str, question: Question) -> dict[tuple[str, str], Decision]:
    """``(action, resource) -> (decision, missing context keys)`` for one question, over every
    page (``IsTruncated`` / ``Marker``).

    A result without per-resource decisions names one resource, or gives the decision over all
    of the question's resources (its most restrictive one)."""
    decisions: dict[tuple[str, str], Decision] = {}
    pages = aws.client("iam").get_paginator("simulate_principal_policy")
    try:
        for page in pages.paginate(**question.request(role_arn)):
            for result in page.get("EvaluationResults", []):
                action = result["EvalActionName"]
                missing = tuple(result.get("MissingContextValues", []))
                specific = result.get("ResourceSpecificResults") or []
                for item in specific:
                    decisions[(action, item["EvalResourceName"])] = (
                        item["EvalResourceDecision"],
                        tuple(dict.fromkeys([*missing, *item.get("MissingContextValues", [])])),
                    )
                name = result.get("EvalResourceName")
                if specific:
                    continue
                if name in question.resources:
                    decisions[(action, name)] = (result["EvalDecision"], missing)
                else:
                    for resource in question.resources:
                        decisions.setdefault((action, resource), (result["EvalDecision"], missing))
    except ClientError as error:
        if code_of(error) in DENIED or code_of(error) == "NoSuchEntity":
            raise SimulatorRefused(error) from None
        raise
    return decisions


def bucket_keys(aws: Aws, needs: Needs) -> tuple[Needs, list[str]]:
    """``needs`` with the customer managed KMS keys of its buckets' default encryption, and a
    note for each bucket whose encryption or key could not be read."""
    keys, notes = [], []
    s3 = aws.client("s3")
    for bucket in needs.buckets:
        try:
            rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
        except ClientError as error:
            if code_of(error) in DENIED:
                notes.append(
                    f"may not read the default encryption of bucket {bucket} "
                    f"(GetBucketEncryption: {code_of(error)}): if it is SSE-KMS, the role also "
                    f"needs {' and '.join(USE_KEY)} on its key"
                )
            continue  # no configuration, or no bucket (its own check says so)
        for rule in rules.get("Rules", []):
            default = rule.get("ApplyServerSideEncryptionByDefault", {})
            key = default.get("KMSMasterKeyID")
            if not default.get("SSEAlgorithm", "").startswith("aws:kms") or not key:
                continue  # SSE-S3, or the AWS managed aws/s3 key, whose key policy allows S3
            if KEY_ARN.match(key):
                keys.append(key)
                continue
            try:
                metadata = aws.client("kms").describe_key(KeyId=key)["KeyMetadata"]
            except ClientError as error:
                notes.append(
                    f"may not look up bucket {bucket}'s KMS key {key} (DescribeKey: "
                    f"{code_of(error)}): the role also needs {' and '.join(USE_KEY)} on it"
                )
                continue
            if metadata.get("KeyManager") != "AWS":
                keys.append(metadata["Arn"])
    return replace(needs, keys=tuple(dict.fromkeys(keys))), notes


def _resource_policy(aws: Aws, resource: str, cache: dict[str, str]) -> str:
    """Whether a resource policy could allow what the role's own policies do not: "none",
    "present", "unreadable (...)", or "key" (every KMS key has a key policy). One lookup per
    bucket or repository."""
    if resource == "*":
        return "none"
    service = resource.split(":")[2]
    if service == "kms":
        return "key"
    owner = _owner(resource)
    if owner not in cache:
        try:
            if service == "s3":
                aws.client("s3").get_bucket_policy(Bucket=owner.removeprefix("bucket "))
            else:  # ecr: arn:aws:ecr:region:account:repository/name
                aws.client("ecr").get_repository_policy(
                    registryId=resource.split(":")[4],
                    repositoryName=owner.removeprefix("repository "),
                )
            cache[owner] = "present"
        except ClientError as error:
            if code_of(error) in ("NoSuchBucketPolicy", "RepositoryPolicyNotFoundException"):
                cache[owner] = "none"
            else:
                cache[owner] = f"unreadable ({error.operation_name}: {code_of(error)})"
    return cache[owner]


def _owner(resource: str) -> str:
    """``bucket NAME`` or ``repository NAME`` of an S3 or ECR ARN."""
    if resource.split(":")[2] == "s3":
        return f"bucket {resource.split(':::', 1)[1].split('/', 1)[0]}"
    return f"repository {resource.split(':repository/', 1)[-1]}"


def _policy_kind(resource: str) -> str:
    return "bucket policy" if resource.split(":")[2] == "s3" else "repository policy"


def _weigh(
    aws: Aws, question: Question, action: str, resource: str, said: Decision, cache: dict[str, str]
) -> Finding:
    decision, missing = said
    if decision == EXPLICIT_DENY:
        why = "explicitly denied by the role's policies (no resource policy can undo that)"
        return Finding(question, action, resource, decision, not missing, _hanging(why, missing))
    if decision != IMPLICIT_DENY:
        why = f"the simulator did not answer for it ({decision})"
        return Finding(question, action, resource, UNANSWERED, False, why)
    policy = _resource_policy(aws, resource, cache)
    if policy == "none":
        where = (
            f", and {_owner(resource)} has no {_policy_kind(resource)} that could"
            if resource != "*"
            else ""
        )
        why = _hanging(f"no policy of the role allows it{where}", missing)
        return Finding(question, action, resource, decision, not missing, why)
    if policy == "key":
        why = (
            "no policy of the role allows it; the key's key policy may (the simulator does not "
            "weigh key policies)"
        )
    elif policy == "present":
        why = (
            f"no policy of the role allows it; the {_policy_kind(resource)} of {_owner(resource)} "
            "may (the simulator does not weigh it)"
        )
    else:
        why = (
            f"no policy of the role allows it; whether the {_policy_kind(resource)} of "
            f"{_owner(resource)} does is unknown: it is {policy}"
        )
    return Finding(question, action, resource, decision, False, _hanging(why, missing))


def _hanging(why: str, missing: Sequence[str]) -> str:
    if not missing:
        return why
    return f"{why}, but that hangs on {', '.join(missing)}, which preflight cannot know"


def assess(aws: Aws, role_arn: str, needs: Needs) -> Assessment:
    """Ask every question of ``needs`` (its buckets' KMS keys added first), and each prefix's
    listing where a policy reads ``s3:prefix``; raise :class:`SimulatorRefused` if the simulator
    may not be asked."""
    needs, notes = bucket_keys(aws, needs)
    found = Assessment(needs, notes=notes)
    cache: dict[str, str] = {}
    pending = needs.questions()
    while pending:
        question = pending.pop(0)
        decisions = simulate(aws, role_arn, question)
        for action in question.actions:
            for resource in question.resources:
                said = decisions.get((action, resource), (UNANSWERED, ()))
                if question.actions == LIST and not question.context and "s3:prefix" in said[1]:
                    pending[:0] = needs.listings(resource)  # next: each prefix, with its key
                    continue
                if said[0] != ALLOWED:
                    found.findings.append(_weigh(aws, question, action, resource, said, cache))
    return found
