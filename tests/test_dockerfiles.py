"""Static checks of the three Dockerfiles and the scripts that run commands inside the images.

Any Debian or Ubuntu base with python3, pip, torch and torchvision must work: such bases have no
``python`` or ``pip`` command (only ``python3`` and ``python3 -m pip``), so none may be called,
except from a virtual environment the Dockerfile itself makes and puts first on PATH (serve-slim).
The serving images parse untrusted bytes from the network: they install only hashed pins.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCKERFILES = {
    role: ROOT / "docker" / role / "Dockerfile" for role in ("train", "serve", "serve-slim")
}
SERVING = ("serve", "serve-slim")
IN_IMAGE = [
    *DOCKERFILES.values(),
    ROOT / "docker" / "serve" / "entrypoint.sh",
    ROOT / "local_test" / "train_local.sh",
]
BARE = re.compile(r"(?:^|[\s;&|(\"'`])(?<!-m )(python|pip)(?=\s)")
#: `python3 -m venv DIR`: a venv the Dockerfile makes; with DIR/bin first on PATH, pip is its own.
MAKES_VENV = re.compile(r"python3 -m venv (\S+)")
PIP_INSTALL = re.compile(r"\bpip install\b[^&;|]*")


def _commands(path: Path) -> list[tuple[int, str]]:
    """Lines that are not comments, with their numbers."""
    return [
        (number, line)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _instructions(path: Path) -> list[tuple[str, str]]:
    """A Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n(?:\s*#.*\n)*", " ", path.read_text())
    return [
        (keyword.upper(), args.strip())
        for keyword, args in re.findall(r"^\s*([A-Za-z]+)\s+(.*)$", joined, re.M)
    ]


def _own_venv_from(path: Path) -> int | None:
    """The line that makes a venv whose bin/ the Dockerfile puts first on PATH, if any."""
    text = path.read_text()
    for number, line in _commands(path):
        made = MAKES_VENV.search(line)
        if made and re.search(rf"\bPATH={re.escape(made[1])}/bin:", text):
            return number
    return None


def _pip_installs(role: str) -> list[str]:
    """Each ``pip install ...`` command of a Dockerfile's RUN instructions."""
    runs = [args for keyword, args in _instructions(DOCKERFILES[role]) if keyword == "RUN"]
    return [install for args in runs for install in PIP_INSTALL.findall(args)]


def _pins(path: Path) -> dict[str, tuple[str, list[str]]]:
    """A requirements file's ``name==version`` pins: {normalised name: (version, hashes)}."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    pins = {}
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pin = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", line)
            assert pin, f"{path.relative_to(ROOT)}: not a name==version pin: {line[:80]}"
            name = re.sub(r"[-_.]+", "-", pin[1]).lower()
            pins[name] = (pin[2], re.findall(r"--hash=(sha256:[0-9a-f]{64})", line))
    return pins


@pytest.mark.parametrize("path", IN_IMAGE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_bare_python_or_pip(path: Path) -> None:
    venv_line = _own_venv_from(path) or float("inf")
    bare = [
        f"{path.name}:{n}: {line.strip()}"
        for n, line in _commands(path)
        if BARE.search(line) and n <= venv_line
    ]
    assert not bare, "call python3 / python3 -m pip instead:\n" + "\n".join(bare)


def test_only_the_dockerfiles_own_venv_allows_a_bare_pip(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    made = "RUN python3 -m venv /opt/venv \\\n    && pip install -r r.txt\n"
    dockerfile.write_text("ENV PATH=/opt/venv/bin:$PATH\n" + made)
    assert _own_venv_from(dockerfile) == 2
    dockerfile.write_text("ENV PATH=/usr/bin:$PATH\n" + made)
    assert _own_venv_from(dockerfile) is None


def test_the_check_catches_a_bare_call() -> None:
    assert BARE.search("RUN pip install x") and BARE.search("    && python -c 'import x'")
    assert not BARE.search("RUN python3 -m pip install x") and not BARE.search(
        "/opt/venv/bin/python3 -c"
    )


def test_both_images_default_to_the_same_base() -> None:
    defaults = {
        re.search(
            r"^ARG BASE_IMAGE=(\S+)", (ROOT / "docker" / n / "Dockerfile").read_text(), re.M
        ).group(1)
        for n in ("train", "serve")
    }
    assert len(defaults) == 1, defaults


@pytest.mark.parametrize("role", DOCKERFILES)
def test_every_dockerfile_builds_from_its_base_image_arg(role: str) -> None:
    instructions = _instructions(DOCKERFILES[role])
    keyword, args = instructions[0]
    assert keyword == "ARG" and re.fullmatch(r"BASE_IMAGE=\S+", args), instructions[0]
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert froms and all(re.fullmatch(r"\$\{BASE_IMAGE\}( AS \w+)?", f) for f in froms), froms


@pytest.mark.parametrize("role", DOCKERFILES)
def test_every_copied_path_exists(role: str) -> None:
    for keyword, args in _instructions(DOCKERFILES[role]):
        if keyword == "COPY" and "--from=" not in args:
            for source in [a for a in args.split()[:-1] if not a.startswith("--")]:
                assert list(ROOT.glob(source)), f"docker/{role}/Dockerfile copies missing {source}"


@pytest.mark.parametrize("role", DOCKERFILES)
def test_pip_installs_only_wheels(role: str) -> None:
    for install in _pip_installs(role):
        if " -r " in install:
            assert "--only-binary=:all:" in install, install


@pytest.mark.parametrize("role", SERVING)
def test_serving_images_install_hashed_pins_and_build_nothing_unhashed(role: str) -> None:
    installs = _pip_installs(role)
    from_requirements = [i for i in installs if " -r " in i]
    assert from_requirements, f"docker/{role}/Dockerfile installs no requirements file"
    for install in installs:
        if " -r " in install:
            assert "--require-hashes" in install, install
        else:  # the dogbreed package: no dependencies, no build backend fetched unhashed
            assert "--no-deps" in install and "--no-build-isolation" in install, install
    pins = _pins(ROOT / "docker" / role / "requirements.txt")
    unhashed = [name for name, (_, hashes) in pins.items() if not hashes]
    assert pins and not unhashed, f"docker/{role}/requirements.txt: no hashes for {unhashed}"


@pytest.mark.parametrize("role", SERVING)
def test_serving_requirements_are_compiled_from_their_in_file(role: str) -> None:
    """requirements.txt holds every top-level pin of requirements.in at the same version."""
    folder = ROOT / "docker" / role
    compiled = _pins(folder / "requirements.txt")
    for name, (version, _) in _pins(folder / "requirements.in").items():
        assert compiled.get(name, ("missing",))[0] == version, (
            f"docker/{role}/requirements.txt is stale for {name}=={version}: regenerate it with "
            f"the uv command in docker/{role}/requirements.in"
        )


@pytest.mark.parametrize("role", SERVING)
def test_serving_images_answer_sagemakers_serve(role: str) -> None:
    instructions = dict(_instructions(DOCKERFILES[role]))
    assert instructions["ENTRYPOINT"] == '["/usr/local/bin/dogbreed-entrypoint"]'
    assert instructions["CMD"] == '["serve"]'
    assert instructions["EXPOSE"] == "8080"
    assert "accept-bind-to-port=true" in instructions["LABEL"]


def test_the_slim_image_runs_as_a_non_root_user() -> None:
    users = [
        args for keyword, args in _instructions(DOCKERFILES["serve-slim"]) if keyword == "USER"
    ]
    assert users, "docker/serve-slim/Dockerfile sets no USER: the server would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
