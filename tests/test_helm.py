"""The Helm chart in deploy/helm/autods: lint, render, and schema-validate its objects.

helm-python-sdk (imported as ``helm_python``) is a declared test dependency: if it is
missing this module fails to import and the run fails; it is never skipped.

The chart refuses to render without an API token and Flower credentials, so "defaults"
below means the chart's values plus two existing Secrets naming them (``BASE``).
"""

from __future__ import annotations

import base64
import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import helm_python
import kubernetes_validate
import pytest
import yaml

from autods.pipeline.stagetable import queues
from autods.version import VERSION

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "autods"
RELEASE = "autods"
NAMESPACE = "autods"
# Oldest supported release (Chart.yaml kubeVersion allows >=1.25) and the newest bundled.
KUBE_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
# API groups of custom resources: kubernetes-validate bundles no schema for them, so the
# tests check their fields one by one instead.
CUSTOM_GROUPS = ("keda.sh/", "monitoring.coreos.com/")

QUEUES_BY_CLASS = {
    "ingest": "ingest",
    "cpu": "preprocess",
    "gpu": "gpu",
    "label": "label",
    "shard": "shard",
}
WORKER_NAMES = {f"{RELEASE}-worker-{c}" for c in QUEUES_BY_CLASS}
API_SECRET = "autods-api-token"
FLOWER_SECRET = "autods-flower-auth"
BASE = {
    "api": {"token": {"existingSecret": API_SECRET}},
    "flower": {"basicAuth": {"existingSecret": FLOWER_SECRET}},
}
PRIORITY_SEP = "\x06\x16"
HOOK = "helm.sh/hook"


def merged(base: dict, override: dict | None) -> dict:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render(values: dict | None = None, *, base: bool = True) -> list[dict]:
    """Every object the chart renders, in template order (over BASE unless base=False)."""
    values = merged(BASE, values) if base else values
    with helm_python.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    objects = []
    for path, text in sorted(manifests.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def workers(objects: list[dict]) -> dict[str, dict]:
    """The worker Deployments, by name."""
    return {
        name: d
        for name, d in by_kind(objects, "Deployment").items()
        if d["metadata"]["labels"]["app.kubernetes.io/component"].startswith("worker-")
    }


def hooks(objects: list[dict]) -> dict[tuple[str, str], dict]:
    return {
        (o["kind"], o["metadata"]["name"]): o
        for o in objects
        if HOOK in (o["metadata"].get("annotations") or {})
    }


def only_container(workload: dict) -> dict:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


worker_container = only_container


def arg_after(args: list[str], flag: str) -> str:
    assert flag in args, args
    return args[args.index(flag) + 1]


def env_var(container: dict, name: str) -> dict:
    matches = [v for v in container.get("env", []) if v["name"] == name]
    assert len(matches) == 1, (name, container.get("env"))
    return matches[0]


def triggers(scaled_object: dict) -> list[dict]:
    return [t for t in scaled_object["spec"]["triggers"] if t["type"] == "redis"]


def render_error(values: dict | None, *, base: bool = True) -> str:
    with pytest.raises(helm_python.HelmError) as info:
        render(values, base=base)
    return str(info.value)


@pytest.fixture(scope="module")
def defaults() -> dict:
    with helm_python.Chart.load(CHART) as chart:
        return chart.values


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    return render()


def test_chart_metadata() -> None:
    with helm_python.Chart.load(CHART) as chart:
        meta = chart.metadata
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "autods"
    assert meta.get("version") and meta.get("appVersion") == VERSION


def test_every_queue_of_the_stage_table_has_a_worker_class() -> None:
    assert set(QUEUES_BY_CLASS.values()) == set(queues())


def assert_lint_clean(values: dict | None, kube_version: str | None = None) -> None:
    report = helm_python.lint(CHART, values, strict=True, kube_version=kube_version)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems


@pytest.mark.parametrize("kube_version", ["v1.30.0", None])
def test_lint_has_no_errors_or_warnings(kube_version: str | None) -> None:
    assert_lint_clean(None, kube_version)
    assert_lint_clean(BASE, kube_version)


LINT_CASES = {
    "secret": {"secret": {"env": {"PGPASSWORD": "x", "AWS_SECRET_ACCESS_KEY": "y"}}},
    "chart-made-auth": {
        "api": {"token": {"value": "t0ken-t0ken-t0ken"}, "ingress": {"enabled": True}},
        "flower": {
            "basicAuth": {"value": "admin:pw"},
            "metrics": {"serviceMonitor": {"enabled": True}},
        },
    },
    "hpa": {"autoscaling": {"keda": {"enabled": False}}},
    "fixed": {"autoscaling": {"keda": {"enabled": False}, "hpa": {"enabled": False}}},
    "metrics": {
        "metrics": {"enabled": True, "serviceMonitor": {"labels": {"release": "kps"}}},
        "logs": {"json": True},
    },
    "redis-auth": {
        "broker": {"keyPrefix": "autods:"},
        "autoscaling": {
            "priorityKeys": True,
            "keda": {"redis": {"auth": {"existingSecret": "redis", "usernameKey": "user"}}},
        },
    },
}


@pytest.mark.parametrize("case", list(LINT_CASES))
def test_lint_with_values(case: str) -> None:
    assert_lint_clean(merged(BASE, LINT_CASES[case]), "v1.30.0")


# ---------------------------------------------------------------------------------------
# Workers


def test_one_deployment_per_queue_class(objects: list[dict], defaults: dict) -> None:
    deployments = workers(objects)
    assert set(deployments) == WORKER_NAMES
    for queue_class, queue in QUEUES_BY_CLASS.items():
        deployment = deployments[f"{RELEASE}-worker-{queue_class}"]
        container = worker_container(deployment)
        args = container["args"]
        assert args[:2] == ["autods", "worker"], args
        assert arg_after(args, "--queues") == queue
        assert int(arg_after(args, "--concurrency")) >= 1
        assert arg_after(args, "--hostname") == f"{queue_class}@%h"
        assert "command" not in container, "keep the image entrypoint (tini + DB wait)"
        pod = deployment["spec"]["template"]["spec"]
        expected_grace = defaults["workers"][queue_class]["terminationGracePeriodSeconds"]
        assert pod["terminationGracePeriodSeconds"] == expected_grace
        assert pod["terminationGracePeriodSeconds"] >= 120
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        image = container["image"]
        assert image.split(":")[0].endswith("gpu" if queue == "gpu" else "cpu"), image
        expected_device = "cuda" if queue == "gpu" else "cpu"
        assert {"name": "AUTODS_CLIP_DEVICE", "value": expected_device} in container["env"]


def test_grace_periods_cover_a_chunk(objects: list[dict], defaults: dict) -> None:
    assert defaults["workers"]["gpu"]["terminationGracePeriodSeconds"] == 1800
    pods = {n: d["spec"]["template"]["spec"] for n, d in workers(objects).items()}
    assert pods[f"{RELEASE}-worker-gpu"]["terminationGracePeriodSeconds"] == 1800
    for name, pod in pods.items():
        if not name.endswith("-gpu"):
            assert pod["terminationGracePeriodSeconds"] == 120, name

    values = {
        "workers": {"gpu": {"terminationGracePeriodSeconds": 3600}},
        "broker": {"visibilityTimeoutSeconds": 7200},
        "pipeline": {"stallTimeoutSeconds": 7200},
    }
    objects = render(values)
    gpu = workers(objects)[f"{RELEASE}-worker-gpu"]
    assert gpu["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 3600
    data = by_kind(objects, "ConfigMap")[f"{RELEASE}-config"]["data"]
    assert data["AUTODS_BROKER_VISIBILITY_TIMEOUT_S"] == "7200"


def test_visibility_timeout_outlasts_every_grace_period(defaults: dict) -> None:
    """A chunk still running when the visibility timeout ends would be delivered twice."""
    timeout = defaults["broker"]["visibilityTimeoutSeconds"]
    data = by_kind(render(), "ConfigMap")[f"{RELEASE}-config"]["data"]
    assert data["AUTODS_BROKER_VISIBILITY_TIMEOUT_S"] == str(timeout)
    for queue_class, class_values in defaults["workers"].items():
        assert class_values["terminationGracePeriodSeconds"] < timeout, queue_class
    message = render_error({"workers": {"gpu": {"terminationGracePeriodSeconds": timeout}}})
    assert "workers.gpu.terminationGracePeriodSeconds" in message
    assert "broker.visibilityTimeoutSeconds" in message


def test_stall_watchdog_settings_reach_the_workers(defaults: dict) -> None:
    data = by_kind(render(), "ConfigMap")[f"{RELEASE}-config"]["data"]
    assert data["AUTODS_PIPELINE_STALL_TIMEOUT_S"] == "3600"
    assert data["AUTODS_PIPELINE_STALL_CHECK_INTERVAL_S"] == "60"
    off = by_kind(render({"pipeline": {"stallTimeoutSeconds": 0}}), "ConfigMap")
    assert off[f"{RELEASE}-config"]["data"]["AUTODS_PIPELINE_STALL_TIMEOUT_S"] == "0"
    message = render_error({"pipeline": {"stallTimeoutSeconds": 600}})
    assert "workers.gpu.terminationGracePeriodSeconds (1800)" in message
    assert "pipeline.stallTimeoutSeconds (600)" in message


def test_worker_probes_ping_their_own_node(objects: list[dict]) -> None:
    for name, deployment in workers(objects).items():
        queue_class = name.removeprefix(f"{RELEASE}-worker-")
        container = worker_container(deployment)
        for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = container[probe_name]
            command = probe["exec"]["command"]
            # A shell expands $HOSTNAME (exec probes get no $(VAR) expansion).
            assert command[:2] == ["sh", "-c"], command
            assert re.fullmatch(
                rf"exec celery -A autods\.tasks\.app:app inspect ping "
                rf"-d {re.escape(queue_class)}@\$HOSTNAME --timeout 10",
                command[2],
            ), command
            # The node name the probe pings is the one the worker runs under.
            assert arg_after(container["args"], "--hostname") == f"{queue_class}@%h"
            # Through the broker, in a fresh Python process: generous timings.
            assert probe["timeoutSeconds"] >= 30, (name, probe_name)
            assert probe["periodSeconds"] >= 15, (name, probe_name)
        assert container["livenessProbe"]["periodSeconds"] >= 60


def test_worker_probes_can_be_turned_off() -> None:
    for deployment in workers(render({"workerProbes": {"enabled": False}})).values():
        container = worker_container(deployment)
        assert not {"startupProbe", "livenessProbe", "readinessProbe"} & set(container)


def test_queues_cover_the_pipeline(objects: list[dict]) -> None:
    queues = set()
    for deployment in workers(objects).values():
        queues |= set(arg_after(worker_container(deployment)["args"], "--queues").split(","))
    assert queues == set(QUEUES_BY_CLASS.values())


def test_gpu_deployment_schedules_on_gpus(objects: list[dict], defaults: dict) -> None:
    gpu_values = defaults["workers"]["gpu"]
    assert gpu_values["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert gpu_values["nodeSelector"] and gpu_values["tolerations"]

    pod = workers(objects)[f"{RELEASE}-worker-gpu"]["spec"]["template"]["spec"]
    limits = worker_container({"spec": {"template": {"spec": pod}}})["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == gpu_values["resources"]["limits"]["nvidia.com/gpu"]
    assert pod["nodeSelector"] == gpu_values["nodeSelector"]
    assert pod["tolerations"] == gpu_values["tolerations"]

    for name, deployment in by_kind(objects, "Deployment").items():
        if name.endswith("-gpu"):
            continue
        cpu_pod = deployment["spec"]["template"]["spec"]
        limits = only_container(deployment).get("resources", {}).get("limits", {})
        assert "nvidia.com/gpu" not in limits, name
        assert "tolerations" not in cpu_pod, name


def test_gpu_scheduling_follows_values() -> None:
    values = {
        "workers": {
            "gpu": {
                "replicas": 3,
                "autoscaling": {"enabled": False},
                "resources": {"limits": {"nvidia.com/gpu": 2}},
                "nodeSelector": {"gpu-type": "h100"},
                "tolerations": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}],
            }
        }
    }
    deployment = workers(render(values))[f"{RELEASE}-worker-gpu"]
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 3
    assert worker_container(deployment)["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert pod["nodeSelector"] == {"gpu-type": "h100", "nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == values["workers"]["gpu"]["tolerations"]


def test_disabled_class_and_fixed_replicas() -> None:
    values = {
        "workers": {
            "gpu": {"enabled": False},
            "ingest": {"replicas": 4, "autoscaling": {"enabled": False}},
        }
    }
    objects = render(values)
    deployments = workers(objects)
    assert f"{RELEASE}-worker-gpu" not in deployments
    assert len(deployments) == 4
    assert deployments[f"{RELEASE}-worker-ingest"]["spec"]["replicas"] == 4
    scaled = set(by_kind(objects, "ScaledObject"))
    assert scaled == deployments.keys() - {f"{RELEASE}-worker-ingest"}
    for name in scaled:
        assert "replicas" not in deployments[name]["spec"], name


def test_replicas_only_without_any_autoscaler() -> None:
    values = {
        "autoscaling": {"keda": {"enabled": False}, "hpa": {"enabled": False}},
        "workers": {"cpu": {"replicas": 0}, "shard": {"replicas": 2}},
    }
    objects = render(values)
    assert by_kind(objects, "ScaledObject") == {}
    assert by_kind(objects, "HorizontalPodAutoscaler") == {}
    replicas = {n: d["spec"]["replicas"] for n, d in workers(objects).items()}
    assert replicas == {
        f"{RELEASE}-worker-ingest": 1,
        f"{RELEASE}-worker-cpu": 0,
        f"{RELEASE}-worker-gpu": 1,
        f"{RELEASE}-worker-label": 1,
        f"{RELEASE}-worker-shard": 2,
    }


def test_worker_class_names_must_be_dns_labels() -> None:
    message = render_error({"workers": {"Big_GPU": {"enabled": True, "queues": ["gpu"]}}})
    assert "workers.Big_GPU" in message and "DNS label" in message


# ---------------------------------------------------------------------------------------
# Settings and credentials


def test_configmap_carries_autods_settings(objects: list[dict], defaults: dict) -> None:
    (configmap,) = [
        c
        for c in by_kind(objects, "ConfigMap").values()
        if HOOK not in (c["metadata"].get("annotations") or {})
    ]
    data = configmap["data"]
    assert data["AUTODS_DATABASE_URL"] == defaults["database"]["url"]
    assert data["AUTODS_BROKER_URL"] == defaults["broker"]["url"]
    assert data["AUTODS_BROKER_RESULT_BACKEND"] == defaults["broker"]["resultBackend"]
    assert data["AUTODS_BROKER_KEY_PREFIX"] == defaults["broker"]["keyPrefix"] == ""
    assert data["AUTODS_STORAGE_URL"] == defaults["storage"]["url"]
    assert data["AUTODS_CLIP_MODEL"] == defaults["clip"]["model"]
    assert all(key.startswith("AUTODS_") for key in data)
    assert all(isinstance(value, str) for value in data.values())
    netloc = data["AUTODS_DATABASE_URL"].split("//", 1)[1].split("/", 1)[0]
    assert ":" not in netloc.rpartition("@")[0], "the ConfigMap must not carry a password"

    # Workers, API and Flower read it first.
    deployments = by_kind(objects, "Deployment")
    assert {f"{RELEASE}-api", f"{RELEASE}-flower"} | WORKER_NAMES == set(deployments)
    for deployment in deployments.values():
        env_from = only_container(deployment)["envFrom"]
        assert env_from[0] == {"configMapRef": {"name": configmap["metadata"]["name"]}}


def test_configmap_follows_values() -> None:
    values = {
        "broker": {"url": "redis://redis.example:6379/0", "keyPrefix": "autods:"},
        "storage": {"endpointUrl": "http://minio.example:9000"},
        "extraEnv": {"AUTODS_PIPELINE_CHUNK_SIZE": 128},
    }
    configmap = by_kind(render(values), "ConfigMap")[f"{RELEASE}-config"]
    data = configmap["data"]
    assert data["AUTODS_BROKER_URL"] == "redis://redis.example:6379/0"
    assert data["AUTODS_BROKER_KEY_PREFIX"] == "autods:"
    assert data["AUTODS_STORAGE_ENDPOINT_URL"] == "http://minio.example:9000"
    assert data["AUTODS_PIPELINE_CHUNK_SIZE"] == "128"


@pytest.mark.parametrize("where", ["extraEnv", "secret"])
def test_key_prefix_only_through_broker_values(where: str) -> None:
    """Set anywhere else, the workers' prefix and the KEDA lists could differ."""
    values = (
        {"extraEnv": {"AUTODS_BROKER_KEY_PREFIX": "x:"}}
        if where == "extraEnv"
        else {"secret": {"env": {"AUTODS_BROKER_KEY_PREFIX": "x:"}}}
    )
    assert "broker.keyPrefix" in render_error(values)


def test_no_default_secret(objects: list[dict]) -> None:
    assert by_kind(objects, "Secret") == {}
    for deployment in workers(objects).values():
        container = worker_container(deployment)
        assert all("secretRef" not in source for source in container["envFrom"])
        assert all("valueFrom" not in var for var in container.get("env", []))


def test_secret_is_created_only_from_values() -> None:
    values = {"secret": {"env": {"PGPASSWORD": "pw", "AWS_SECRET_ACCESS_KEY": "sk"}}}
    objects = render(values)
    secret = by_kind(objects, "Secret")[f"{RELEASE}-secret"]
    assert HOOK not in (secret["metadata"].get("annotations") or {})
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {"PGPASSWORD": "pw", "AWS_SECRET_ACCESS_KEY": "sk"}
    for deployment in by_kind(objects, "Deployment").values():
        env_from = only_container(deployment)["envFrom"]
        # After the ConfigMap, so a key in the Secret overrides the same key there.
        assert env_from[-1] == {"secretRef": {"name": secret["metadata"]["name"]}}


def test_secret_values_must_not_be_empty() -> None:
    with pytest.raises(helm_python.HelmError, match="must not be empty"):
        render({"secret": {"env": {"PGPASSWORD": ""}}})


def test_existing_secret_is_referenced_not_created() -> None:
    objects = render({"secret": {"existingSecret": "autods-credentials"}})
    assert by_kind(objects, "Secret") == {}
    for deployment in by_kind(objects, "Deployment").values():
        env_from = only_container(deployment)["envFrom"]
        assert env_from[-1] == {"secretRef": {"name": "autods-credentials"}}
    job = by_kind(objects, "Job")[f"{RELEASE}-migrate"]
    assert only_container(job)["envFrom"][-1] == {"secretRef": {"name": "autods-credentials"}}


def test_pods_run_unprivileged(objects: list[dict]) -> None:
    workloads = {**by_kind(objects, "Deployment"), **by_kind(objects, "Job")}
    assert len(workloads) == len(WORKER_NAMES) + 3
    for name, workload in workloads.items():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        container = only_container(workload)
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        if container["securityContext"].get("readOnlyRootFilesystem"):
            assert {"/tmp", "/home/autods"} <= mounts, name


# ---------------------------------------------------------------------------------------
# API


def test_api_deployment_and_service(objects: list[dict], defaults: dict) -> None:
    deployment = by_kind(objects, "Deployment")[f"{RELEASE}-api"]
    container = only_container(deployment)
    assert container["args"] == ["autods", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert "command" not in container, "keep the image entrypoint (tini + DB wait)"
    assert container["image"].split(":")[0] == defaults["image"]["cpu"]["repository"]
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    token = env_var(container, "AUTODS_API_TOKEN")
    assert token == {
        "name": "AUTODS_API_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": API_SECRET, "key": "token"}},
    }
    assert deployment["spec"]["replicas"] == 1

    service = by_kind(objects, "Service")[f"{RELEASE}-api"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "api"
    assert by_kind(objects, "Ingress") == {}


def test_api_token_from_a_chart_made_secret() -> None:
    objects = render({"api": {"token": {"existingSecret": "", "value": "s3cret-t0ken"}}})
    secret = by_kind(objects, "Secret")[f"{RELEASE}-api"]
    assert base64.b64decode(secret["data"]["token"]).decode() == "s3cret-t0ken"
    assert "autods.io/insecure-local-dev" not in (secret["metadata"].get("annotations") or {})
    container = only_container(by_kind(objects, "Deployment")[f"{RELEASE}-api"])
    ref = env_var(container, "AUTODS_API_TOKEN")["valueFrom"]["secretKeyRef"]
    assert ref == {"name": f"{RELEASE}-api", "key": "token"}
    # Only the API gets the token.
    for name, deployment in by_kind(objects, "Deployment").items():
        if name != f"{RELEASE}-api":
            assert "AUTODS_API_TOKEN" not in str(deployment), name


def test_api_existing_secret_key_is_configurable() -> None:
    values = {"api": {"token": {"existingSecret": "shared", "key": "autods-token"}}}
    container = only_container(by_kind(render(values), "Deployment")[f"{RELEASE}-api"])
    ref = env_var(container, "AUTODS_API_TOKEN")["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "shared", "key": "autods-token"}


def test_render_fails_without_api_token() -> None:
    message = render_error({"api": {"token": {"existingSecret": ""}}})
    assert "no API token is configured" in message
    assert "api.token.existingSecret" in message and "api.insecureLocalDev" in message


def test_api_insecure_local_dev_is_explicit_and_marked() -> None:
    values = {"api": {"token": {"existingSecret": ""}, "insecureLocalDev": True}}
    objects = render(values)
    secret = by_kind(objects, "Secret")[f"{RELEASE}-api"]
    assert secret["metadata"]["annotations"]["autods.io/insecure-local-dev"] == "true"
    assert base64.b64decode(secret["data"]["token"]).decode() == "autods-local-dev-token"
    # A token source given anyway wins over the development default.
    values["api"]["token"]["existingSecret"] = API_SECRET
    assert f"{RELEASE}-api" not in by_kind(render(values), "Secret")
    with helm_python.Chart.load(CHART) as chart:
        notes = chart.render(
            merged(BASE, {"api": {"insecureLocalDev": True, "token": {"existingSecret": ""}}}),
            name=RELEASE,
            namespace=NAMESPACE,
        )[f"{RELEASE}/templates/NOTES.txt"]
    assert "WARNING: api.insecureLocalDev" in notes


def test_api_can_be_disabled() -> None:
    objects = render({"api": {"enabled": False, "token": {"existingSecret": ""}}})
    assert f"{RELEASE}-api" not in by_kind(objects, "Deployment")
    assert f"{RELEASE}-api" not in by_kind(objects, "Service")


def test_api_ingress_is_optional() -> None:
    values = {
        "api": {
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "hosts": [{"host": "autods.local", "paths": [{"path": "/", "pathType": "Prefix"}]}],
                "tls": [{"secretName": "autods-tls", "hosts": ["autods.local"]}],
            }
        }
    }
    ingress = by_kind(render(values), "Ingress")[f"{RELEASE}-api"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "autods.local"
    (path,) = rule["http"]["paths"]
    assert path["backend"] == {"service": {"name": f"{RELEASE}-api", "port": {"name": "http"}}}
    assert ingress["spec"]["tls"] == values["api"]["ingress"]["tls"]


# ---------------------------------------------------------------------------------------
# Flower


def test_flower_deployment_and_service(objects: list[dict], defaults: dict) -> None:
    deployment = by_kind(objects, "Deployment")[f"{RELEASE}-flower"]
    container = only_container(deployment)
    assert container["image"].split(":")[0] == defaults["image"]["cpu"]["repository"]
    args = container["args"]
    assert args[:4] == ["celery", "-A", "autods.tasks.app:app", "flower"]
    assert "--port=5555" in args
    assert "--basic-auth=$(FLOWER_BASIC_AUTH)" in args
    auth = env_var(container, "FLOWER_BASIC_AUTH")
    assert auth["valueFrom"] == {"secretKeyRef": {"name": FLOWER_SECRET, "key": "basic-auth"}}
    # The variable that opens Flower's API without credentials is never set.
    assert "FLOWER_UNAUTHENTICATED_API" not in {v["name"] for v in container["env"]}
    for config in by_kind(objects, "ConfigMap").values():
        assert "FLOWER_UNAUTHENTICATED_API" not in config["data"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthcheck", "port": "http"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthcheck"
    assert deployment["spec"]["replicas"] == 1

    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "5555"
    assert annotations["prometheus.io/path"] == "/metrics"

    service = by_kind(objects, "Service")[f"{RELEASE}-flower"]
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 5555, "targetPort": "http", "protocol": "TCP"}
    ]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "flower"
    assert by_kind(objects, "ServiceMonitor") == {}


def test_flower_basic_auth_from_a_chart_made_secret() -> None:
    values = {"flower": {"basicAuth": {"existingSecret": "", "value": "ops:pw1,viewer:pw2"}}}
    objects = render(values)
    secret = by_kind(objects, "Secret")[f"{RELEASE}-flower"]
    assert base64.b64decode(secret["data"]["basic-auth"]).decode() == "ops:pw1,viewer:pw2"
    container = only_container(by_kind(objects, "Deployment")[f"{RELEASE}-flower"])
    ref = env_var(container, "FLOWER_BASIC_AUTH")["valueFrom"]["secretKeyRef"]
    assert ref == {"name": f"{RELEASE}-flower", "key": "basic-auth"}


def test_flower_basic_auth_must_be_user_password() -> None:
    message = render_error({"flower": {"basicAuth": {"existingSecret": "", "value": "nocolon"}}})
    assert "user:password" in message


def test_render_fails_without_flower_auth() -> None:
    message = render_error({"flower": {"basicAuth": {"existingSecret": ""}}})
    assert "no basic auth is configured" in message
    assert "flower.basicAuth.existingSecret" in message and "flower.insecureLocalDev" in message


def test_render_fails_with_no_values_at_all() -> None:
    message = render_error(None, base=False)
    assert "no API token is configured" in message or "no basic auth is configured" in message


def test_flower_insecure_local_dev() -> None:
    values = {"flower": {"basicAuth": {"existingSecret": ""}, "insecureLocalDev": True}}
    secret = by_kind(render(values), "Secret")[f"{RELEASE}-flower"]
    assert secret["metadata"]["annotations"]["autods.io/insecure-local-dev"] == "true"
    assert base64.b64decode(secret["data"]["basic-auth"]).decode() == "admin:autods-local-dev"


def test_flower_service_monitor_is_optional() -> None:
    values = {
        "flower": {
            "metrics": {
                "scrapeAnnotations": False,
                "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}},
            }
        }
    }
    objects = render(values)
    monitor = by_kind(objects, "ServiceMonitor")[f"{RELEASE}-flower"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kps"
    service = by_kind(objects, "Service")[f"{RELEASE}-flower"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    # Only the Flower Service matches.
    api = by_kind(objects, "Service")[f"{RELEASE}-api"]
    assert (
        not monitor["spec"]["selector"]["matchLabels"].items() <= api["metadata"]["labels"].items()
    )
    flower = by_kind(objects, "Deployment")[f"{RELEASE}-flower"]
    assert "prometheus.io/scrape" not in flower["spec"]["template"]["metadata"]["annotations"]


# ---------------------------------------------------------------------------------------
# Migrations


def test_migration_job_is_a_pre_install_and_pre_upgrade_hook(objects: list[dict]) -> None:
    job = by_kind(objects, "Job")[f"{RELEASE}-migrate"]
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"
    container = only_container(job)
    assert container["args"] == ["autods", "db", "upgrade"]
    assert "command" not in container, "keep the image entrypoint (tini + DB wait)"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"

    # Hooks run before the release's objects exist: everything the Job needs is a hook
    # that runs first (lower weight).
    hook_objects = hooks(objects)
    weight = int(annotations["helm.sh/hook-weight"])
    config_name = container["envFrom"][0]["configMapRef"]["name"]
    config = hook_objects[("ConfigMap", config_name)]
    assert int(config["metadata"]["annotations"]["helm.sh/hook-weight"]) < weight
    release_config = by_kind(objects, "ConfigMap")[f"{RELEASE}-config"]
    assert config["data"] == release_config["data"]
    account = hook_objects[("ServiceAccount", pod["serviceAccountName"])]
    assert int(account["metadata"]["annotations"]["helm.sh/hook-weight"]) < weight
    for obj in (config, account):
        assert obj["metadata"]["annotations"][HOOK] == "pre-install,pre-upgrade"


def test_migration_job_gets_a_hook_copy_of_the_chart_secret() -> None:
    objects = render({"secret": {"env": {"PGPASSWORD": "pw"}}})
    job = by_kind(objects, "Job")[f"{RELEASE}-migrate"]
    container = only_container(job)
    secret_name = container["envFrom"][-1]["secretRef"]["name"]
    secret = hooks(objects)[("Secret", secret_name)]
    assert base64.b64decode(secret["data"]["PGPASSWORD"]).decode() == "pw"
    assert "hook-succeeded" in secret["metadata"]["annotations"]["helm.sh/hook-delete-policy"]


def test_migration_job_uses_an_existing_service_account() -> None:
    values = {"serviceAccount": {"create": False, "name": "autods-runner"}}
    objects = render(values)
    job = by_kind(objects, "Job")[f"{RELEASE}-migrate"]
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "autods-runner"
    assert by_kind(objects, "ServiceAccount") == {}


def test_migrations_can_be_disabled() -> None:
    objects = render({"migrations": {"enabled": False}})
    assert by_kind(objects, "Job") == {}
    assert hooks(objects) == {}


# ---------------------------------------------------------------------------------------
# Autoscaling


def test_keda_scaled_object_per_class(objects: list[dict], defaults: dict) -> None:
    scaled = by_kind(objects, "ScaledObject")
    deployments = workers(objects)
    assert set(scaled) == set(deployments) == WORKER_NAMES
    behavior = defaults["autoscaling"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] > 0
    for queue_class, queue in QUEUES_BY_CLASS.items():
        name = f"{RELEASE}-worker-{queue_class}"
        obj = scaled[name]
        class_values = defaults["workers"][queue_class]["autoscaling"]
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        spec = obj["spec"]
        assert spec["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert spec["scaleTargetRef"]["name"] in deployments
        assert spec["minReplicaCount"] == class_values["minReplicas"]
        assert spec["maxReplicaCount"] == class_values["maxReplicas"]
        assert spec["cooldownPeriod"] == defaults["autoscaling"]["keda"]["cooldownPeriod"]
        assert spec["pollingInterval"] == defaults["autoscaling"]["keda"]["pollingInterval"]
        hpa_config = spec["advanced"]["horizontalPodAutoscalerConfig"]
        assert hpa_config["behavior"] == behavior
        (trigger,) = spec["triggers"]
        assert trigger == {
            "type": "redis",
            "metadata": {
                "address": "redis:6379",
                "listName": queue,
                "listLength": str(class_values["listLength"]),
                "activationListLength": "0",
                "databaseIndex": "0",
                "enableTLS": "false",
            },
        }
        # KEDA reads trigger metadata as strings.
        assert all(isinstance(v, str) for v in trigger["metadata"].values())
        # The Deployment leaves its replica count to KEDA.
        assert "replicas" not in deployments[name]["spec"]
    assert scaled[f"{RELEASE}-worker-gpu"]["spec"]["minReplicaCount"] == 0
    for name, obj in scaled.items():
        if not name.endswith("-gpu"):
            assert obj["spec"]["minReplicaCount"] == 1, name
    assert by_kind(objects, "HorizontalPodAutoscaler") == {}
    assert by_kind(objects, "TriggerAuthentication") == {}


def test_keda_one_trigger_per_queue_of_a_class() -> None:
    values = {"workers": {"cpu": {"queues": ["preprocess", "label"]}}}
    obj = by_kind(render(values), "ScaledObject")[f"{RELEASE}-worker-cpu"]
    assert [t["metadata"]["listName"] for t in triggers(obj)] == ["preprocess", "label"]


def test_keda_list_names_carry_the_key_prefix() -> None:
    objects = render({"broker": {"keyPrefix": "team-a:autods:"}})
    data = by_kind(objects, "ConfigMap")[f"{RELEASE}-config"]["data"]
    assert data["AUTODS_BROKER_KEY_PREFIX"] == "team-a:autods:"
    for name, obj in by_kind(objects, "ScaledObject").items():
        queue = QUEUES_BY_CLASS[name.removeprefix(f"{RELEASE}-worker-")]
        (trigger,) = triggers(obj)
        assert trigger["metadata"]["listName"] == data["AUTODS_BROKER_KEY_PREFIX"] + queue


@pytest.mark.parametrize(
    ("broker_url", "redis_values", "address", "db", "tls"),
    [
        ("redis://redis:6379/0", {}, "redis:6379", "0", "false"),
        ("redis://redis-master.data.svc:6380/3", {}, "redis-master.data.svc:6380", "3", "false"),
        ("redis://:pw@redis/5", {}, "redis:6379", "5", "false"),
        ("rediss://redis.example:6379", {}, "redis.example:6379", "0", "true"),
        (
            "redis://redis:6379/0",
            {"address": "other:7000", "databaseIndex": 2, "enableTLS": True},
            "other:7000",
            "2",
            "true",
        ),
    ],
)
def test_keda_redis_address_and_database_index(
    broker_url: str, redis_values: dict, address: str, db: str, tls: str
) -> None:
    values = {"broker": {"url": broker_url}, "autoscaling": {"keda": {"redis": redis_values}}}
    for obj in by_kind(render(values), "ScaledObject").values():
        (trigger,) = triggers(obj)
        meta = trigger["metadata"]
        assert (meta["address"], meta["databaseIndex"], meta["enableTLS"]) == (address, db, tls)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"broker": {"url": "sentinel://s:26379"}}, "autoscaling.keda.redis.address is required"),
        ({"broker": {"url": "redis://redis:6379/x"}}, "autoscaling.keda.redis.databaseIndex"),
        ({"autoscaling": {"keda": {"redis": {"address": "redis"}}}}, "must be host:port"),
        ({"autoscaling": {"keda": {"redis": {"databaseIndex": -1}}}}, "non-negative integer"),
        ({"workers": {"gpu": {"autoscaling": {"maxReplicas": 0}}}}, "maxReplicas"),
    ],
)
def test_keda_redis_values_are_checked(values: dict, message: str) -> None:
    assert message in render_error(values)


def test_keda_trigger_authentication_for_redis_auth() -> None:
    values = {
        "autoscaling": {
            "keda": {
                "redis": {
                    "auth": {
                        "existingSecret": "redis-auth",
                        "passwordKey": "redis-password",
                        "usernameKey": "redis-user",
                    }
                }
            }
        }
    }
    objects = render(values)
    auth = by_kind(objects, "TriggerAuthentication")[f"{RELEASE}-redis"]
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "redis-auth", "key": "redis-password"},
        {"parameter": "username", "name": "redis-auth", "key": "redis-user"},
    ]
    for obj in by_kind(objects, "ScaledObject").values():
        for trigger in triggers(obj):
            assert trigger["authenticationRef"] == {"name": f"{RELEASE}-redis"}


def test_keda_priority_lists_are_optional() -> None:
    values = {"broker": {"keyPrefix": "p:"}, "autoscaling": {"priorityKeys": True}}
    obj = by_kind(render(values), "ScaledObject")[f"{RELEASE}-worker-gpu"]
    names = [t["metadata"]["listName"] for t in triggers(obj)]
    assert names == ["p:gpu"] + [f"p:gpu{PRIORITY_SEP}{n}" for n in (3, 6, 9)]


def test_keda_extra_triggers_are_appended() -> None:
    extra = {
        "type": "prometheus",
        "metadata": {
            "serverAddress": "http://prometheus:9090",
            "query": 'sum(flower_worker_number_of_currently_executing_tasks{worker=~"gpu@.*"})',
            "threshold": "1",
        },
    }
    values = {"workers": {"gpu": {"autoscaling": {"extraTriggers": [extra]}}}}
    obj = by_kind(render(values), "ScaledObject")[f"{RELEASE}-worker-gpu"]
    assert obj["spec"]["triggers"][-1] == extra
    assert len(triggers(obj)) == 1


def test_keda_disabled_gives_cpu_hpas() -> None:
    objects = render({"autoscaling": {"keda": {"enabled": False}}})
    assert by_kind(objects, "ScaledObject") == {}
    assert by_kind(objects, "TriggerAuthentication") == {}
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    deployments = workers(objects)
    assert set(hpas) == set(deployments) == WORKER_NAMES
    with helm_python.Chart.load(CHART) as chart:
        defaults = chart.values
    for name, hpa in hpas.items():
        class_values = defaults["workers"][name.removeprefix(f"{RELEASE}-worker-")]
        assert hpa["apiVersion"] == "autoscaling/v2"
        spec = hpa["spec"]
        assert spec["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        # An HPA cannot go below one replica.
        assert spec["minReplicas"] == max(1, class_values["autoscaling"]["minReplicas"])
        assert spec["maxReplicas"] == class_values["autoscaling"]["maxReplicas"]
        (metric,) = spec["metrics"]
        assert metric == {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70},
            },
        }
        assert spec["behavior"] == defaults["autoscaling"]["behavior"]
        assert "replicas" not in deployments[name]["spec"]


def test_hpa_needs_a_cpu_request() -> None:
    values = {
        "autoscaling": {"keda": {"enabled": False}},
        "workers": {"label": {"resources": {"requests": {"cpu": None}}}},
    }
    assert "workers.label.resources.requests.cpu" in render_error(values)


def readme_values() -> dict:
    """The my-values.yaml of the chart README's kind/k3d walk-through."""
    text = (CHART / "README.md").read_text()
    blocks = re.findall(r"^( *)```yaml\n(.*?)^\1```", text, flags=re.S | re.M)
    found = []
    for indent, body in blocks:
        doc = yaml.safe_load("\n".join(line[len(indent) :] for line in body.splitlines()))
        if isinstance(doc, dict) and "image" in doc and "workers" in doc:
            found.append(doc)
    (values,) = found
    return values


def test_readme_kind_values_render_without_gpus() -> None:
    values = readme_values()
    objects = render(values, base=False)
    gpu = workers(objects)[f"{RELEASE}-worker-gpu"]
    pod = gpu["spec"]["template"]["spec"]
    container = worker_container(gpu)
    assert container["image"] == "autods-worker-cpu:dev"
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert not pod.get("nodeSelector") and not pod.get("tolerations")
    assert {"name": "AUTODS_CLIP_DEVICE", "value": "cpu"} in container["env"]
    scaled = by_kind(objects, "ScaledObject")
    (trigger,) = triggers(scaled[f"{RELEASE}-worker-gpu"])
    assert trigger["metadata"]["address"] == "redis-master:6379"
    assert scaled[f"{RELEASE}-worker-gpu"]["spec"]["maxReplicaCount"] == 2
    for obj in objects:
        if not is_custom(obj):
            kubernetes_validate.validate(obj, KUBE_VERSIONS[0], strict=True)


# ---------------------------------------------------------------------------------------
# autods' own metrics: worker ports, monitors, alerts, the dashboard, JSON logs

METRICS = {"metrics": {"enabled": True}}
RULES = CHART / "files" / "autods-rules.yaml"
DASHBOARD = CHART / "files" / "autods-dashboard.json"


def test_metrics_are_off_by_default(objects: list[dict]) -> None:
    assert {o["kind"] for o in objects} & {"ServiceMonitor", "PrometheusRule"} == set()
    assert f"{RELEASE}-worker-metrics" not in by_kind(objects, "Service")
    assert f"{RELEASE}-dashboard" not in by_kind(objects, "ConfigMap")
    data = by_kind(objects, "ConfigMap")[f"{RELEASE}-config"]["data"]
    assert "AUTODS_METRICS_DIR" not in data and data["AUTODS_LOG_JSON"] == "0"
    for deployment in workers(objects).values():
        assert "ports" not in worker_container(deployment)


def test_every_worker_serves_metrics_to_a_monitor(defaults: dict) -> None:
    objects = render(METRICS)
    port = defaults["metrics"]["port"]
    data = by_kind(objects, "ConfigMap")[f"{RELEASE}-config"]["data"]
    # On the /tmp emptyDir: the root filesystem is read-only, and each pod has its own.
    assert data["AUTODS_METRICS_DIR"].startswith("/tmp/")
    assert data["AUTODS_METRICS_PORT"] == str(port)
    service = by_kind(objects, "Service")[f"{RELEASE}-worker-metrics"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}]
    selected = {name for name, d in by_kind(objects, "Deployment").items()
                if service["spec"]["selector"].items()
                <= d["spec"]["template"]["metadata"]["labels"].items()}
    assert selected == WORKER_NAMES
    for deployment in workers(objects).values():
        assert worker_container(deployment)["ports"] == [
            {"name": "metrics", "containerPort": port, "protocol": "TCP"}]

    monitor = by_kind(objects, "ServiceMonitor")[f"{RELEASE}-worker-metrics"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["spec"]["podTargetLabels"] == ["app.kubernetes.io/component"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    for other in ("api", "flower"):
        labels = by_kind(objects, "Service")[f"{RELEASE}-{other}"]["metadata"]["labels"]
        assert not monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_api_monitor_scrapes_with_the_api_token() -> None:
    objects = render(merged(METRICS, {"metrics": {"serviceMonitor": {"labels": {
        "release": "kps"}}}}))
    monitor = by_kind(objects, "ServiceMonitor")[f"{RELEASE}-api"]
    api = by_kind(objects, "Service")[f"{RELEASE}-api"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= api["metadata"]["labels"].items()
    assert monitor["metadata"]["labels"]["release"] == "kps"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    assert endpoint["authorization"] == {
        "type": "Bearer", "credentials": {"name": API_SECRET, "key": "token"}}
    without_api = render(merged(METRICS, {"api": {"enabled": False}}))
    assert set(by_kind(without_api, "ServiceMonitor")) == {f"{RELEASE}-worker-metrics"}


def test_the_prometheus_rule_holds_the_plain_rules_file() -> None:
    (rule,) = by_kind(render(METRICS), "PrometheusRule").values()
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"AutodsQueueBacklogGrowing", "AutodsRejectRateHigh", "AutodsTasksFailing",
            "AutodsJobStalled", "AutodsLabelConfidenceLow", "AutodsStorageErrors"} <= alerts


def test_the_dashboard_configmap_holds_the_grafana_dashboard() -> None:
    configmap = by_kind(render(METRICS), "ConfigMap")[f"{RELEASE}-dashboard"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["autods.json"]) == json.loads(DASHBOARD.read_text())


def test_monitoring_objects_can_be_turned_off_one_by_one() -> None:
    off = {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False},
           "grafanaDashboard": {"enabled": False}}
    objects = render({"metrics": {"enabled": True, **off}})
    assert {o["kind"] for o in objects} & {"ServiceMonitor", "PrometheusRule"} == set()
    assert f"{RELEASE}-dashboard" not in by_kind(objects, "ConfigMap")
    assert f"{RELEASE}-worker-metrics" in by_kind(objects, "Service")  # still scrapable


def test_json_logs_reach_every_process() -> None:
    data = by_kind(render({"logs": {"json": True}}), "ConfigMap")[f"{RELEASE}-config"]["data"]
    assert data["AUTODS_LOG_JSON"] == "1"


# ---------------------------------------------------------------------------------------
# Schema validation of every rendered object


VALIDATION_CASES = {
    "defaults": None,
    "secret": {
        "secret": {"env": {"PGPASSWORD": "pw"}},
        "storage": {"endpointUrl": "http://minio:9000"},
        "extraEnv": {"AUTODS_PIPELINE_CHUNK_SIZE": "128"},
        "imagePullSecrets": [{"name": "registry"}],
        "podAnnotations": {"example.com/team": "data"},
    },
    "existing-secret-no-sa": {
        "secret": {"existingSecret": "autods-credentials"},
        "serviceAccount": {"create": False},
        "scratch": {"tmpSizeLimit": "", "homeSizeLimit": ""},
        "workers": {"gpu": {"strategy": {}}, "cpu": {"replicas": 0}},
    },
    "chart-made-auth-ingress-monitor": {
        "api": {
            "token": {"existingSecret": "", "value": "t0ken"},
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "tls": [{"secretName": "t", "hosts": ["autods.example.com"]}],
            },
        },
        "flower": {
            "basicAuth": {"existingSecret": "", "value": "a:b"},
            "metrics": {"serviceMonitor": {"enabled": True}},
            "extraArgs": ["--url_prefix=flower"],
        },
        "broker": {"keyPrefix": "autods:"},
        "autoscaling": {
            "priorityKeys": True,
            "keda": {"redis": {"auth": {"existingSecret": "redis"}}},
        },
    },
    "insecure-local-dev": {
        "api": {"token": {"existingSecret": ""}, "insecureLocalDev": True},
        "flower": {"basicAuth": {"existingSecret": ""}, "insecureLocalDev": True},
    },
    "hpa-fallback": {"autoscaling": {"keda": {"enabled": False}}},
    "metrics": {"metrics": {"enabled": True}, "logs": {"json": True}},
    "fixed-replicas-no-probes": {
        "autoscaling": {"keda": {"enabled": False}, "hpa": {"enabled": False}},
        "workerProbes": {"enabled": False},
        "api": {"enabled": False},
        "flower": {"enabled": False},
        "migrations": {"enabled": False},
    },
}


def is_custom(obj: dict) -> bool:
    return obj["apiVersion"].startswith(CUSTOM_GROUPS)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("case", list(VALIDATION_CASES))
def test_rendered_objects_validate_strictly(case: str, kube_version: str) -> None:
    objects = render(VALIDATION_CASES[case])
    core = [obj for obj in objects if not is_custom(obj)]
    assert core
    for obj in core:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{where} invalid for {kube_version} at {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{where}: {exc.message}")
    # Custom resources (no bundled schema) are only the expected kinds, checked above.
    custom = {(o["apiVersion"], o["kind"]) for o in objects if is_custom(o)}
    assert custom <= {
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("keda.sh/v1alpha1", "TriggerAuthentication"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
    }
    for obj in objects:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", obj["metadata"]["name"])
        assert len(obj["metadata"]["name"]) <= 63


def test_kubernetes_validate_cli_on_rendered_files(tmp_path: Path) -> None:
    """The same check through the `kubernetes-validate --strict` command line."""
    files = []
    for i, obj in enumerate(render()):
        if is_custom(obj):
            continue
        target = tmp_path / f"{i:03d}-{obj['kind']}-{obj['metadata']['name']}.yaml"
        target.write_text(yaml.safe_dump(obj))
        files.append(str(target))
    assert len(files) > len(WORKER_NAMES)
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", KUBE_VERSIONS[0], *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARN" not in result.stdout and "ERROR" not in result.stdout, result.stdout
