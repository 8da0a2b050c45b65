"""An IAM role's trust policy: does it let SageMaker assume the role, and the one it needs."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"


def _statements(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, str):
        document = json.loads(unquote(document))
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _principals(statement: dict[str, Any]) -> dict[str, list[Any]]:
    """A statement's Principal as ``{kind: [values]}``: ``"*"`` (any principal) is ``{"*": ["*"]}``;
    a dict's values may be strings or lists."""
    principal = statement.get("Principal") or {}
    if isinstance(principal, str):
        return {"*": ["*"]} if principal == "*" else {"AWS": [principal]}
    if not isinstance(principal, dict):
        return {}
    return {str(kind): _as_list(values) for kind, values in principal.items()}


def trust_of(document: Any) -> str:
    """``"sagemaker"`` where a statement allows sts:AssumeRole to the SageMaker service,
    ``"anyone"`` where one allows it to any principal (``"*"``; usually under a condition, which
    decides whether SageMaker is let in), else ``"no"``."""
    found = "no"
    for statement in _statements(document):
        actions = _as_list(statement.get("Action", []))
        if statement.get("Effect") != "Allow" or not any(
            a in ("sts:AssumeRole", "sts:*", "*") for a in actions
        ):
            continue
        principals = _principals(statement)
        if SAGEMAKER_PRINCIPAL in principals.get("Service", []):
            return "sagemaker"
        if "*" in principals.get("*", []) or "*" in principals.get("AWS", []):
            found = "anyone"
    return found


def trust_policy(account: str) -> str:
    """The trust policy SageMaker needs, limited to jobs of ``account`` (``aws:SourceAccount``:
    AWS's guard against the confused deputy problem)."""
    statement = {
        "Effect": "Allow",
        "Principal": {"Service": SAGEMAKER_PRINCIPAL},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": account}},
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, separators=(",", ":"))
