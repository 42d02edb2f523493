"""Structure of docker-compose.yml and the worker images it builds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from autods.pipeline.stagetable import queues

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"

ALL_QUEUES = {"ingest", "preprocess", "gpu", "label", "shard"}
CPU_QUEUES = {"ingest", "preprocess", "label", "shard"}
REQUIRED_SERVICES = {
    "redis",
    "postgres",
    "minio",
    "minio-init",
    "migrate",
    "flower",
    "worker-cpu",
    "worker-gpu",
    "worker-gpu-cpu",
}
WORKERS = {"worker-cpu", "worker-gpu", "worker-gpu-cpu"}
# A value bound to a variable named like this must be a `${VAR:-...local-dev...}` default.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|BASIC_AUTH|PRIVATE_KEY", re.IGNORECASE)
LOCAL_DEV_DEFAULT = re.compile(r"^\$\{[A-Z][A-Z0-9_]*:-[^}]*local-dev[^}]*\}$")
# Compose interpolation (`$${...}` is escaped: expanded in the container, not here).
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)(?::?-([^}]*))?\}")
URL_USERINFO = re.compile(r"^[a-z][a-z0-9+.-]*://(?P<userinfo>[^\s]+)@", re.I)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def depends_on(service: dict) -> dict[str, dict]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return deps


def command_of(service: dict) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(part) for part in cmd]


def queues_of(service: dict) -> set[str]:
    cmd = command_of(service)
    assert cmd[:2] == ["autods", "worker"], cmd
    assert "--queues" in cmd, cmd
    return set(cmd[cmd.index("--queues") + 1].split(","))


def in_default_profile(service: dict) -> bool:
    return not service.get("profiles")


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    total = 0.0
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(duration)):
        total += float(value) * units[unit]
    return total


def test_every_queue_of_the_stage_table_is_listed_here() -> None:
    assert set(queues()) == ALL_QUEUES


def test_required_services_exist(services: dict) -> None:
    assert set(services) >= REQUIRED_SERVICES


def test_depends_on_targets_exist_and_are_started_by_default(services: dict) -> None:
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        for target, spec in depends_on(service).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert spec.get("condition", "service_started") in conditions
            if in_default_profile(service):
                assert in_default_profile(services[target]), (
                    f"{name} (default profile) depends on profiled service {target}"
                )


def test_infrastructure_has_healthchecks(services: dict) -> None:
    for name in ("redis", "postgres", "minio"):
        check = services[name].get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable", False)


def test_startup_order(services: dict) -> None:
    assert depends_on(services["migrate"])["postgres"]["condition"] == "service_healthy"
    assert depends_on(services["minio-init"])["minio"]["condition"] == "service_healthy"
    assert depends_on(services["flower"])["redis"]["condition"] == "service_healthy"
    for name in WORKERS:
        deps = depends_on(services[name])
        assert deps["redis"]["condition"] == "service_healthy", name
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["minio-init"]["condition"] == "service_completed_successfully", name


def test_named_volumes_are_declared(compose: dict, services: dict) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for service in services.values():
        for volume in service.get("volumes") or []:
            if isinstance(volume, dict):
                if volume.get("type", "volume") == "volume" and volume.get("source"):
                    used.add(volume["source"])
                continue
            source = str(volume).split(":", 1)[0]
            if ":" in str(volume) and not source.startswith((".", "/", "~", "$")):
                used.add(source)
    assert used, "expected named volumes for the stateful services"
    assert used <= declared, f"undeclared volumes: {used - declared}"
    for name in ("redis", "postgres", "minio"):
        assert services[name].get("volumes"), f"{name} keeps no data"


def test_worker_queues(services: dict) -> None:
    assert queues_of(services["worker-cpu"]) == CPU_QUEUES
    assert queues_of(services["worker-gpu"]) == {"gpu"}
    assert queues_of(services["worker-gpu-cpu"]) == {"gpu"}
    for name in ("worker-gpu", "worker-gpu-cpu"):
        cmd = command_of(services[name])
        assert cmd[cmd.index("--concurrency") + 1] == "1", name

    default_workers = [
        s
        for s in services.values()
        if in_default_profile(s) and command_of(s)[:2] == ["autods", "worker"]
    ]
    covered = set().union(*(queues_of(s) for s in default_workers))
    assert covered == ALL_QUEUES, "plain `docker compose up` must consume every queue"


def test_gpu_worker_is_profiled_and_reserves_a_gpu(services: dict) -> None:
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["dockerfile"] == "workers/Dockerfile.gpu"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    assert env_of(gpu)["AUTODS_CLIP_DEVICE"] == "cuda"

    fallback = services["worker-gpu-cpu"]
    assert in_default_profile(fallback)
    assert fallback["build"]["dockerfile"] == "workers/Dockerfile.cpu"
    assert env_of(fallback)["AUTODS_CLIP_DEVICE"] == "cpu"
    assert "deploy" not in fallback or "resources" not in fallback["deploy"]


def test_workers_stop_gracefully(services: dict) -> None:
    for name in WORKERS:
        assert seconds(services[name].get("stop_grace_period", "10s")) >= 120, name


def test_shared_autods_environment(compose: dict, services: dict) -> None:
    shared = compose["x-autods-env"]
    for key in (
        "AUTODS_DATABASE_URL",
        "AUTODS_BROKER_URL",
        "AUTODS_BROKER_RESULT_BACKEND",
        "AUTODS_STORAGE_URL",
        "AUTODS_STORAGE_ENDPOINT_URL",
        "AUTODS_CLIP_MODEL",
        "AUTODS_CLIP_PRETRAINED",
        "AUTODS_CLIP_DEVICE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ):
        assert key in shared, key
    assert shared["AUTODS_BROKER_URL"].startswith("redis://redis:6379/")
    assert "@postgres:5432/autods" in shared["AUTODS_DATABASE_URL"]
    assert shared["AUTODS_STORAGE_ENDPOINT_URL"] == "http://minio:9000"
    for name in (*WORKERS, "migrate", "flower"):
        env = env_of(services[name])
        for key, value in shared.items():
            if key != "AUTODS_CLIP_DEVICE":
                assert env.get(key) == value, f"{name}: {key}"


def test_buckets_are_created(services: dict) -> None:
    init = services["minio-init"]
    assert init["image"].startswith("minio/mc")
    command = init["command"]
    script = command if isinstance(command, str) else "\n".join(command)
    for bucket in ("raw", "autods"):
        assert re.search(rf"mc mb --ignore-existing local/{bucket}\b", script), bucket
    assert init.get("restart") == "no"
    assert command_of(services["migrate"]) == ["autods", "db", "upgrade"]


def test_flower_has_basic_auth(services: dict) -> None:
    flower = services["flower"]
    command = " ".join(command_of(flower))
    assert "celery -A autods.tasks.app:app flower" in command
    assert "--port=5555" in command
    assert re.search(r"--basic-auth=\"?\$\$?\{?FLOWER_BASIC_AUTH", command), command
    assert LOCAL_DEV_DEFAULT.match(env_of(flower)["FLOWER_BASIC_AUTH"])


def url_password(value: str) -> str | None:
    """The password part of a URL's userinfo, `${...}` expressions kept whole."""
    match = URL_USERINFO.match(value)
    if not match:
        return None
    expressions: list[str] = []

    def hide(m: re.Match) -> str:
        expressions.append(m.group(0))
        return f"\0{len(expressions) - 1}\0"

    masked = re.sub(r"\$\{[^}]*\}", hide, match["userinfo"])
    _, colon, password = masked.partition(":")
    if not colon:
        return None
    return re.sub(r"\0(\d+)\0", lambda m: expressions[int(m.group(1))], password)


def _secret_values(compose: dict) -> list[tuple[str, str]]:
    found = [(f"x-autods-env.{k}", str(v)) for k, v in compose["x-autods-env"].items()]
    for name, service in compose["services"].items():
        found += [(f"{name}.{k}", v) for k, v in env_of(service).items()]
    return found


def test_no_secret_other_than_marked_local_dev_defaults(compose: dict) -> None:
    checked = 0
    for where, value in _secret_values(compose):
        key = where.rsplit(".", 1)[1]
        if SECRET_NAME.search(key):
            assert LOCAL_DEV_DEFAULT.match(value), f"{where}={value!r} is not a local-dev default"
            checked += 1
        password = url_password(value)
        if password is not None:
            assert LOCAL_DEV_DEFAULT.match(password), f"{where} embeds a password"
            checked += 1
    assert checked >= 5

    # Any defaulted variable named like a secret, anywhere in the file (commands too).
    text = COMPOSE_FILE.read_text()
    for match in INTERPOLATION.finditer(text):
        var, default = match.group(1), match.group(2)
        if SECRET_NAME.search(var):
            assert default is not None and "local-dev" in default, match.group(0)


def test_ports_bind_to_localhost(services: dict) -> None:
    for name, service in services.items():
        for port in service.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} publicly"


def test_build_contexts_and_dockerfiles_exist(services: dict) -> None:
    built = set()
    for name, service in services.items():
        build = service.get("build")
        if not build:
            continue
        if isinstance(build, str):
            build = {"context": build}
        context = (ROOT / build.get("context", ".")).resolve()
        assert context.is_dir(), f"{name}: missing context {context}"
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: missing {dockerfile}"
        built.add(dockerfile.relative_to(ROOT).as_posix())
    assert built == {"workers/Dockerfile.cpu", "workers/Dockerfile.gpu"}


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize(
    ("dockerfile", "base", "queues", "extras"),
    [
        ("workers/Dockerfile.cpu", "python:3.11-slim", "ingest,preprocess,label,shard", "label"),
        ("workers/Dockerfile.gpu", "pytorch/pytorch:", "gpu", "gpu,label"),
    ],
)
def test_dockerfiles(dockerfile: str, base: str, queues: str, extras: str) -> None:
    path = ROOT / dockerfile
    instructions = _instructions(path)
    text = path.read_text()

    args = {
        rest.split("=", 1)[0]: rest.split("=", 1)[1].strip('"')
        for word, rest in instructions
        if word == "ARG" and "=" in rest
    }
    base_image = next(rest for word, rest in instructions if word == "FROM")
    base_image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base_image)
    assert base_image.startswith(base), base_image
    assert "3.11" in base_image or "sys.version_info[:2] == (3, 11)" in text

    assert extras in args["AUTODS_EXTRAS"].split(",") or args["AUTODS_EXTRAS"] == extras
    assert '[${AUTODS_EXTRAS}]"' in text
    if dockerfile.endswith(".cpu"):
        assert "download.pytorch.org/whl/cpu" in args["TORCH_INDEX_URL"]
        assert "service" in args["AUTODS_EXTRAS"].split(",")  # the API and Flower

    users = [rest for word, rest in instructions if word == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}

    cmd = json.loads(next(rest for word, rest in reversed(instructions) if word == "CMD"))
    assert cmd[:2] == ["autods", "worker"]
    assert cmd[cmd.index("--queues") + 1] == queues
    if queues == "gpu":
        assert cmd[cmd.index("--concurrency") + 1] == "1"

    entrypoint = json.loads(next(rest for word, rest in instructions if word == "ENTRYPOINT"))
    assert entrypoint[-1] == "/usr/local/bin/autods-entrypoint"
    for word, rest in instructions:
        if word == "COPY" and "--from" not in rest:
            sources = [p for p in rest.split() if not p.startswith("--")][:-1]
            for source in sources:
                assert (ROOT / source).exists(), f"{dockerfile}: COPY source {source} missing"


def test_dockerignore_keeps_what_images_need() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for excluded in (".venv", ".git", "tests", "**/__pycache__", ".pytest_cache", ".ruff_cache"):
        assert excluded in patterns, excluded
    for needed in ("autods", "pyproject.toml", "workers", "workers/entrypoint.sh", "README.md"):
        assert needed not in patterns, needed


def test_entrypoint_execs_the_command() -> None:
    text = (ROOT / "workers" / "entrypoint.sh").read_text()
    assert text.startswith("#!/bin/sh")
    assert text.rstrip().endswith('exec "$@"')


def test_api_serves_with_a_token_and_minio_notifies_it(services: dict) -> None:
    api = services["api"]
    assert command_of(api)[:2] == ["autods", "serve"]
    assert env_of(api)["AUTODS_API_TOKEN"] == "${AUTODS_API_TOKEN:-autods-local-dev-token}"
    assert depends_on(api)["migrate"]["condition"] == "service_completed_successfully"
    minio = env_of(services["minio"])
    assert minio["MINIO_NOTIFY_WEBHOOK_ENABLE_AUTODS"] == "on"
    assert minio["MINIO_NOTIFY_WEBHOOK_ENDPOINT_AUTODS"].startswith("http://api:8000/events/s3")
    # MinIO authenticates to the API with the same token the API expects.
    assert minio["MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_AUTODS"] == env_of(api)["AUTODS_API_TOKEN"]
    script = "\n".join(command_of(services["minio-init"]))
    assert "mc event add --ignore-existing local/raw arn:minio:sqs::AUTODS:webhook" in script


def test_label_studio_is_pinned_persistent_and_local(services: dict) -> None:
    ls = services["label-studio"]
    assert ls["image"] == "heartexlabs/label-studio:1.23.2"
    assert ls["ports"] == ["127.0.0.1:${LABEL_STUDIO_PORT:-8080}:8080"]
    assert any(v.startswith("label-studio-data:") for v in ls["volumes"])
    env = env_of(ls)
    assert LOCAL_DEV_DEFAULT.match(env["LABEL_STUDIO_PASSWORD"])
    assert env["LABEL_STUDIO_LATEST_VERSION_CHECK"] == "false"
    assert "/health" in " ".join(ls["healthcheck"]["test"])
