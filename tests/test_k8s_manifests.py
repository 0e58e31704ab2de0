"""Offline validation of the Kubernetes manifests in ``k8s/``.

Every resource is checked against the OpenAPI-derived JSON schemas that ship inside the
``kubernetes-validate`` wheel, in strict mode (unknown fields are errors), for a pinned
Kubernetes version. No cluster and no network are needed. On top of the schemas, the tests
check the wiring between resources (probes, ports, selectors, config and secret names) and that
convmem's `Settings` accepts the environment a pod gets.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # the wheel ships no py.typed
import pytest
import yaml
from pydantic import BaseModel

from convmem.settings import Settings

K8S_DIR = Path(__file__).resolve().parent.parent / "k8s"
# The oldest minor version we support; the schemas for it ship in kubernetes-validate.
KUBERNETES_VERSION = "1.33.0"
KUSTOMIZATION = "kustomization.yaml"

Resource = dict[str, Any]


def _manifest_files() -> list[Path]:
    files = sorted([*K8S_DIR.glob("*.yaml"), *K8S_DIR.glob("*.yml")])
    return [f for f in files if f.name != KUSTOMIZATION]


def _load(path: Path) -> list[Resource]:
    with path.open(encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    for doc in docs:
        if not isinstance(doc, dict):
            raise TypeError(f"{path.name}: a document is not a mapping")
    return docs


def _all_resources() -> Iterator[Resource]:
    for path in _manifest_files():
        yield from _load(path)


def _one(kind: str) -> Resource:
    found = [r for r in _all_resources() if r["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _container() -> Resource:
    containers = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: Resource = containers[0]
    return container


def test_manifests_exist() -> None:
    kinds = {r["kind"] for r in _all_resources()}
    assert kinds == {
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Secret",
        "Service",
    }


@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: p.name)
def test_manifest_validates_strictly(path: Path) -> None:
    docs = _load(path)
    assert docs, f"{path.name} holds no resource"
    for doc in docs:
        # Raises kubernetes_validate.ValidationError on any schema violation.
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_validation_rejects_unknown_fields() -> None:
    """Guards against a validator that silently accepts everything."""
    service = dict(_one("Service"))
    service["spec"] = {**service["spec"], "prot": 8080}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S_DIR / KUSTOMIZATION).read_text(encoding="utf-8"))
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(p.name for p in _manifest_files())


def test_deployment_probes_and_port() -> None:
    container = _container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "grpc": 50051}

    def probe_target(probe: str) -> tuple[str, int]:
        get = container[probe]["httpGet"]
        port = get["port"]
        return get["path"], ports[port] if isinstance(port, str) else port

    assert probe_target("readinessProbe") == ("/readyz/serving", 8080)
    assert probe_target("livenessProbe") == ("/healthz", 8080)


def test_deployment_shape() -> None:
    deployment = _one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _container()
    assert deployment["spec"]["replicas"] == 3
    assert container["image"] == "convmem:0.1.0"
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "4Gi"}
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"] for v in pod["volumes"]}
    assert "/var/lib/convmem" in mounts
    assert set(mounts.values()) <= volumes


def test_deployment_config_and_secrets_are_wired() -> None:
    container = _container()
    configmap = _one("ConfigMap")
    secret = _one("Secret")
    assert [s["configMapRef"]["name"] for s in container["envFrom"]] == [
        configmap["metadata"]["name"]
    ]
    assert configmap["metadata"]["name"] == "convmem-config"
    assert all(key.startswith("CONVMEM_") for key in configmap["data"])
    assert all(isinstance(value, str) for value in configmap["data"].values())

    from_secret = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert from_secret["CONVMEM_POSTGRES__URL"] == {
        "name": "convmem-secrets",
        "key": "database-url",
    }
    assert from_secret["CONVMEM_API_KEYS"]["name"] == "convmem-secrets"
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    assert secret["metadata"]["name"] == "convmem-secrets"
    assert {ref["key"] for ref in from_secret.values()} <= secret_keys


def test_selectors_match_pod_labels() -> None:
    deployment = _one("Deployment")
    pod_labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]

    def selects_pods(selector: dict[str, str]) -> bool:
        return selector.items() <= pod_labels.items()

    assert selects_pods(deployment["spec"]["selector"]["matchLabels"])
    assert selects_pods(_one("Service")["spec"]["selector"])
    assert selects_pods(_one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    assert selects_pods(_one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"])


def test_service_and_network_policy_expose_http_and_grpc() -> None:
    service_ports = _one("Service")["spec"]["ports"]
    assert [(p["port"], p["targetPort"]) for p in service_ports] == [
        (8080, "http"),
        (50051, "grpc"),
    ]
    assert service_ports[1]["appProtocol"] == "grpc"
    rules = _one("NetworkPolicy")["spec"]["ingress"]
    allowed = {(p["protocol"], p["port"]) for rule in rules for p in rule["ports"]}
    assert allowed == {("TCP", 8080), ("TCP", 50051)}
    config = _one("ConfigMap")["data"]
    assert config["CONVMEM_GRPC__PORT"] == "50051"


def test_hpa_targets_deployment_on_cpu() -> None:
    hpa = _one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": _one("Deployment")["metadata"]["name"],
    }
    assert hpa["spec"]["minReplicas"] >= 3
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}


def _pod_environment() -> dict[str, str]:
    """The CONVMEM_ variables a pod sees: ConfigMap, plain env, and the example Secret."""
    container = _container()
    secret = _one("Secret")["stringData"]
    env: dict[str, str] = dict(_one("ConfigMap")["data"])
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            env[var["name"]] = secret[var["valueFrom"]["secretKeyRef"]["key"]]
    return {k: v for k, v in env.items() if k.startswith("CONVMEM_")}


def test_environment_names_are_settings_fields() -> None:
    """Nested sections ignore unknown keys, so a typo would otherwise pass silently."""
    for name in _pod_environment():
        *sections, leaf = name.removeprefix("CONVMEM_").lower().split("__")
        model: type[BaseModel] = Settings
        for section in sections:
            assert section in model.model_fields, f"{name}: no settings section {section!r}"
            annotation = model.model_fields[section].annotation
            assert isinstance(annotation, type) and issubclass(annotation, BaseModel), name
            model = annotation
        assert leaf in model.model_fields, f"{name}: no setting {leaf!r} in {model.__name__}"


def test_settings_accept_the_pod_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CONVMEM_"):
            monkeypatch.delenv(name)
    for name, value in _pod_environment().items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    container = _container()
    assert settings.host == "0.0.0.0"
    assert settings.port == container["ports"][0]["containerPort"]
    assert str(settings.data_dir) in {m["mountPath"] for m in container["volumeMounts"]}
    assert settings.demo_data is False
    assert settings.postgres.url is not None
    assert settings.key_map()
