"""What identifies an explanation's answer, as digests: pure functions of the request and the method.

Every method starts from its own seed, so the same model, method settings (parameters and seed), input,
targets and picture give the same answer; the answer key is the digest of exactly those, and a record
whose key matches holds the answer a recomputation would give. The input's digest is kept apart so an
auditor can find every explanation of one input without the input itself being stored.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

# Bumped when what an answer depends on changes meaning (a new field in the key): old records then miss.
KEY_VERSION = 1


def input_digest(instances: np.ndarray | list[str]) -> str:
    """sha256 of the instances in a canonical form: texts as JSON, numbers as little-endian float64
    with their shape (so [1, 2] sent as ints or as floats is the same input, and [[1, 2]] is not [1, 2])."""
    digest = hashlib.sha256()
    if isinstance(instances, list):
        digest.update(b"texts\0" + json.dumps(instances, ensure_ascii=False, separators=(",", ":")).encode())
    else:
        array = np.ascontiguousarray(np.asarray(instances, dtype="<f8"))
        digest.update(b"numbers\0" + json.dumps(list(array.shape)).encode() + b"\0" + array.tobytes())
    return digest.hexdigest()


def answer_key(
    model: str,
    model_digest: str | None,
    method_settings: dict[str, Any],
    input_sha256: str,
    targets: list[int] | None,
    picture: bool,
) -> str:
    """sha256 of everything the answer depends on; two requests with one key get the same answer."""
    identity = {
        "version": KEY_VERSION,
        "model": model,
        "model_digest": model_digest,
        "method": method_settings,
        "input": input_sha256,
        "targets": targets,
        "picture": picture,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
