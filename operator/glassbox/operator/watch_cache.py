"""What the operator's watches last said of each object they see, so that a reconcile reads it from memory
instead of asking the API server again: the children (InferenceServices and InferenceGraphs), and the
ExplainedModels themselves (the work queue hands a reconcile a name; the body comes from here).

It is kept by every watch event of those kinds (informer.py; the operator's own writes included, which the
handlers otherwise skip) and by the operator's own writes (the server's answer to an apply or a status patch).
An object is known once an event or a write has said what it is, present or deleted; of two copies, the newer
resourceVersion is kept.

A kind is complete in a namespace once a listing of every object of that kind there (not a label's share) is
in: from then on, a name it does not hold is a name the watch has not seen taken.

A child is never written blind from it. A child it holds is applied with the cached resourceVersion, so the
API server refuses the apply (409) if the child changed since, and the reconciler reads it then, as it always
did. A name it does not hold (or holds as deleted) is read before anything is written to it, unless the kind is
complete there; either way the create takes over no field another manager set (reconcile.py `_create`). So a
stale cache costs a read or a refused write, never an overwrite.
"""

from __future__ import annotations

import threading
from typing import Any

Key = tuple[str, str, str, str]  # apiVersion, kind, namespace, name


def key_of(body: dict[str, Any]) -> Key | None:
    meta = body.get("metadata") or {}
    api_version, kind, namespace, name = body.get("apiVersion"), body.get("kind"), meta.get("namespace"), meta.get("name")
    if not (api_version and kind and namespace and name):
        return None
    return str(api_version), str(kind), str(namespace), str(name)


def revision_of(body: dict[str, Any] | None) -> int | None:
    """The resourceVersion as a number, where it is one (etcd's revisions are): which of two copies is newer."""
    if body is None:
        return None
    value = (body.get("metadata") or {}).get("resourceVersion")
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _older(body: dict[str, Any], held: dict[str, Any] | None) -> bool:
    """Whether `body` is an older copy than the one held (by resourceVersion, where both have one)."""
    new, old = revision_of(body), revision_of(held)
    return held is not None and new is not None and old is not None and new < old


def _slim(body: dict[str, Any]) -> dict[str, Any]:
    """The body without its managedFields, which the reconciler never reads (they are most of an object's size)."""
    meta = dict(body.get("metadata") or {})
    meta.pop("managedFields", None)
    return {**body, "metadata": meta}


class WatchCache:
    """Objects by (apiVersion, kind, namespace, name), each the newest copy an event or a write gave."""

    def __init__(self) -> None:
        self._objects: dict[Key, dict[str, Any] | None] = {}
        # (apiVersion, kind, namespace or None for all) whose whole listing is in.
        self._complete: set[tuple[str, str, str | None]] = set()
        self._guard = threading.Lock()

    def observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        """A watch event (a listing's objects included, whose type is None)."""
        key = key_of(body)
        if key is None:
            return
        if event_type == "DELETED":
            with self._guard:
                if not _older(body, self._objects.get(key)):
                    self._objects[key] = None  # unless what it deletes is older than what the operator wrote since
            return
        self._keep(key, _slim(body))

    def written(self, body: dict[str, Any]) -> None:
        """The API server's answer to the operator's own write."""
        key = key_of(body)
        if key is not None:
            self._keep(key, _slim(body))

    def _keep(self, key: Key, body: dict[str, Any]) -> None:
        with self._guard:
            if _older(body, self._objects.get(key)):
                return  # an event older than what the operator already wrote or saw
            self._objects[key] = body

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> tuple[bool, dict[str, Any] | None]:
        """(known, body): whether an event or a write has said what this object is, and what it said (None: deleted)."""
        with self._guard:
            key = (api_version, kind, namespace, name)
            return key in self._objects, self._objects.get(key)

    def present(self, api_version: str, kind: str, namespace: str | None) -> dict[Key, dict[str, Any]]:
        """The objects of a kind held as present, in a namespace or (None) in all."""
        with self._guard:
            return {
                key: body
                for key, body in self._objects.items()
                if body is not None and key[:2] == (api_version, kind) and namespace in (None, key[2])
            }

    def mark_complete(self, api_version: str, kind: str, namespace: str | None) -> None:
        """A listing of every object of this kind in this namespace (None: in all) is in."""
        with self._guard:
            self._complete.add((api_version, kind, namespace))

    def complete(self, api_version: str, kind: str, namespace: str) -> bool:
        """Whether every object of this kind in this namespace is held (a name not held is not taken, as far
        as the watch has seen)."""
        with self._guard:
            return (api_version, kind, namespace) in self._complete or (api_version, kind, None) in self._complete

    def __len__(self) -> int:
        with self._guard:
            return len(self._objects)
