"""Offline checks of the Milvus overlay (``k8s/milvus``): schemas, and what each pod sees.

No kustomize binary runs here, so the overlay's strategic-merge patches are applied the way
kustomize merges these kinds: map keys (ConfigMap ``data``, Secret ``stringData``) replace or
add, and a container's ``env`` merges by name.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # the wheel ships no py.typed
import pytest
import yaml

from convmem.settings import Settings
from tests.test_k8s_manifests import K8S_DIR, KUBERNETES_VERSION, _one

OVERLAY = K8S_DIR / "milvus"
Resource = dict[str, Any]


def _doc(name: str) -> Resource:
    doc = yaml.safe_load((OVERLAY / name).read_text(encoding="utf-8"))
    assert isinstance(doc, dict), name
    return doc


def _kustomization() -> Resource:
    return _doc("kustomization.yaml")


def test_the_overlay_lists_what_exists() -> None:
    k = _kustomization()
    assert "../" in k["resources"]
    files = [r for r in k["resources"] if r != "../"] + [p["path"] for p in k["patches"]]
    assert sorted(files) == sorted(
        p.name for p in OVERLAY.glob("*.yaml") if p.name != "kustomization.yaml"
    )


@pytest.mark.parametrize("name", ["index-worker.yaml"])
def test_new_resources_validate_strictly(name: str) -> None:
    kubernetes_validate.validate(_doc(name), KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    "name", ["configmap-patch.yaml", "secret-patch.yaml", "deployment-patch.yaml"]
)
def test_patched_resources_validate_strictly(name: str) -> None:
    patched = _patched(_doc(name)["kind"])
    kubernetes_validate.validate(patched, KUBERNETES_VERSION, strict=True)


def _patched(kind: str) -> Resource:
    base = _one(kind)
    patch = next(
        _doc(p["path"]) for p in _kustomization()["patches"] if _doc(p["path"])["kind"] == kind
    )
    assert patch["metadata"]["name"] == base["metadata"]["name"], "a patch must name its target"
    out: Resource = copy.deepcopy(base)
    if kind in {"ConfigMap", "Secret"}:
        field = "data" if kind == "ConfigMap" else "stringData"
        out[field] = {**out[field], **patch[field]}
        return out
    [container] = out["spec"]["template"]["spec"]["containers"]
    [change] = patch["spec"]["template"]["spec"]["containers"]
    assert change["name"] == container["name"]
    env = {e["name"]: e for e in container["env"]}
    env.update({e["name"]: e for e in change.get("env", [])})
    container["env"] = list(env.values())
    if "resources" in change:
        container["resources"] = change["resources"]
    return out


def _environment(container: Resource) -> dict[str, str]:
    config = _patched("ConfigMap")["data"]
    secret = _patched("Secret")["stringData"]
    env: dict[str, str] = dict(config)
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "convmem-secrets"
            env[var["name"]] = secret[ref["key"]]
    return {k: v for k, v in env.items() if k.startswith("CONVMEM_")}


def _settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("CONVMEM_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_query_pods_read_milvus_and_hold_no_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    [container] = _patched("Deployment")["spec"]["template"]["spec"]["containers"]
    s = _settings(_environment(container), monkeypatch)
    assert s.index.tier == "milvus" and s.index.feed is False
    assert s.milvus.uri is not None and s.milvus.uri.startswith("http")
    assert s.milvus.token is not None and s.milvus.partition_key is True
    assert s.milvus.dense_index == "HNSW"


def test_one_index_worker_feeds_milvus(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = _doc("index-worker.yaml")
    assert worker["spec"]["replicas"] == 1
    assert worker["spec"]["strategy"]["type"] == "Recreate"  # never two writers in a rollout
    labels = worker["spec"]["template"]["metadata"]["labels"]
    assert worker["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = _one("Service")  # the worker is not behind the query Service
    assert not service["spec"]["selector"].items() <= labels.items()
    [container] = worker["spec"]["template"]["spec"]["containers"]
    assert {e["configMapRef"]["name"] for e in container["envFrom"]} == {"convmem-config"}
    s = _settings(_environment(container), monkeypatch)
    assert s.index.tier == "milvus" and s.index.feed is True
    assert s.postgres.url is not None and s.milvus.token is not None
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(s.data_dir) in mounts and "/tmp" in mounts  # the root filesystem is read-only
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_overlay_is_documented() -> None:
    readme = (K8S_DIR / "README.md").read_text(encoding="utf-8")
    assert "k8s/milvus" in readme and "CONVMEM_INDEX__FEED" in readme


def test_overlay_paths_are_relative() -> None:
    for r in _kustomization()["resources"]:
        assert not Path(r).is_absolute()
