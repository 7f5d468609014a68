"""The kopf handlers. Each one is thin: it hands the object to the Reconciler
and turns the outcome into kopf's terms (retry later, or wait for a new spec).

The Reconciler lives in kopf's operator-wide `memo`, set by `glassbox operator`.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any, cast

import kopf

from glassbox.operator.api import GROUP, PLURAL, VERSION
from glassbox.operator.builders import MANAGED_BY, MANAGED_BY_LABEL
from glassbox.operator.kube import KubeError
from glassbox.operator.reconcile import Outcome, Reconciler
from glassbox.operator.status import describe_problems

# Retry soon after transient failures; KServe's CRDs may take a while to appear.
RETRY_DELAY_SECONDS = 15


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def post_warning(body: dict[str, Any], reason: str, message: str) -> None:
    kopf.warn(cast(kopf.Body, body), reason=reason, message=message)


def _reconciler(memo: kopf.Memo) -> Reconciler:
    return memo["reconciler"]  # type: ignore[no-any-return]


def _raise_for(outcome: Outcome) -> None:
    if outcome.problems:
        raise kopf.PermanentError(f"invalid spec, waiting for it to change: {describe_problems(outcome.problems)}")
    if outcome.retry_reason:
        raise kopf.TemporaryError(outcome.retry_reason, delay=RETRY_DELAY_SECONDS)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Progress and the last-handled spec live in annotations under our own
    # prefix, so nothing of kopf's leaks into the status API.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.persistence.finalizer = f"{GROUP}/kopf-finalizer"
    settings.peering.standalone = True
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.execution.max_workers = 16


def _reconcile_for_kopf(body: kopf.Body, memo: kopf.Memo, created: bool) -> None:
    try:
        outcome = _reconciler(memo).reconcile(dict(body), created=created)
    except KubeError as error:
        raise kopf.TemporaryError(str(error), delay=RETRY_DELAY_SECONDS) from error
    _raise_for(outcome)


@kopf.on.create(GROUP, VERSION, PLURAL)
def create_explained_model(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    """A new object: its children are written straight away, without reading them first.

    kopf also calls this for an object whose kopf annotations were wiped (`kubectl
    replace`); only an object that has never had a status is taken as new."""
    _reconcile_for_kopf(body, memo, created=retry == 0 and not body.get("status"))


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile_explained_model(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _reconcile_for_kopf(body, memo, created=False)


@kopf.timer(GROUP, VERSION, PLURAL, interval=120, initial_delay=60, idle=30)
def resync_explained_model(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """The periodic check: recreates deleted children and follows an existing InferenceService's status."""
    try:
        _reconciler(memo).reconcile(dict(body))
    except KubeError as error:
        logger.warning("periodic reconcile failed, will try again: %s", error)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def forget_explained_model(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """Children are garbage-collected through owner references; only the lock is ours to drop."""
    _reconciler(memo).forget(namespace or "", name)


@kopf.index(GROUP, VERSION, PLURAL)
def explained_models_by_existing_predictor(namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> dict[tuple[str | None, str], str] | None:
    """(namespace, InferenceService name) -> the ExplainedModels that explain that existing InferenceService."""
    existing = (spec.get("predictor") or {}).get("inferenceServiceName")
    return {(namespace, existing): name} if existing else None


def _owners_of(body: kopf.Body) -> list[str]:
    """The ExplainedModels that own this object (it is their child)."""
    return [
        ref["name"] for ref in (body.get("metadata") or {}).get("ownerReferences") or []
        if ref.get("kind") == "ExplainedModel" and ref.get("apiVersion", "").startswith(f"{GROUP}/")
    ]


def _parents_of(body: kopf.Body, index: kopf.Index[tuple[str | None, str], str]) -> list[str]:
    meta = body.get("metadata") or {}
    owners = _owners_of(body)
    key = (meta.get("namespace"), str(meta.get("name")))
    return owners + [name for name in index.get(key, []) if name not in owners]


def _reconcile_parents(body: kopf.Body, event: kopf.RawEvent, parents: list[str], memo: kopf.Memo, logger: kopf.Logger) -> None:
    """A child or an explained InferenceService changed (KServe reported status) or vanished: reconcile its parents."""
    if event.get("type") is None:
        return  # the initial listing: resume handlers cover it
    namespace = str((body.get("metadata") or {}).get("namespace"))
    for parent in parents:
        try:
            _reconciler(memo).reconcile_named(namespace, parent)
        except KubeError as error:
            logger.warning("reconcile of ExplainedModel %s failed, the periodic check will retry: %s", parent, error)


@kopf.on.event("serving.kserve.io", "v1beta1", "inferenceservices")
@kopf.on.event("serving.kserve.io", "v1alpha1", "inferencegraphs", labels={MANAGED_BY_LABEL: MANAGED_BY})
def kserve_object_changed(body: kopf.Body, event: kopf.RawEvent, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any) -> None:
    """Our children, and InferenceServices that ExplainedModels name as existing."""
    if event.get("type") in ("ADDED", "MODIFIED") and not body.get("status") and _owners_of(body):
        # Our own apply to our child (it writes no status): nothing new to mirror. Deletions,
        # KServe's reports and an existing InferenceService appearing still pass.
        return
    index: kopf.Index[tuple[str | None, str], str] = kwargs["explained_models_by_existing_predictor"]
    parents = _parents_of(body, index)
    if parents:
        _reconcile_parents(body, event, parents, memo, logger)


@kopf.on.probe(id="reconciler")
def reconciler_ready(memo: kopf.Memo, **_: Any) -> bool:
    return "reconciler" in memo
