"""`make bench`: the same explanations, in process and over HTTP, side by side.

    python bench/run.py [--quick] [--out bench/results]

(a) alibi in process, calling the model directly: the floor.
(b) Glassbox: the explainer server calling the predictor server over loopback HTTP
    (local mode: the same servers and arguments as in a cluster).
(c) MLServer's alibi-explain runtime calling an MLServer model over v2
    (bench/mlserver_runner.py installs MLServer into bench/.venv-mlserver on
    first use; if that fails, the output says why and reports (a) and (b)).

Predictor calls and rows for (b) and (c) are counted on the predictor's side
(its /metrics), not from alibi's `num_preds`. Writes latest.md, latest.json and
latest.png to the output folder. Speed goals live here, never in tests.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import torch
import yaml

from glassbox.contract.api import (
    AnchorTabularParameters,
    AnchorTextParameters,
    DynamicBatching,
    ExplainedModelSpec,
    ExplainerSpec,
    KernelShapParameters,
    MethodSpec,
    MethodType,
    PredictorSpec,
    Protocol,
    ReferenceData,
    explained_model,
)
from glassbox.explainers.predictor.examples import tabular_classifier, text_classifier
from glassbox.local import LocalDeployment
from glassbox_testing.dataplane import text_data
from glassbox_testing.measure import in_process_predictor, peak_rss_mb, predictor_counters

HERE = Path(__file__).resolve().parent


SEED = 0


# --------------------------------------------------------------------------- models and servers


def prepare(folder: Path) -> dict[str, Any]:
    """Wine (13 features, 3 classes) and a bag-of-words sentiment model, with manifests."""
    from sklearn.datasets import load_wine

    data = load_wine()
    names = [n.replace("/", "_") for n in data.feature_names]
    X, y = data.data, data.target
    tabular_classifier(X, y, folder / "tabular" / "model", epochs=300)
    frame = pd.DataFrame(X, columns=names)
    frame["class"] = y
    frame.to_csv(folder / "tabular" / "train.csv", index=False)
    batching = DynamicBatching(max_batch_size=4096, max_latency_ms=0)
    tabular_spec = ExplainedModelSpec(
        predictor=PredictorSpec(model_format="pytorch", storage_uri="model", protocol=Protocol.v2, batching=batching),
        explainer=ExplainerSpec(
            reference_data=ReferenceData(uri="train.csv", target_column="class"),
            timeout_seconds=300,
            methods=[
                MethodSpec(name="anchors", type=MethodType.AnchorTabular, anchor_tabular=AnchorTabularParameters(seed=SEED)),
                MethodSpec(
                    name="shap", type=MethodType.KernelShap, kernel_shap=KernelShapParameters(background_size=50, seed=SEED)
                ),
            ],
        ),
    )
    tabular_manifest = explained_model("wine", tabular_spec)
    (folder / "tabular" / "wine.yaml").write_text(yaml.safe_dump(tabular_manifest, sort_keys=False))
    texts, labels = text_data(rows=300, seed=SEED)
    text_classifier(texts, labels, folder / "text" / "model")
    text_spec = ExplainedModelSpec(
        predictor=PredictorSpec(model_format="pytorch", storage_uri="model", protocol=Protocol.v1, batching=batching),
        explainer=ExplainerSpec(
            methods=[MethodSpec(name="anchors", type=MethodType.AnchorText, anchor_text=AnchorTextParameters(seed=SEED))]
        ),
    )
    text_manifest = explained_model("sentiment", text_spec)
    (folder / "text" / "sentiment.yaml").write_text(yaml.safe_dump(text_manifest, sort_keys=False))
    rng = np.random.default_rng(SEED)
    return {
        "X": X,
        "names": names,
        "tabular_rows": X[rng.choice(len(X), 5, replace=False)],
        "texts": [t for t, label in zip(texts, labels, strict=True) if label == 1][:3]
        + [t for t, label in zip(texts, labels, strict=True) if label == 0][:2],
    }


def in_process_text_predictor(model_dir: Path) -> Any:
    from glassbox.explainers.data.torch_artifacts import Tokenizer

    tokenizer = Tokenizer.load(model_dir)
    assert tokenizer is not None
    tensor_predict, calls = in_process_predictor(model_dir / "model.pt")
    return (lambda texts: tensor_predict(tokenizer.encode(list(texts)))), calls


# --------------------------------------------------------------------------- measuring


def summarise(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "median_s": statistics.median(ordered),
        "p95_s": ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))],
        "runs": len(ordered),
    }


# The explain parameters of every runner: alibi's defaults but for these (Glassbox's methods have the same defaults).
EXPLAIN_PARAMETERS = {
    "AnchorTabular": ("anchors", "wine", {"threshold": 0.95}),
    "KernelShap": ("shap", "wine", {"silent": True}),
    "AnchorText": ("text-anchors", "sentiment", {"threshold": 0.95, "batch_size": 100, "sample_proba": 0.5}),
}


def run_in_process(method: str, bench: dict[str, Any], folder: Path, repeats: int) -> dict[str, Any]:
    from alibi.explainers import AnchorTabular, AnchorText, KernelShap

    parameters = EXPLAIN_PARAMETERS[method][2]
    if method == "AnchorText":
        import spacy

        predict, calls = in_process_text_predictor(folder / "text" / "model")
        explainer = AnchorText(predict, sampling_strategy="unknown", nlp=spacy.blank("en"), seed=SEED)
        inputs: list[Any] = bench["texts"]

        def explain_one(item: Any) -> Any:
            np.random.seed(SEED)
            return explainer.explain(item, **parameters)
    else:
        predict, calls = in_process_predictor(folder / "tabular" / "model" / "model.pt")
        inputs = list(bench["tabular_rows"])
        if method == "AnchorTabular":
            explainer = AnchorTabular(predict, feature_names=bench["names"], seed=SEED)
            explainer.fit(bench["X"], disc_perc=(25, 50, 75))

            def explain_one(item: Any) -> Any:
                np.random.seed(SEED)
                return explainer.explain(item, **parameters)
        else:
            explainer = KernelShap(predict, feature_names=bench["names"], seed=SEED)
            np.random.seed(SEED)
            explainer.fit(bench["X"], summarise_background=True, n_background_samples=50)

            def explain_one(item: Any) -> Any:
                np.random.seed(SEED)
                return explainer.explain(np.asarray(item)[None], **parameters)

    latencies, answers = [], []
    calls["calls"] = calls["rows"] = 0
    for _ in range(repeats):
        for item in inputs:
            began = time.perf_counter()
            answers.append(explain_one(item))
            latencies.append(time.perf_counter() - began)
    explanations = repeats * len(inputs)
    return {
        **summarise(latencies),
        "calls_per_explanation": calls["calls"] / explanations,
        "rows_per_explanation": calls["rows"] / explanations,
        "anchors": [list(a.anchor) for a in answers[: len(inputs)]] if method.startswith("Anchor") else None,
    }


def run_glassbox(
    method: str, deployment: LocalDeployment, model: str, inputs: list[Any], name: str, repeats: int
) -> dict[str, Any]:
    url = deployment.urls()["explain"]
    client = httpx.Client(timeout=600)
    before = predictor_counters(deployment, model)
    latencies, answers = [], []
    for _ in range(repeats):
        for item in inputs:
            began = time.perf_counter()
            response = client.post(
                url, json={"instances": [item if isinstance(item, str) else list(map(float, item))], "method": name}
            )
            latencies.append(time.perf_counter() - began)
            response.raise_for_status()
            answers.append(response.json())
    after = predictor_counters(deployment, model)
    explanations = repeats * len(inputs)
    return {
        **summarise(latencies),
        "calls_per_explanation": (after["requests"] - before["requests"]) / explanations,
        "rows_per_explanation": (after["rows"] - before["rows"]) / explanations,
        "anchors": [a["data"]["anchor"] for a in answers[: len(inputs)]] if method.startswith("Anchor") else None,
    }


def throughput(deployment: LocalDeployment, inputs: list[Any], name: str, clients: int, per_client: int) -> float:
    url = deployment.urls()["explain"]

    def client_loop(offset: int) -> None:
        with httpx.Client(timeout=600) as client:
            for index in range(per_client):
                item = inputs[(offset + index) % len(inputs)]
                client.post(url, json={"instances": [list(map(float, item))], "method": name}).raise_for_status()

    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(client_loop, range(clients)))
    return clients * per_client / (time.perf_counter() - began)


def predictor_standalone_rows_per_second(deployment: LocalDeployment, width: int) -> float:
    """The predictor's best: 4096-row binary v2 requests, one after another."""
    from glassbox.explainers.serving.payloads import v2_request

    content, headers = v2_request(np.random.default_rng(0).uniform(0, 1, size=(4096, width)), binary=True)
    client = httpx.Client(timeout=60)
    url = deployment.urls()["predict"]
    client.post(url, content=content, headers=headers).raise_for_status()
    began, total = time.perf_counter(), 0
    while time.perf_counter() - began < 3:
        client.post(url, content=content, headers=headers).raise_for_status()
        total += 4096
    return total / (time.perf_counter() - began)


# --------------------------------------------------------------------------- MLServer


def run_mlserver(method: str, deployment: Any, inputs: list[Any], repeats: int) -> dict[str, Any]:
    name, model, parameters = EXPLAIN_PARAMETERS[method]
    before = deployment.counters(model)
    latencies, answers = [], []
    for _ in range(repeats):
        for item in inputs:
            began = time.perf_counter()
            answers.append(deployment.explain(name, item, parameters))
            latencies.append(time.perf_counter() - began)
    after = deployment.counters(model)
    explanations = repeats * len(inputs)
    return {
        **summarise(latencies),
        "calls_per_explanation": (after["requests"] - before["requests"]) / explanations,
        "rows_per_explanation": (after["rows"] - before["rows"]) / explanations,
        "anchors": [a["data"]["anchor"] for a in answers[: len(inputs)]] if method.startswith("Anchor") else None,
    }


def measure_mlserver(results: dict[str, Any], bench: dict[str, Any], work: Path, venv: Path, repeats: int) -> None:
    from mlserver_runner import MLServerDeployment, ensure_environment

    problem = ensure_environment(venv, work / "mlserver-install.log")
    if problem is not None:
        results["mlserver"] = problem
        return
    try:
        with MLServerDeployment(venv, work) as mlserver:
            for method in results["latency"]:
                print(f"{method}: MLServer", flush=True)
                inputs = bench["texts"] if method == "AnchorText" else list(bench["tabular_rows"])
                results["latency"][method]["c_mlserver"] = run_mlserver(method, mlserver, inputs, repeats)
    except (RuntimeError, subprocess.CalledProcessError, httpx.HTTPError) as error:
        results["mlserver"] = f"not measured: {error}"
        return
    results["mlserver"] = "measured: MLServer 1.6.1, mlserver-alibi-explain 1.6.1, alibi 0.9.6, in bench/.venv-mlserver"


# --------------------------------------------------------------------------- report


def render(results: dict[str, Any]) -> str:
    lines = [
        f"# Glassbox benchmark ({results['when']})",
        "",
        f"Machine: {results['machine']}. Command: `{results['command']}`.",
        "",
        "| method | runner | median s | p95 s | predictor calls / explanation | rows / explanation | (b)/(a) median | (c)/(b) median |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for method, cells in results["latency"].items():
        floor, glassbox = cells["a_in_process"]["median_s"], cells["b_glassbox_http"]["median_s"]
        for runner, cell in cells.items():
            over_a = f"{cell['median_s'] / floor:.2f}" if runner == "b_glassbox_http" else ""
            over_b = f"{cell['median_s'] / glassbox:.2f}" if runner == "c_mlserver" else ""
            lines.append(
                f"| {method} | {runner} | {cell['median_s']:.3f} | {cell['p95_s']:.3f} | {cell['calls_per_explanation']:.1f} "
                f"| {cell['rows_per_explanation']:.0f} | {over_a} | {over_b} |"
            )
    same = ", ".join(f"{m} {'yes' if v['anchors_equal'] else 'NO'}" for m, v in results.get("same_answers", {}).items())
    lines += [
        "",
        f"Same anchors over HTTP as in process (fixed seed): {same}.",
        "",
        f"MLServer alibi-explain (c): {results['mlserver']}",
        "",
        "| concurrent clients | explanations / s (AnchorTabular, one explainer process) |",
        "| ---: | ---: |",
    ]
    for clients, rate in results["throughput"].items():
        lines.append(f"| {clients} | {rate:.2f} |")
    lines += [
        "",
        f"Explainer peak resident memory: {results['explainer_peak_rss_mb']:.0f} MB.",
        f"Predictor standalone: {results['predictor_standalone_rows_per_s']:.0f} rows/s; during KernelSHAP over HTTP: "
        f"{results['predictor_rows_per_s_during_kernelshap']:.0f} rows/s ({results['predictor_share_during_kernelshap']:.0%} of standalone).",
    ]
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(results["latency"])
    runners = sorted({r for cells in results["latency"].values() for r in cells})
    figure, axes = plt.subplots(figsize=(8, 4), dpi=110)
    width = 0.8 / len(runners)
    for index, runner in enumerate(runners):
        values = [results["latency"][m].get(runner, {}).get("median_s", 0) for m in methods]
        axes.bar(np.arange(len(methods)) + index * width, values, width, label=runner)
    axes.set_xticks(np.arange(len(methods)) + width * (len(runners) - 1) / 2, methods)
    axes.set_ylabel("median seconds per explanation")
    axes.set_yscale("log")
    axes.legend()
    axes.set_title("Explanation latency (lower is better)")
    figure.tight_layout()
    figure.savefig(path)


def measure_tabular(results: dict[str, Any], bench: dict[str, Any], work: Path, repeats: int, per_client: int) -> None:
    """The wine model: AnchorTabular and KernelShap in process and over HTTP, throughput at 1, 4 and 16
    clients, the explainer's memory, and the predictor's share of its standalone rate during KernelShap."""
    # Throughput at 16 clients: 4 explanations computed, the other 12 wait for a worker (not refused).
    with LocalDeployment(
        work / "tabular" / "wine.yaml",
        log_dir=work / "logs-tabular",
        extra_explainer_args=["--max_waiting_explanations=12"],
        keep_records=False,
    ) as tabular:
        rows = list(bench["tabular_rows"])
        for method, name in (("AnchorTabular", "anchors"), ("KernelShap", "shap")):
            print(f"{method}: in process, then over HTTP", flush=True)
            results["latency"][method] = {
                "a_in_process": run_in_process(method, bench, work, repeats),
                "b_glassbox_http": run_glassbox(method, tabular, "wine", rows, name, repeats),
            }
        print("throughput at 1, 4, 16 clients", flush=True)
        results["throughput"] = {str(c): throughput(tabular, rows, "anchors", c, per_client) for c in (1, 4, 16)}
        explainer_pid = next(p.process.pid for p in tabular.processes if p.name == "explainer")
        results["explainer_peak_rss_mb"] = peak_rss_mb(explainer_pid)
        standalone = predictor_standalone_rows_per_second(tabular, len(bench["names"]))
        cell = results["latency"]["KernelShap"]["b_glassbox_http"]
        during = cell["rows_per_explanation"] / cell["median_s"]
        results.update(
            predictor_standalone_rows_per_s=standalone,
            predictor_rows_per_s_during_kernelshap=during,
            predictor_share_during_kernelshap=during / standalone,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument(
        "--mlserver-venv", default=str(HERE / ".venv-mlserver"), help="MLServer's own environment (created when missing)"
    )
    parser.add_argument("--no-mlserver", action="store_true", help="skip runner (c)")
    args = parser.parse_args()
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    repeats = 1 if args.quick else 3
    out = Path(args.out)
    work = out / "work"
    out.mkdir(parents=True, exist_ok=True)
    bench = prepare(work)
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores, Python {platform.python_version()}, torch {torch.__version__}",
        "command": "make bench" + (" BENCH_ARGS=--quick" if args.quick else ""),
        "latency": {},
    }
    measure_tabular(results, bench, work, repeats, per_client=2 if args.quick else 4)
    with LocalDeployment(work / "text" / "sentiment.yaml", log_dir=work / "logs-text", keep_records=False) as text:
        print("AnchorText: in process, then over HTTP", flush=True)
        results["latency"]["AnchorText"] = {
            "a_in_process": run_in_process("AnchorText", bench, work, repeats),
            "b_glassbox_http": run_glassbox("AnchorText", text, "sentiment", bench["texts"], "anchors", repeats),
        }
    if args.no_mlserver:
        results["mlserver"] = "not measured: --no-mlserver"
    else:
        measure_mlserver(results, bench, work, Path(args.mlserver_venv), repeats)
    results["same_answers"] = {
        method: {"anchors_equal": cells["a_in_process"]["anchors"] == cells["b_glassbox_http"]["anchors"]}
        for method, cells in results["latency"].items()
        if cells["a_in_process"]["anchors"] is not None
    }
    report = render(results)
    (out / "latest.md").write_text(report)
    (out / "latest.json").write_text(json.dumps(results, indent=1, default=str))
    chart(results, out / "latest.png")
    print(report)
    print(f"wrote {out / 'latest.md'}, {out / 'latest.json'}, {out / 'latest.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
