"""The regexes the launcher sends parse every value our trainer really prints."""

from __future__ import annotations

import re

from dogbreed import metrics
from dogbreed.launch.training.jobs import TrainingJobSpec
from dogbreed.launch.training.tune import TuningSpec, tuning_job_request

from .conftest import REGION, ROLE, TRAIN_IMAGE


def sent_metric_definitions() -> list[dict[str, str]]:
    training = TrainingJobSpec(
        name="hpo-x",
        image_uri=TRAIN_IMAGE,
        role_arn=ROLE,
        output_s3="s3://b/out",
        channels={"training": "s3://b/data"},
    )
    request = tuning_job_request(TuningSpec(name="hpo-x", training=training), REGION)
    return request["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"]


def test_every_value_in_the_trainers_metric_lines_is_parsed(trained_job) -> None:
    definitions = sent_metric_definitions()
    assert definitions == metrics.metric_definitions()  # the one module, not a copy
    lines = [line for line in trained_job.log.splitlines() if line.startswith("[metrics]")]
    assert len(lines) == 4, lines  # 3 epochs + the final test evaluation
    seen: set[str] = set()
    for line in lines:
        printed = dict(token.split("=", 1) for token in line.split()[1:])
        parsed = {}
        for definition in definitions:  # as SageMaker does: one regex search per metric
            match = re.search(definition["Regex"], line)
            if match:
                parsed[definition["Name"]] = float(match.group(1))
        expected = {metrics.METRIC_NAMES[key]: float(value) for key, value in printed.items()}
        assert parsed == expected, line
        seen |= set(parsed)
    # The objective and the curves SageMaker draws are all there.
    assert {metrics.OBJECTIVE_METRIC, "valid:loss", "train:loss", "train:accuracy"} <= seen
    assert {"test:accuracy", "test:loss", "epoch", "train:images_per_sec", "train:lr"} <= seen


def test_progress_and_log_lines_match_no_metric(trained_job) -> None:
    definitions = sent_metric_definitions()
    others = [line for line in trained_job.log.splitlines() if not line.startswith("[metrics]")]
    assert others
    for line in others:
        hits = [d["Name"] for d in definitions if re.search(d["Regex"], line)]
        assert not hits, (line, hits)
