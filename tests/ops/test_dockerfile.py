"""The Dockerfile, checked statically (no Docker daemon here): it is parsed with BuildKit's own parser (the
``dockerfile`` package wraps moby/buildkit's Go parser) and its build context computed with docker-py's
.dockerignore rules. The image itself is never built by these tests; what can run here does: the HEALTHCHECK
command against a real gateway, and the ENTRYPOINT's console script."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import dockerfile
import pytest
from docker.utils.build import exclude_paths

from service.settings import Settings
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
FINAL_STAGES = ("runtime", "runtime-gpu")  # the default target (last stage) and the GPU target
HEAVY = re.compile(r"\b(torch|transformers|accelerate|peft|llama-cpp-python|tensorrt)\b|\[[^\]]*\b(training|teacher)\b")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[dockerfile.Command] = field(default_factory=list)

    def all(self, cmd: str) -> list[dockerfile.Command]:
        return [c for c in self.instructions if c.cmd == cmd]

    def last(self, cmd: str) -> dockerfile.Command:
        found = self.all(cmd)
        assert found, f"stage {self.name} has no {cmd}"
        return found[-1]

    def env(self) -> dict[str, str]:
        pairs: dict[str, str] = {}
        for command in self.all("ENV"):
            pairs.update(zip(command.value[::2], command.value[1::2], strict=True))
        return pairs

    def copy_from(self) -> set[str]:
        return {flag.removeprefix("--from=") for c in self.all("COPY") for flag in c.flags
                if flag.startswith("--from=")}


def parse_stages() -> list[Stage]:
    stages: list[Stage] = []
    for command in dockerfile.parse_file(str(REPO / "Dockerfile")):
        if command.cmd == "FROM":
            base, as_, name = command.value
            assert as_.upper() == "AS", command.original
            stages.append(Stage(name, base))
        elif stages:
            stages[-1].instructions.append(command)
    return stages


STAGES = {stage.name: stage for stage in parse_stages()}


def closure(name: str) -> list[Stage]:
    """The stage and every stage it builds on (FROM <stage>) or copies from (COPY --from=<stage>)."""
    seen: list[str] = []
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen or current not in STAGES:
            continue  # an image, not a stage
        seen.append(current)
        todo += [STAGES[current].base, *STAGES[current].copy_from()]
    return [STAGES[n] for n in seen]


def test_stages() -> None:
    assert list(STAGES) == ["builder", "builder-gpu", "runtime-gpu", "runtime"]  # `docker build .` = runtime
    assert STAGES["runtime"].base == STAGES["builder"].base == "${PYTHON_IMAGE}"
    assert STAGES["runtime-gpu"].base == "${CUDA_IMAGE}" and STAGES["builder-gpu"].base == "builder"
    args = dict(c.value[0].split("=", 1) for c in dockerfile.parse_file(str(REPO / "Dockerfile"))
                if c.cmd == "ARG" and "=" in c.value[0])
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")  # pyproject: requires-python >=3.11,<3.12
    assert args["CUDA_IMAGE"].startswith("nvidia/cuda:") and "runtime" in args["CUDA_IMAGE"]
    assert STAGES["runtime"].copy_from() == {"builder"} and STAGES["runtime-gpu"].copy_from() == {"builder-gpu"}


@pytest.mark.parametrize("name", FINAL_STAGES)
def test_runs_as_a_numeric_non_root_user(name: str) -> None:
    user = STAGES[name].last("USER").value[0]
    uid, _, gid = user.partition(":")
    # numeric, so that Kubernetes' runAsNonRoot can verify it; the chart's runAsUser is the same uid
    assert uid.isdigit() and int(uid) != 0 and (not gid or int(gid) != 0), user


@pytest.mark.parametrize("name", FINAL_STAGES)
def test_entrypoint_serves_on_all_interfaces(name: str) -> None:
    stage = STAGES[name]
    entrypoint = stage.last("ENTRYPOINT")
    assert entrypoint.json and list(entrypoint.value) == ["relevance", "serve"]
    assert not stage.all("CMD")  # arguments of `docker run IMAGE ...` go straight to `relevance serve`
    env = stage.env()
    assert env["RELEVANCE_HOST"] == "0.0.0.0"
    assert env["RELEVANCE_MODEL_REPOSITORY"] == "/app/model_repository"
    assert env["PATH"].startswith("/opt/venv/bin:")
    fields = Settings.model_fields
    for key in env:
        if key.startswith("RELEVANCE_"):
            assert key.removeprefix("RELEVANCE_").lower() in fields, f"{key} is not a gateway setting"


def test_entrypoint_is_the_installed_console_script() -> None:
    program, *args = STAGES["runtime"].last("ENTRYPOINT").value  # on the image's PATH: /opt/venv/bin
    done = subprocess.run([str(Path(sys.executable).with_name(program)), *args, "--help"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "--grpc-port" in done.stdout and "--model-repository" in done.stdout


def test_entrypoint_needs_no_training_package() -> None:
    """The console script's module and the app load without the packages the image leaves out (in a fresh
    interpreter; the training extra is installed here, so an import of it would go unnoticed otherwise)."""
    code = ("import sys\nfrom relevance.cli import app\nfrom service.app import create_app\n"
            "print(sorted(m for m in ('torch', 'transformers', 'accelerate', 'peft', 'onnx', 'llama_cpp', 'tensorrt')"
            " if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("name", FINAL_STAGES)
def test_exposes_the_default_ports(name: str) -> None:
    exposed = {int(port.split("/")[0]) for c in STAGES[name].all("EXPOSE") for port in c.value}
    defaults = {Settings.model_fields["port"].default, Settings.model_fields["grpc_port"].default}
    assert exposed == defaults == {8000, 50051}


@pytest.mark.parametrize("name", FINAL_STAGES)
def test_healthcheck_targets_healthz_with_the_stdlib(name: str) -> None:
    healthcheck = STAGES[name].last("HEALTHCHECK")
    assert healthcheck.json and healthcheck.value[0] == "CMD" and healthcheck.value[1] == "python"
    assert "/healthz" in healthcheck.value[-1] and "urllib.request" in healthcheck.value[-1]
    assert {"--interval=15s", "--timeout=5s"} <= set(healthcheck.flags)


def test_healthcheck_command_against_a_real_gateway(gateway_port: int) -> None:
    """The HEALTHCHECK's own command line, run with this interpreter: 0 against the gateway, 1 with nothing
    listening."""
    argv = [sys.executable, *STAGES["runtime"].last("HEALTHCHECK").value[2:]]

    def exit_code(port: int) -> int:
        return subprocess.run(argv, env={"RELEVANCE_PORT": str(port)}, capture_output=True, timeout=30).returncode

    assert exit_code(gateway_port) == 0
    assert exit_code(free_port(taken=(gateway_port,))) != 0


@pytest.mark.parametrize("name", FINAL_STAGES)
def test_runtime_installs_the_serving_extra_only(name: str) -> None:
    runs = [" ".join(c.value) for stage in closure(name) for c in stage.all("RUN")]
    assert runs, name
    for run in runs:
        assert not HEAVY.search(run), run
        for extras in re.findall(r"relevance\[([^\]]*)\]", run):
            assert extras == "serving", run
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["serving"]]:
        assert not HEAVY.search(requirement), requirement
    if name == "runtime-gpu":  # the GPU builder picks these two from the gpu extra, by prefix
        gpu = project["optional-dependencies"]["gpu"]
        assert sum(r.startswith(("onnxruntime-gpu", "faiss-gpu")) for r in gpu) == 2, gpu


def test_copy_sources_are_in_the_build_context() -> None:
    """Every COPY source from the context exists and none of its tracked files is dropped by .dockerignore
    (read as docker-py reads it: blank lines and comments skipped)."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    context = exclude_paths(str(REPO), patterns)
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    sources = [source for stage in STAGES.values() for c in stage.all("COPY")
               if not any(f.startswith("--from=") for f in c.flags) for source in c.value[:-1]]
    assert {"pyproject.toml", "README.md", "service", "model_repository"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), source
        files = [f for f in tracked if f == source or f.startswith(f"{source}/")]
        assert files, f"{source} holds no tracked file"
        missing = [f for f in files if f not in context]
        assert not missing, f"{source}: excluded by .dockerignore: {missing[:5]}"
    assert "model_repository/colbert/1/model.onnx" in context
    for private in (".venv", "runs", ".git", "data/index", "data/derived", "reports/tmp", ".env"):
        assert not any(path == private or path.startswith(f"{private}/") for path in context), private


def test_run_lines_are_valid_shell() -> None:
    """Every RUN line parses as sh (``sh -n``: syntax only, nothing runs): a quoting slip would break the build."""
    for stage in STAGES.values():
        for command in stage.all("RUN"):
            done = subprocess.run(["sh", "-n", "-c", " ".join(command.value)], capture_output=True, text=True)
            assert done.returncode == 0, f"{command.original}: {done.stderr}"
