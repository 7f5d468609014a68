"""The one module that talks to the Kubernetes API server.

It maps HTTP answers to meaning: 404 on a read is "absent"; 404 for a whole
resource type means the CRD is not installed; 403 names the missing RBAC rule;
409 and 5xx are worth retrying; 422 means the server's schema rejected an
object, with the server's own words.
"""

from __future__ import annotations

import builtins
import datetime
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from glassbox.contract.api import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)

FIELD_MANAGER = "glassbox-operator"
# Kubernetes refuses an Event whose message is longer than this; a longer one is cut in the middle.
EVENT_MESSAGE_LIMIT = 1024
# (connect, read) seconds for every call: a hung API server fails the call instead of a worker thread.
REQUEST_TIMEOUT = (10.0, 30.0)
# A watch asks the server to end it after this many seconds; the client gives up on a silent one a little later.
WATCH_SERVER_TIMEOUT_SECONDS = 300
WATCH_READ_TIMEOUT = (10.0, WATCH_SERVER_TIMEOUT_SECONDS + 30.0)
# Objects per page of a listing: a listing of thousands is never one answer held whole in memory.
LIST_PAGE_SIZE = 500

# apiVersion/kind -> plural, for the kinds the operator reads and writes.
PLURALS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservices",
    ("serving.kserve.io/v1alpha1", "InferenceGraph"): "inferencegraphs",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "servingruntimes",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "clusterservingruntimes",
    (f"{GROUP}/{VERSION}", "ExplainedModel"): PLURAL,
    ("coordination.k8s.io/v1", "Lease"): "leases",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("policy/v1beta1", "PodDisruptionBudget"): "poddisruptionbudgets",
}


class KubeError(Exception):
    """A failed API call, with a message a person can act on."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        # Seconds the API server asked us to wait (Retry-After on 429 and some 5xx answers).
        self.retry_after = retry_after


class ResourceTypeMissing(KubeError):
    """The API server does not serve this kind: its CRD is not installed."""


class Rejected(KubeError):
    """The API server refused the object as invalid (422) or forbidden (403)."""


class Transient(KubeError):
    """Worth retrying: conflicts, timeouts, server errors, connection failures."""


class Gone(Transient):
    """410: a watch's resourceVersion, or a listing's continue token, is too old; list again from the start."""


def _lines(response: Any) -> Iterator[bytes]:
    """The lines of a streamed answer (a watch sends one JSON event per line), as they arrive."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=False):
        pending += chunk
        *whole, pending = pending.split(b"\n")
        yield from (line for line in whole if line.strip())
    if pending.strip():
        yield pending


def load_api_client() -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    # Sync handlers run in a thread pool; let every thread keep a connection.
    configuration.connection_pool_maxsize = 32
    # One immediate retry (a pooled connection the server closed); after that, the handlers' backoff decides.
    configuration.retries = 1
    return client.ApiClient(configuration)


def _split(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def _server_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "").get("message") or error.reason)
    except (TypeError, ValueError, AttributeError):
        return str(error.reason)


def _retry_after(error: ApiException) -> float | None:
    """The Retry-After header in seconds, when the server sent one (the API server sends whole seconds)."""
    value = (error.headers or {}).get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class KubeApi:
    """Reads, server-side applies and deletes namespaced custom objects."""

    def __init__(self, api_client: client.ApiClient):
        self._objects = client.CustomObjectsApi(api_client)
        self._apis = client.ApisApi(api_client)
        self._core = client.CoreV1Api(api_client)

    def post_event(self, body: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """A core/v1 Event about `body` (what `kubectl describe` shows), from any thread. An Event that cannot be
        posted is logged, never raised: it must not fail the reconcile that had something to say."""
        meta = body.get("metadata") or {}
        if len(message) > EVENT_MESSAGE_LIMIT:
            half = EVENT_MESSAGE_LIMIT // 2 - 3
            message = f"{message[:half]} … {message[-half:]}"
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name')}.", "namespace": meta.get("namespace")},
            "involvedObject": {
                "apiVersion": body.get("apiVersion"),
                "kind": body.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "type": event_type,
            "reason": reason,
            "message": message,
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._core.create_namespaced_event(str(meta.get("namespace")), cast(Any, event), _request_timeout=REQUEST_TIMEOUT)
        except Exception as error:  # noqa: BLE001 - an Event is best effort
            log.warning(
                "could not post the %s Event %s on %s %s: %s", event_type, reason, body.get("kind"), meta.get("name"), error
            )

    def first_served(self, api_versions: Sequence[str]) -> str | None:
        """The first of these group/versions the API server serves (discovery), or None."""
        try:
            groups = self._apis.get_api_versions(_request_timeout=REQUEST_TIMEOUT).groups or []
        except ApiException as error:
            raise self._fail(error, "discover", "apis", "API groups", None) from error
        except Exception as error:
            raise Transient(f"could not discover the served API groups: {error}") from error
        served = {version.group_version for group in groups for version in group.versions or []}
        return next((v for v in api_versions if v in served), None)

    def _fail(self, error: ApiException, action: str, api_version: str, kind: str, name: str | None) -> KubeError:
        what = f"{kind} '{name}'" if name else f"{kind} objects"
        message = _server_message(error)
        if error.status == 404:
            return ResourceTypeMissing(
                f"the API server does not serve {kind} ({api_version}): install its CustomResourceDefinition "
                f"(for KServe kinds, install KServe) and Glassbox will proceed on its own",
                404,
            )
        if error.status == 403:
            return Rejected(
                f"forbidden to {action} {what}: the operator's ServiceAccount needs RBAC for {kind} in {api_version} ({message})",
                403,
            )
        if error.status in (400, 422):
            return Rejected(f"the API server rejected {what}: {message}", error.status)
        return Transient(f"could not {action} {what}: {error.status} {message}", error.status, _retry_after(error))

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        group, version = _split(api_version)
        plural = PLURALS[(api_version, kind)]
        return self._read(
            lambda: self._objects.get_namespaced_custom_object(
                group, version, namespace, plural, name, _request_timeout=REQUEST_TIMEOUT
            ),
            api_version,
            kind,
            name,
        )

    def get_cluster_scoped(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        group, version = _split(api_version)
        plural = PLURALS[(api_version, kind)]
        return self._read(
            lambda: self._objects.get_cluster_custom_object(group, version, plural, name, _request_timeout=REQUEST_TIMEOUT),
            api_version,
            kind,
            name,
        )

    def _read(self, call: Callable[[], Any], api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        """One object, or None when it does not exist."""
        try:
            return cast(dict[str, Any], call())
        except ApiException as error:
            if error.status == 404 and _server_message(error) != "the server could not find the requested resource":
                return None
            raise self._fail(error, "read", api_version, kind, name) from error
        except Exception as error:  # connection refused, timeouts
            raise Transient(f"could not read {kind} '{name}': {error}") from error

    def _list_endpoint(self, api_version: str, kind: str, namespace: str | None, action: str, **params: Any) -> Any:
        """A call of a kind's list endpoint (in a namespace, or in all) with `params`: a listing, one page of one,
        or a watch. Raises Gone (410: a resourceVersion or continue token too old), else as `_fail` says."""
        group, version = _split(api_version)
        plural = PLURALS[(api_version, kind)]
        try:
            if namespace is None:
                return self._objects.list_cluster_custom_object(group, version, plural, **params)
            return self._objects.list_namespaced_custom_object(group, version, namespace, plural, **params)
        except ApiException as error:
            if error.status == 410:
                raise Gone(f"could not {action} {kind} objects from where it was: {_server_message(error)}", 410) from error
            raise self._fail(error, action, api_version, kind, None) from error
        except Exception as error:
            raise Transient(f"could not {action} {kind}: {error}") from error

    def list(self, api_version: str, kind: str, namespace: str | None, label_selector: str = "") -> builtins.list[dict[str, Any]]:
        """The objects of a kind in a namespace, or in every namespace when `namespace` is None."""
        answer = self._list_endpoint(
            api_version, kind, namespace, "list", label_selector=label_selector, _request_timeout=REQUEST_TIMEOUT
        )
        return list(answer.get("items") or [])

    def list_page(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        continue_token: str | None = None,
        from_watch_cache: bool = False,
    ) -> tuple[builtins.list[dict[str, Any]], str, str | None]:
        """One page of a listing (in a namespace, or in all): (objects, the listing's resourceVersion, the token
        of the next page or None). Raises Gone (410) when the token has expired: the listing starts again.

        `from_watch_cache`: served from the API server's watch cache (resourceVersion "0", as client-go's
        reflectors list at start): no read of etcd, so far less of the API server's time, at the price of a
        state that may be a moment old (the watch from its resourceVersion brings what is newer). The server
        then sends every object in one answer, whatever the page size."""
        paging: dict[str, Any] = {"limit": LIST_PAGE_SIZE, "_request_timeout": REQUEST_TIMEOUT}
        if continue_token:
            paging["_continue"] = continue_token
        elif from_watch_cache:
            paging["resource_version"] = "0"
        answer = self._list_endpoint(api_version, kind, namespace, "list", **paging)
        meta = answer.get("metadata") or {}
        return list(answer.get("items") or []), str(meta.get("resourceVersion") or ""), meta.get("continue") or None

    def watch(self, api_version: str, kind: str, namespace: str | None, resource_version: str) -> Iterator[dict[str, Any]]:
        """The watch events of a kind (in a namespace, or in all) after `resource_version`, each decoded as the
        server sends it ({"type", "object"}), bookmarks included, until the server ends the stream (after
        WATCH_SERVER_TIMEOUT_SECONDS). Raises Gone (410) when that version is too old to resume from."""
        watching: dict[str, Any] = {
            "watch": True,
            "resource_version": resource_version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": WATCH_SERVER_TIMEOUT_SECONDS,
            "_preload_content": False,
            "_request_timeout": WATCH_READ_TIMEOUT,
        }
        response = self._list_endpoint(api_version, kind, namespace, "watch", **watching)
        try:
            for line in _lines(response):
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    message = f"the watch of {kind} objects ended: {status.get('message') or status}"
                    raise Gone(message, 410) if status.get("code") == 410 else Transient(message, status.get("code"))
                yield event
        except KubeError:
            raise
        except Exception as error:  # the connection dropped, or a read timed out
            raise Transient(f"the watch of {kind} objects broke off: {error}") from error
        finally:
            response.release_conn()

    def list_explained_models(self, namespaces: Sequence[str]) -> builtins.list[dict[str, Any]]:
        """The ExplainedModels in these namespaces, or in every namespace when none are named."""
        scopes: Sequence[str | None] = namespaces or [None]
        return [body for namespace in scopes for body in self.list(f"{GROUP}/{VERSION}", "ExplainedModel", namespace)]

    def apply(self, body: dict[str, Any], force: bool = True) -> dict[str, Any]:
        """Server-side apply with the operator's field manager; the server's copy comes back. With `force`, fields
        another manager set are taken over; without, such a field set to another value is a conflict (409)."""
        api_version, kind = body["apiVersion"], body["kind"]
        group, version = _split(api_version)
        meta = body["metadata"]
        try:
            answer: Any = self._objects.patch_namespaced_custom_object(
                group,
                version,
                meta["namespace"],
                PLURALS[(api_version, kind)],
                meta["name"],
                body,
                field_manager=FIELD_MANAGER,
                force=force,
                _content_type="application/apply-patch+yaml",
                # The client deserializes only a 200; an apply that creates the object answers 201.
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
            return cast(dict[str, Any], json.loads(answer.data))
        except ApiException as error:
            raise self._fail(error, "apply", api_version, kind, meta["name"]) from error
        except Exception as error:
            raise Transient(f"could not apply {kind} '{meta['name']}': {error}") from error

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create an object; Transient (409) when one of that name exists already."""
        return self._write(body, "create")

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        """Replace an object; its metadata.resourceVersion makes this fail (409, Transient) if it changed since it was read."""
        return self._write(body, "replace")

    def _write(self, body: dict[str, Any], action: str) -> dict[str, Any]:
        api_version, kind = body["apiVersion"], body["kind"]
        group, version = _split(api_version)
        meta = body["metadata"]
        plural = PLURALS[(api_version, kind)]
        try:
            if action == "create":
                answer = self._objects.create_namespaced_custom_object(
                    group,
                    version,
                    meta["namespace"],
                    plural,
                    body,
                    field_manager=FIELD_MANAGER,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            else:
                answer = self._objects.replace_namespaced_custom_object(
                    group,
                    version,
                    meta["namespace"],
                    plural,
                    meta["name"],
                    body,
                    field_manager=FIELD_MANAGER,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            return cast(dict[str, Any], answer)
        except ApiException as error:
            raise self._fail(error, action, api_version, kind, meta["name"]) from error
        except Exception as error:
            raise Transient(f"could not {action} {kind} '{meta['name']}': {error}") from error

    def delete(self, api_version: str, kind: str, namespace: str, name: str, uid: str) -> None:
        """Delete one object, only if it is still the one with this uid."""
        group, version = _split(api_version)
        try:
            self._objects.delete_namespaced_custom_object(
                group,
                version,
                namespace,
                PLURALS[(api_version, kind)],
                name,
                body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid), propagation_policy="Background"),
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            if error.status in (404, 409):
                return  # gone already, or replaced by a newer object that is not ours to delete
            raise self._fail(error, "delete", api_version, kind, name) from error
        except Exception as error:
            raise Transient(f"could not delete {kind} '{name}': {error}") from error

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any] | None:
        """Merge-patch the ExplainedModel's status subresource; the object as written, None if it is gone."""
        try:
            written = self._objects.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": status},
                _content_type="application/merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            if error.status == 404:
                return None  # deleted meanwhile
            raise self._fail(error, "update the status of", f"{GROUP}/{VERSION}", "ExplainedModel", name) from error
        except Exception as error:
            raise Transient(f"could not update the status of ExplainedModel '{name}': {error}") from error
        return written if isinstance(written, dict) else None
