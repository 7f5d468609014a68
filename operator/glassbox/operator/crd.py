"""The ExplainedModel CustomResourceDefinition, generated from the pydantic API.

The JSON Schema pydantic writes is turned into a structural OpenAPI v3 schema:
references inlined, optional unions collapsed, int-or-string quantities marked,
exclusive bounds in OpenAPI 3.0 form, and every description kept so that
`kubectl explain explainedmodel.spec` teaches the API.
"""

from __future__ import annotations

from typing import Any

import yaml

from glassbox.contract.api import (
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    ExplainedModelSpec,
    ExplainedModelStatus,
)

_KEPT_KEYWORDS = (
    "description",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "default",
    "format",
)


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One pydantic JSON Schema node as a structural OpenAPI v3 schema node."""
    description = node.get("description")
    if "$ref" in node:
        resolved = _structural(defs[node["$ref"].split("/")[-1]], defs)
        if description:
            resolved["description"] = description
        if "default" in node and node["default"] is not None and not isinstance(node["default"], dict):
            resolved["default"] = node["default"]
        return resolved
    if node.get("x-kubernetes-int-or-string"):
        out: dict[str, Any] = {"x-kubernetes-int-or-string": True}
        if description:
            out["description"] = description
        return out
    if "anyOf" in node:
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"a union other than Optional cannot be a structural schema: {node}")
        merged = _structural(options[0], defs)
        if description:
            merged["description"] = description
        if node.get("default") is not None:
            merged["default"] = node["default"]
        return merged

    out = {}
    if "const" in node:
        out["type"] = node.get("type", "string")
        out["enum"] = [node["const"]]
    elif "type" in node:
        out["type"] = node["type"]
    for keyword in _KEPT_KEYWORDS:
        if keyword in node:
            out[keyword] = node[keyword]
    # No null, object or empty-string defaults: 1.20 servers read `default: ""` as null and reject it.
    if "default" in out and (out["default"] in (None, "") or isinstance(out["default"], dict)):
        del out["default"]
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node:
            out[inclusive] = node[bound]
            out[bound] = True
    if out.get("type") == "integer":
        out.setdefault("format", "int64")
    if out.get("type") == "object" or "properties" in node:
        out["type"] = "object"
        if "properties" in node:
            out["properties"] = {name: _structural(prop, defs) for name, prop in node["properties"].items()}
            if node.get("required"):
                out["required"] = list(node["required"])
        elif isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = _structural(node["additionalProperties"], defs)
    if out.get("type") == "array":
        out["items"] = _structural(node["items"], defs)
    return out


def _schema_of(model: type[Any]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(schema, schema.get("$defs", {}))


def build_crd() -> dict[str, Any]:
    """The CRD as a dict, ready to serialise."""
    spec_schema = _schema_of(ExplainedModelSpec)
    status_schema = _schema_of(ExplainedModelStatus)
    status_schema["description"] = "What the operator observed: conditions, URLs to call and the children's names."
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "glassbox"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": ["glassbox", "kserve"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                        {"name": "Predictor", "type": "string", "jsonPath": ".status.children.predictor"},
                        {"name": "Methods", "type": "string", "jsonPath": ".status.methods"},
                        {
                            "name": "Reason",
                            "type": "string",
                            "priority": 1,
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "ExplainedModel makes a model served with KServe explainable in production: "
                            "a predictor, an explainer that scales on its own, and an InferenceGraph that wires them.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "glassbox.dev/v1alpha1"},
                                "kind": {"type": "string", "description": "ExplainedModel"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crd() -> str:
    """The CRD as the YAML checked into crds/ and the Helm chart."""
    header = "# Generated from glassbox.contract.api by `glassbox crd`; do not edit. Regenerate with `make crds`.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120)
