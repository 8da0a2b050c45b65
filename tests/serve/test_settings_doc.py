"""docs/serving.md's settings table against the code: every variable the server reads has a row,
every row is read, and every default the table states is the code's."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from dogbreed.serve import allocator
from dogbreed.serve.config import REMOVED_SETTINGS, ServerSettings, cpu_batch_size

DOC = Path(__file__).parents[2] / "docs" / "serving.md"
SERVE_SOURCES = sorted((Path(__file__).parents[2] / "src" / "dogbreed" / "serve").glob("*.py"))
#: Variables the server's code names that are no settings of its users.
NOT_SETTINGS = {
    "LD_PRELOAD": "how DOGBREED_MALLOC preloads tcmalloc",
    "DOGBREED_CUDA_INDEX": "set by the master for each GPU worker it forks",
}
CPUS, GPUS = 8, 2
CPU = ServerSettings.from_env({}, cpus=CPUS, gpus=0)
GPU = ServerSettings.from_env({}, cpus=CPUS, gpus=GPUS)

#: The defaults the code gives each variable, in the order the table's `code` spans state them.
CODE_DEFAULTS: dict[str, list[str]] = {
    "SM_MODEL_DIR": [str(CPU.model_dir)],
    "SAGEMAKER_BIND_TO_PORT": [str(CPU.port)],
    "SAGEMAKER_MODEL_SERVER_WORKERS": [str(CPU.workers)],
    "MODEL_SERVER_WORKERS": [str(CPU.workers)],
    "SAGEMAKER_MODEL_SERVER_TIMEOUT": [str(CPU.timeout_s)],
    "MODEL_SERVER_TIMEOUT": [str(CPU.timeout_s)],
    "SAGEMAKER_MAX_PAYLOAD_IN_MB": [str(CPU.max_payload_mb)],
    "DOGBREED_TORCH_THREADS": [],
    "DOGBREED_MAX_BATCH_SIZE": [str(cpu_batch_size(224)), str(GPU.max_batch_size)],
    "DOGBREED_MAX_QUEUE_WAIT_S": [f"{CPU.max_queue_wait_s:g}"],
    "DOGBREED_MALLOC": [allocator.DEFAULT_CHOICE],
    "DOGBREED_RUNTIME": [CPU.runtime],
    "DOGBREED_PRECISION": [CPU.precision],
}
#: Rules the table states in words, each with the check that the code follows it.
STATED_RULES: dict[str, Callable[[], bool]] = {
    "one per device": lambda: GPU.workers == GPUS,
    "cores / workers": lambda: CPU.torch_threads == CPUS // CPU.workers,
    "half the request timeout": lambda: CPU.max_queue_wait_s == CPU.timeout_s / 2,
    "from the image size": lambda: CPU.max_batch_size is None,
}


def settings_table() -> dict[str, str]:
    """Each variable named in the first column of the ``## Settings`` table -> its Default cell."""
    section = DOC.read_text().split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    defaults = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 3:
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]):
                defaults[name] = cells[1]
    return defaults


def removed_in_doc() -> set[str]:
    text = DOC.read_text()
    listed = text.split("<!-- removed-settings -->", 1)[1].split("<!-- /removed-settings -->")[0]
    return set(re.findall(r"`([A-Z][A-Z0-9_]+)`", listed))


class RecordingEnv(Mapping[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def variables_read() -> set[str]:
    """What the server reads from its environment, on CPU and on GPU, allocator included."""
    env = RecordingEnv()
    for gpus in (0, GPUS):
        ServerSettings.from_env(env, cpus=CPUS, gpus=gpus)
    allocator.preload_for(env)
    return env.read - set(NOT_SETTINGS)


def test_every_variable_read_has_a_row_and_every_row_is_read() -> None:
    assert set(settings_table()) == variables_read()
    assert set(CODE_DEFAULTS) == set(settings_table())


def test_every_variable_named_in_the_code_is_a_setting_removed_or_internal() -> None:
    named = set()
    for source in SERVE_SOURCES:
        named |= set(
            re.findall(r'"((?:DOGBREED|SAGEMAKER|MODEL_SERVER|SM)_[A-Z0-9_]+)"', source.read_text())
        )
    unknown = named - set(settings_table()) - set(REMOVED_SETTINGS) - set(NOT_SETTINGS)
    assert not unknown, f"read by the code, missing from docs/serving.md: {sorted(unknown)}"


def test_the_removed_variables_listed_are_those_the_code_warns_about() -> None:
    assert removed_in_doc() == set(REMOVED_SETTINGS)
    assert not removed_in_doc() & set(settings_table())


@pytest.mark.parametrize("name", sorted(CODE_DEFAULTS))
def test_documented_default_is_the_codes(name: str) -> None:
    cell = settings_table()[name]
    assert re.findall(r"`([^`]+)`", cell) == CODE_DEFAULTS[name], f"{name}: the table says {cell!r}"
    for rule, holds in STATED_RULES.items():
        if rule in cell:
            assert holds(), f"{name}: the table says {rule!r}, the code does otherwise"
