"""The KServe CRD stand-ins (generated from the kserve SDK's models, used where `../shared/kserve-crds` is
absent) behave as KServe's CRDs do on a real API server: a misspelt field is pruned, and every child the
operator builds is stored as built. They are installed under a group of their own, beside whichever KServe
CRDs this cluster has, and every write is a server-side dry run against both.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from glassbox_testing import localcluster
from glassbox_testing.cluster import REPO, Cluster
from glassbox_testing.kserve_stand_in_crds import stand_in_crds

STAND_IN_GROUP = "stand-in.serving.kserve.io"
GOLDEN = sorted((REPO / "operator" / "tests" / "golden").glob("*.children.yaml"))


@pytest.fixture(scope="module")
def stand_ins(cluster: Cluster) -> Iterator[str]:
    documents = stand_in_crds(STAND_IN_GROUP)
    for document in documents:
        cluster.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=glassbox-e2e",
            "-f",
            "-",
            input=yaml.safe_dump(document),
        )
    localcluster.wait_established([d["metadata"]["name"] for d in documents], cluster.kubeconfig)
    try:
        yield STAND_IN_GROUP
    finally:
        for document in documents:
            cluster.kubectl("delete", "crd", document["metadata"]["name"], "--wait=false", check=False)


def dry_run_create(cluster: Cluster, body: dict[str, Any], group: str, namespace: str) -> dict[str, Any]:
    """What the API server would store (defaulted, pruned), without storing it."""
    version = body["apiVersion"].split("/")[1]
    plural = body["kind"].lower() + "s"
    body = {**copy.deepcopy(body), "apiVersion": f"{group}/{version}"}
    # No owner: the ExplainedModel CRD need not be installed for this.
    body["metadata"] = {**{k: v for k, v in body["metadata"].items() if k != "ownerReferences"}, "namespace": namespace}
    stored: dict[str, Any] = cluster.objects.create_namespaced_custom_object(
        group, version, namespace, plural, body, dry_run="All"
    )
    return stored


def test_a_misspelt_field_is_pruned_as_kserves_crds_prune_it(cluster: Cluster, stand_ins: str, namespace: str) -> None:
    body = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "misspelt"},
        "spec": {
            "predictor": {
                "minReplica": 1,
                "minReplicas": 2,  # the first is misspelt
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://bucket/model", "storageURI": "gs://typo"},
                "containers": [{"name": "kserve-container", "image": "example/image:1", "imag": "typo"}],
            }
        },
    }
    for group in (stand_ins, "serving.kserve.io"):
        predictor = dry_run_create(cluster, body, group, namespace)["spec"]["predictor"]
        assert "minReplica" not in predictor and predictor["minReplicas"] == 2, (group, predictor)
        assert predictor["model"] == {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://bucket/model"}, (group, predictor)
        assert predictor["containers"] == [{"name": "kserve-container", "image": "example/image:1"}], (group, predictor)


def test_a_wrong_type_is_refused(cluster: Cluster, stand_ins: str, namespace: str) -> None:
    body = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "wrong-type"},
        "spec": {"nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceUrl": "http://x", "weight": "heavy"}]}}},
    }
    with pytest.raises(client.ApiException) as refused:
        dry_run_create(cluster, body, stand_ins, namespace)
    assert refused.value.status == 422 and "weight" in str(refused.value.body)


@pytest.mark.parametrize("golden", GOLDEN, ids=[p.name.split(".")[0] for p in GOLDEN])
def test_every_child_the_operator_builds_is_stored_as_built(
    cluster: Cluster, stand_ins: str, namespace: str, golden: Path
) -> None:
    """Against the stand-ins and against this cluster's KServe CRDs (the real ones where ../shared has them)."""
    for child in yaml.safe_load_all(golden.read_text()):
        for group in (stand_ins, "serving.kserve.io"):
            stored = dry_run_create(cluster, child, group, namespace)
            assert stored["spec"] == child["spec"], (
                f"{group}: {child['kind']} {child['metadata']['name']} was changed on the way in"
            )
