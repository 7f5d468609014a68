"""`make demo-graph`: `make demo`'s model answered through KServe's own InferenceGraph router, every route.

    python e2e/graph/demo_graph.py [OUT]

It trains the demo's model and writes its manifest (as `make demo` does), then,
in a private network namespace (`unshare -n`: the router's port 8080 is fixed),
starts the predictor, the explainer and the detector in local mode and KServe's router with
the graph the operator's builders generate, its steps resolved as KServe's
controller resolves them. It sends each route a v1 and a v2 body, with and
without a method, an ordinary and an unusual patient to the outlier routes, and an unknown route, and prints each request and the
router's answer (long lists and summaries shortened). The router is built
once from `../shared/kserve-router` and cached; without it the demo says what
it needs and stops.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from glassbox.demo import prepare, unusual_patient  # noqa: E402
from glassbox_testing.kserve_router import router_or_reason


def requests(row: list[float], unusual: list[float]) -> list[dict[str, Any]]:
    """What a user of either protocol sends: v1 names route and method at the top, v2 in `parameters`."""
    v1 = {"instances": [row]}
    both = {"instances": [row, unusual]}
    v2 = {"inputs": [{"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": row}]}
    asked = [
        ("no route: the default (predict)", v1),
        ("no route: the default (predict)", v2),
        ("explain, no method: the default (anchors)", {**v1, "route": "explain"}),
        ("explain by shap", {**v2, "parameters": {"route": "explain", "method": "shap"}}),
        ("predictAndExplain by counterfactual", {**v1, "route": "predictAndExplain", "method": "counterfactual"}),
        ("predictAndExplain by ig", {**v2, "parameters": {"route": "predictAndExplain", "method": "ig"}}),
        (
            "a method the explainer lacks: the explanation's error, the prediction kept",
            {**v1, "route": "predictAndExplain", "method": "lime"},
        ),
        ("detect: the patient, and the same patient with worst_area entered 100 times too large", {**both, "route": "detect"}),
        (
            "predictAndExplainIfOutlier by anchors: both predicted and judged, only the unusual one explained",
            {**both, "route": "predictAndExplainIfOutlier", "method": "anchors"},
        ),
        ("a route the graph lacks", {**v1, "route": "monitor"}),
    ]
    return [{"id": f"{index}. {title}", "body": body} for index, (title, body) in enumerate(asked, 1)]


def shortened(value: Any, depth: int = 0) -> Any:
    """Enough of an answer to read: floats to 4 digits, lists to their first items, null fields and an
    explanation's parameters left out, deep objects elided."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, str):
        return value if len(value) <= 400 else value[:397] + "..."
    if isinstance(value, list):
        head = [shortened(v, depth + 1) for v in value[:3]]
        return head + ([f"... {len(value) - 3} more"] if len(value) > 3 else [])
    if isinstance(value, dict):
        if depth >= 4:
            return "{...}"
        if isinstance(value.get("meta"), dict) and "name" in value["meta"]:
            value = {**value, "meta": {"name": value["meta"]["name"], "...": "..."}}
        return {k: shortened(v, depth + 1) for k, v in value.items() if v is not None and k not in ("raw", "picture")}
    return value


def explanation_lines(explanation: Any) -> list[str]:
    if isinstance(explanation, dict) and "summary" in explanation:
        return [f"    {explanation['method']} ({explanation['meta']['name']}): {line}" for line in explanation["summary"]]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", default=".glassbox/demo-graph", help="where the model, manifest, logs and graph go")
    out = Path(parser.parse_args().out)
    router, why_not = router_or_reason()
    if router is None:
        print(f"make demo-graph needs KServe's router: {why_not}")
        return 2
    began = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    print(f"1. training the demo's PyTorch classifier (breast cancer, 30 features) -> {out}/model/model.pt")
    manifest, rows, names = prepare(out)
    manifest = manifest.resolve()
    sent = requests([float(x) for x in rows[0]], [float(x) for x in unusual_patient(rows[0], names)])
    plan = {"manifest": str(manifest), "router": str(router), "logs": str((out / "logs").resolve()), "requests": sent}
    (out / "plan.json").write_text(json.dumps(plan))
    print("2. in a private network namespace: the predictor, the explainer (5 methods fitted) and the detector in local mode,")
    print("   and KServe's router on :8080 with the InferenceGraph the operator generates for this manifest")
    driver = Path(__file__).resolve().parent / "graph_driver.py"
    subprocess.run(["unshare", "-n", sys.executable, str(driver), str(out / "plan.json"), str(out / "results.json")], check=True)
    results = json.loads((out / "results.json").read_text())
    if "error" in results:
        print(f"the run failed: {results['error']}\n{json.dumps(results.get('logs'), indent=1)[:4000]}")
        return 1
    (out / "graph.json").write_text(json.dumps(results["graph"], indent=2))
    print(f"   the graph's spec: {out / 'graph.json'}")
    print("\n3. requests to the router (POST /) and its answers:")
    failures = 0
    for request, answer in zip(sent, results["requests"], strict=True):
        print(f"\n{request['id']}")
        print(f"  POST / {json.dumps(shortened(request['body']))}")
        print(
            f"  {answer['status']} ({answer['seconds']:.1f} s) {json.dumps(shortened(answer['body'] if answer['body'] is not None else answer['text']))}"
        )
        body = answer["body"] if isinstance(answer["body"], dict) else {}
        for line in explanation_lines(body.get("explanation", body)):
            print(line)
        failures += answer["status"] is None or answer["status"] >= 500
    print(f"\ndone in {time.monotonic() - began:.0f} s; everything is stopped. The graph: {out / 'graph.json'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
