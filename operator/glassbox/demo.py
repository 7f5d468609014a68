"""`make demo`: train a model on scikit-learn's breast cancer data, serve and explain it locally.

It writes the model (TorchScript), the training data (CSV) and an
ExplainedModel manifest, starts local mode (the same servers and arguments as
in a cluster), asks for a prediction and for explanations by five methods over
HTTP, prints them, and writes a PNG per method. Then the outlier detector
judges an ordinary and an unusual patient, and only the unusual one is
explained, as the graph's predictAndExplainIfOutlier route does.
"""

from __future__ import annotations

import base64
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from glassbox.contract.api import (
    AnchorTabularParameters,
    CounterfactualParameters,
    DetectorSpec,
    DriftSpec,
    DynamicBatching,
    ExplainedModelSpec,
    ExplainerSpec,
    GraphSpec,
    IntegratedGradientsParameters,
    KernelShapParameters,
    MethodSpec,
    MethodType,
    PredictorSpec,
    Protocol,
    ReferenceData,
    Route,
    TrainingDataInfluenceParameters,
    explained_model,
)
from glassbox.contract.wire import FLAGGED_FIELD, RECORDS_PATH
from glassbox.explainers.predictor.examples import tabular_classifier
from glassbox.local import LocalDeployment

METHODS = [
    MethodSpec(name="anchors", type=MethodType.AnchorTabular, anchor_tabular=AnchorTabularParameters(threshold=0.95, seed=0)),
    MethodSpec(
        name="shap", type=MethodType.KernelShap, kernel_shap=KernelShapParameters(nsamples=500, background_size=50, seed=0)
    ),
    MethodSpec(name="counterfactual", type=MethodType.Counterfactual, counterfactual=CounterfactualParameters(seed=0)),
    MethodSpec(
        name="ig", type=MethodType.IntegratedGradients, integrated_gradients=IntegratedGradientsParameters(baseline="mean")
    ),
    MethodSpec(
        name="influence", type=MethodType.TrainingDataInfluence, training_data_influence=TrainingDataInfluenceParameters(top_k=3)
    ),
]


def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The demo's data: training and held-out patients (a fixed split), and the measurements' names."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names]
    X_train, X_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.2, random_state=0, stratify=data.target
    )
    return X_train, X_test, y_train, y_test, names


def prepare(out: Path) -> tuple[Path, np.ndarray, list[str]]:
    """The model, data and manifest; returns the manifest and a few held-out rows."""
    import pandas as pd

    X_train, X_test, y_train, y_test, names = _split()
    tabular_classifier(X_train, y_train, out / "model")
    frame = pd.DataFrame(X_train, columns=names)
    frame["malignant_or_benign"] = y_train
    frame.to_csv(out / "train.csv", index=False)
    spec = ExplainedModelSpec(
        predictor=PredictorSpec(
            model_format="pytorch",
            storage_uri="model",
            protocol=Protocol.v2,
            batching=DynamicBatching(max_batch_size=1024, max_latency_ms=0),
        ),
        explainer=ExplainerSpec(
            reference_data=ReferenceData(uri="train.csv", target_column="malignant_or_benign"),
            methods=METHODS,
            timeout_seconds=120,
        ),
        # Fitted on the explainer's reference data: at most 1% of patients like those are flagged. Drift: the
        # predictor's last 100 patients against the reference data, a window like it called drifted 1 time in 100.
        detector=DetectorSpec(
            false_positive_rate=0.01, drift=DriftSpec(false_alarm_rate=0.01, window_rows=100, min_rows=100, test_every_rows=100)
        ),
        graph=GraphSpec(routes=list(Route)),
    )
    manifest = explained_model("breast-cancer", spec)
    path = out / "explainedmodel.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    # Three held-out patients, both diagnoses among them.
    rows = np.concatenate([X_test[y_test == 0][:2], X_test[y_test == 1][:1]])
    return path, rows, names


def _print_explanation(method: str, answer: dict[str, Any], seconds: float) -> None:
    print(f"\n{method} ({answer['meta']['name']}, {seconds:.1f} s):")
    for line in answer["summary"]:
        print(f"  {line}")


def run_demo(out: Path) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"1. training a PyTorch classifier on scikit-learn's breast cancer data (569 rows, 30 features) -> {out}/model/model.pt"
    )
    manifest, rows, names = prepare(out)
    print(
        f"2. glassbox up {manifest}: the predictor, the explainer (fitting 5 methods), the outlier detector and the "
        "drift monitor start on loopback"
    )
    records = out / "records.sqlite"  # a fresh store each run: step 6 shows the first answer served again
    for stale in out.glob("records.sqlite*"):
        stale.unlink()
    with LocalDeployment(manifest, log_dir=out / "logs", records_path=records) as deployment:
        urls = deployment.urls()
        print(f"   predict: {urls['predict']}\n   explain: {urls['explain']}\n   detect:  {urls['detect']}")
        client = httpx.Client(timeout=300)
        body = {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": rows.reshape(-1).tolist()}]}
        prediction = client.post(urls["predict"], json=body).raise_for_status().json()
        probabilities = np.asarray(prediction["outputs"][0]["data"]).reshape(prediction["outputs"][0]["shape"])
        print(
            "\n3. prediction (v2 Open Inference Protocol), P(benign) for three held-out patients:",
            ", ".join(f"{p:.3f}" for p in probabilities[:, 1]),
        )
        print("\n4. explanations of the first patient, each through the explainer's HTTP endpoint:")
        pictures = out / "pictures"
        pictures.mkdir(exist_ok=True)
        for name in (method.effective_name for method in METHODS):
            began = time.monotonic()
            response = client.post(urls["explain"], json={"instances": rows[:1].tolist(), "method": name, "picture": True})
            if response.status_code != 200:
                print(f"\n{name}: {response.status_code} {response.text[:300]}")
                return 1
            answer = response.json()
            _print_explanation(name, answer, time.monotonic() - began)
            png = pictures / f"{name}.png"
            png.write_bytes(base64.b64decode(answer["picture"]["base64"]))
            print(f"  picture: {png}")
        if _outliers(client, deployment, rows, names, pictures) != 0:
            return 1
        if _records(client, deployment, rows) != 0:
            return 1
        if _drift(client, deployment, pictures) != 0:
            return 1
    print(f"\ndone in {time.monotonic() - started:.0f} s; the servers are stopped. To run them yourself: glassbox up {manifest}")
    return 0


def unusual_patient(row: np.ndarray, names: list[str]) -> np.ndarray:
    """The same patient with a data-entry slip: worst_area with two zeros too many (100 times the value, beyond any
    patient in the data, while every other measurement stays ordinary)."""
    changed = row.copy()
    changed[names.index("worst_area")] *= 100
    return changed


def _outliers(client: httpx.Client, deployment: LocalDeployment, rows: np.ndarray, names: list[str], pictures: Path) -> int:
    """Step 5: what predictAndExplainIfOutlier does, call by call: judge both patients, narrow the request to the
    flagged one at the detector's gate, explain only that."""
    ordinary, unusual = rows[0], unusual_patient(rows[0], names)
    both = [ordinary.tolist(), unusual.tolist()]
    print("\n5. the outlier detector: an ordinary patient, and the same patient with worst_area entered 100 times too large")
    response = client.post(deployment.urls()["detect"], json={"instances": both, "picture": True})
    if response.status_code != 200:
        print(f"detect: {response.status_code} {response.text[:300]}")
        return 1
    answer = response.json()
    for who, verdict in zip(("ordinary", "unusual"), answer["predictions"], strict=True):
        print(
            f"  {who}: score {verdict['score']:.3g} against threshold {verdict['threshold']:.3g} "
            f"(above {verdict['reference_quantile']:.0%} of held-out reference patients): {'OUTLIER' if verdict['is_outlier'] else 'ordinary'}"
        )
    png = pictures / "outliers.png"
    png.write_bytes(base64.b64decode(answer["picture"]["base64"]))
    print(f"  picture: {png}")
    gate = f"{deployment.detector_base}/glassbox/v1/models/{deployment.name}-detector/flagged"
    narrowed = client.post(gate, json={"instances": both, "method": "anchors"}).raise_for_status().json()
    if not narrowed[FLAGGED_FIELD]:
        print(f"  {narrowed['summary']}")
        return 0
    began = time.monotonic()
    explained = client.post(deployment.urls()["explain"], json=narrowed)
    if explained.status_code != 200:
        print(f"explain: {explained.status_code} {explained.text[:300]}")
        return 1
    print(f"  explained only instance {narrowed['flagged']} (the gate passed on {len(narrowed['instances'])} of 2):")
    _print_explanation("anchors", explained.json(), time.monotonic() - began)
    return 0


# A new scanner that reads every texture measurement this much higher: the same patients, drifted inputs.
TEXTURE_DRIFT = 1.2


def _drift(client: httpx.Client, deployment: LocalDeployment, pictures: Path) -> int:
    """Step 7: the predictor's traffic as a whole. Held-out patients fill a window that looks like the reference
    data; then the same patients measured by a scanner reading texture 20% higher fill one that drifted."""
    _, held_out, _, _, names = _split()
    urls = deployment.urls()
    texture = [names.index(n) for n in ("mean_texture", "texture_error", "worst_texture")]
    print("\n7. drift: the predictor's last 100 patients against the reference data (false-alarm rate 1%)")
    for label, patients in (
        ("held-out patients as they are", held_out[3:100]),
        (f"the same patients, texture read {TEXTURE_DRIFT - 1:.0%} higher", held_out[:100] * _scaled(30, texture)),
    ):
        tested = client.get(urls["drift"]).raise_for_status().json().get("inputs", 0) + len(patients)
        for start in range(0, len(patients), 10):  # prediction requests of 10 patients, as any client sends them
            batch = patients[start : start + 10]
            body = {
                "inputs": [
                    {"name": "input-0", "shape": list(batch.shape), "datatype": "FP64", "data": batch.reshape(-1).tolist()}
                ]
            }
            client.post(urls["predict"], json=body).raise_for_status()
        deadline = time.monotonic() + 60
        while (report := client.get(urls["drift"], params={"picture": "true"}).json()).get("testedInputs") != tested:
            if time.monotonic() > deadline:
                print(f"  the drift monitor did not test the window: {report}")
                return 1
            time.sleep(0.2)
        moved = ", ".join(f"{f['name']} (KS {f['distance']:.2f})" for f in report["features"][:3])
        verdict = "DRIFTED" if report["drifted"] else "no drift"
        print(f"  {label}: {verdict}, p = {report['pValue']:.2g}; most moved: {moved}")
    png = pictures / "drift.png"
    png.write_bytes(base64.b64decode(report["picture"]["base64"]))
    print(f"  picture: {png}")
    return 0


def _scaled(width: int, columns: list[int]) -> np.ndarray:
    factors = np.ones(width)
    factors[columns] = TEXTURE_DRIFT
    return factors


def _records(client: httpx.Client, deployment: LocalDeployment, rows: np.ndarray) -> int:
    """Step 6: the first patient's anchors asked again (served from its record), that record as an auditor
    reads it, and the three patients' KernelSHAP asked as a job (202, then polled until done)."""
    print("\n6. explanation records: the same question again, its record, and a job")
    explain = deployment.urls()["explain"]
    began = time.monotonic()
    again = client.post(explain, json={"instances": rows[:1].tolist(), "method": "anchors", "picture": True})
    if again.status_code != 200:
        print(f"explain: {again.status_code} {again.text[:300]}")
        return 1
    record = again.json()["record"]
    print(
        f"  anchors of the first patient again: {'served from its record' if record['reused'] else 'computed'} "
        f"in {(time.monotonic() - began) * 1000:.0f} ms (glassbox-record: {again.headers.get('glassbox-record')})"
    )
    kept = client.get(f"{deployment.explainer_base}{RECORDS_PATH.format(model=deployment.model_name)}/{record['id']}").json()
    print(
        f"  its record: {kept['method']} ({kept['settings']['type']}), outcome {kept['outcome']}, computed in "
        f"{kept['seconds']:.1f} s with {kept['predictorCalls']} predictor calls, input sha256 {kept['inputDigest'][:12]}..."
    )
    began = time.monotonic()
    accepted = client.post(explain, json={"instances": rows.tolist(), "method": "shap", "async": True})
    if accepted.status_code != 202:
        print(f"explain as a job: {accepted.status_code} {accepted.text[:300]}")
        return 1
    location = accepted.headers["location"]
    print(f"  KernelSHAP of all three patients as a job: {accepted.status_code} Accepted, location {location}")
    while (job := client.get(deployment.explainer_base + location).json())["state"] in ("queued", "running"):
        time.sleep(0.2)
    if job["state"] != "done":
        print(f"  job {job['state']}: {job.get('reason')}")
        return 1
    print(f"  job done in {time.monotonic() - began:.1f} s (attempt {job['attempts']}):")
    for line in job["explanation"]["summary"]:
        print(f"    {line}")
    return 0
