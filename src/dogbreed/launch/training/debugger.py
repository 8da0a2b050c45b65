"""Debugger and Profiler fields of a training job: the smdebug hook, built-in rules, the profiler.

Rule configurations come from the SageMaker SDK (``sagemaker.core.debugger`` over
``smdebug_rulesconfig``). Built-in rules run in SageMaker's ``sagemaker-debugger-rules`` image,
which exists only in some regions: :func:`rule_image_uri` says which, and the image is looked up
only when a rule or the profiler's report is asked for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dogbreed.launch import defaults
from dogbreed.launch.errors import LaunchError
from dogbreed.launch.session import check_s3_uri

#: The built-in Debugger rules a job gets unless told otherwise.
DEFAULT_RULES = (
    "VanishingGradient",
    "Overfit",
    "Overtraining",
    "PoorWeightInitialization",
    "LossNotDecreasing",
)
PROFILER_RULE_EXAMPLES = ("LowGPUUtilization", "CPUBottleneck", "IOBottleneck")


@dataclass(frozen=True)
class DebuggerSettings:
    """Which tensors the smdebug hook saves, how often, which rules read them; the profiler.

    ``rules`` names built-in tensor rules (``Overfit``) and profiler rules
    (``LowGPUUtilization``). ``tensors=False`` drops the hook and its tensor rules;
    ``profiler=False`` turns system monitoring, the ProfilerReport rule and any profiler rule off.
    """

    s3_output: str
    tensors: bool = True
    losses_interval: int = defaults.LOSSES_INTERVAL
    weights_interval: int = defaults.WEIGHTS_INTERVAL
    gradients_interval: int = defaults.GRADIENTS_INTERVAL
    rules: Sequence[str] = DEFAULT_RULES
    profiler: bool = True
    profiling_interval_ms: int = 500


@dataclass(frozen=True)
class BuiltInRules:
    """Rule names sorted by kind: tensor rules read the hook's tensors, profiler rules its metrics."""

    tensor: tuple[Any, ...]  # sagemaker.core.debugger.Rule
    profiler: tuple[Any, ...]  # sagemaker.core.debugger.ProfilerRule


def rule_image_uri(region: str) -> str | None:
    """The ``sagemaker-debugger-rules`` image of ``region``, or None where there is none.

    None for the regions the SageMaker SDK lists as without Debugger or Profiler
    (``fw_utils.DEBUGGER_UNSUPPORTED_REGIONS``) and for any region its image table lacks.
    """
    from sagemaker.core import fw_utils
    from sagemaker.core.debugger import get_rule_container_image_uri

    unsupported = {*fw_utils.DEBUGGER_UNSUPPORTED_REGIONS, *fw_utils.PROFILER_UNSUPPORTED_REGIONS}
    if region.lower() in unsupported:
        return None
    try:
        return get_rule_container_image_uri(None, region)
    except ValueError:
        return None


def built_in_rules(names: Sequence[str]) -> BuiltInRules:
    """Each name as the SDK's tensor or profiler rule; a LaunchError names any unknown one."""
    from sagemaker.core.debugger import ProfilerRule, Rule, rule_configs
    from smdebug_rulesconfig.profiler_rules.rules import ProfilerRuleBase

    tensor, profiler = [], []
    for name in dict.fromkeys(names):
        profiler_class = getattr(rule_configs, name, None)
        if isinstance(profiler_class, type) and issubclass(profiler_class, ProfilerRuleBase):
            profiler.append(ProfilerRule.sagemaker(profiler_class()))
            continue
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
        factory = getattr(rule_configs, snake, None)
        config = factory() if callable(factory) and not snake.startswith("_") else None
        if not isinstance(config, dict) or "DebugRuleConfiguration" not in config:
            raise LaunchError(
                f"unknown built-in rule {name!r}; Debugger rules: {', '.join(DEFAULT_RULES)}, ...; "
                f"profiler rules: {', '.join(PROFILER_RULE_EXAMPLES)}, ..."
            )
        tensor.append(Rule.sagemaker(config))
    return BuiltInRules(tuple(tensor), tuple(profiler))


def _collection(name: str, interval: int) -> Any:
    from sagemaker.core.debugger import CollectionConfig

    if interval < 1:
        raise LaunchError(f"the {name} save interval must be >= 1 step; got {interval}")
    return CollectionConfig(name, parameters={"save_interval": str(interval)})


def debugger_request(settings: DebuggerSettings, region: str) -> dict[str, Any]:
    """``DebugHookConfig``, ``DebugRuleConfigurations`` and the profiler fields of a request.

    The hook saves the ``losses``, ``weights`` and ``gradients`` collections at the chosen
    intervals, plus any collection a rule needs (e.g. ``relu_input`` for
    PoorWeightInitialization) with the rule's own defaults. A LaunchError, before any call, where
    a rule or the profiler is asked for in a region without the rule image.
    """
    from sagemaker.core.debugger import ProfilerRule, rule_configs

    check_s3_uri(settings.s3_output, "the Debugger output path")
    collections = {
        "losses": _collection("losses", settings.losses_interval),
        "weights": _collection("weights", settings.weights_interval),
        "gradients": _collection("gradients", settings.gradients_interval),
    }
    rules = built_in_rules(settings.rules)
    tensor_rules = rules.tensor if settings.tensors else ()
    if rules.profiler and not settings.profiler:
        names = ", ".join(r.name for r in rules.profiler)
        raise LaunchError(f"profiler rule(s) {names} need the profiler: drop --no-profiler")
    image = None
    if tensor_rules or settings.profiler:
        image = rule_image_uri(region)
        if image is None:
            raise LaunchError(
                f"SageMaker Debugger rules and the profiler are not available in {region}: "
                "turn them off (--no-debugger --no-profiler) or use another region"
            )
    rule_configurations = []
    for rule in tensor_rules:
        for needed in rule.collection_configs:
            collections.setdefault(needed.name, needed)
        rule_configurations.append(
            {**rule.to_debugger_rule_config_dict(), "RuleEvaluatorImage": image}
        )
    request: dict[str, Any] = {}
    if settings.tensors:
        request["DebugHookConfig"] = {
            "S3OutputPath": settings.s3_output,
            "CollectionConfigurations": [c._to_request_dict() for c in collections.values()],
        }
        if rule_configurations:
            request["DebugRuleConfigurations"] = rule_configurations
    if settings.profiler:
        report = ProfilerRule.sagemaker(rule_configs.ProfilerReport())
        profiler_rules = {r.name: r for r in (report, *rules.profiler)}.values()
        request["ProfilerConfig"] = {
            "S3OutputPath": settings.s3_output,
            "ProfilingIntervalInMilliseconds": settings.profiling_interval_ms,
        }
        request["ProfilerRuleConfigurations"] = [
            {**rule.to_profiler_rule_config_dict(), "RuleEvaluatorImage": image}
            for rule in profiler_rules
        ]
    else:
        request["ProfilerConfig"] = {"DisableProfiler": True}
    return request
