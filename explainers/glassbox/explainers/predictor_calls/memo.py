"""Within one explanation, a row already scored is not sent to the predictor again (the memo)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from glassbox.contract.server_args import MEMO_MAX_BYTES

# What one remembered row costs beyond its bytes and its scores' (a dict entry, a key object).
MEMO_ENTRY_OVERHEAD_BYTES = 160


class PredictionMemo:
    """Within one explanation, a row already scored is not sent again.

    alibi and shap ask for the explained instance's prediction more than once,
    anchor samples repeat rows, and text perturbations repeat sentences. Calls
    larger than `max_rows_per_call` (KernelSHAP's coalitions, all distinct) go
    straight through: hashing them would cost more than it saves. The memo
    holds at most `max_bytes` (rows, their scores and bookkeeping): float32 rows
    of 224x224x3 images fill 256 MiB after about 440; later rows are scored
    without being remembered.
    """

    def __init__(self, max_rows_per_call: int = 4096, max_bytes: int = MEMO_MAX_BYTES):
        self.max_rows_per_call = max_rows_per_call
        self.max_bytes = max_bytes
        self._keys_bytes = 0  # the remembered rows and their bookkeeping
        self._position: dict[bytes | str, int] = {}  # row -> its scores' position in _table
        self._table: np.ndarray | None = None

    def predict(self, instances: np.ndarray | list[str], predict: Callable[[np.ndarray | list[str]], np.ndarray]) -> np.ndarray:
        if len(instances) > self.max_rows_per_call or len(instances) == 0:
            return predict(instances)
        if isinstance(instances, list):
            keys: list[bytes | str] = list(instances)
            key_bytes = sum(len(k) for k in instances)
        else:
            instances = np.ascontiguousarray(instances)
            rows = instances.reshape(len(instances), -1)
            # Each row's bytes as one numpy scalar: one C pass instead of a tobytes() per row.
            keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel().tolist()
            key_bytes = rows.nbytes
        position = self._position
        missing: dict[bytes | str, int] = {}
        for index, key in enumerate(keys):
            if key not in position and key not in missing:
                missing[key] = index
        if missing:
            wanted = list(missing.values())
            scores = predict([instances[i] for i in wanted] if isinstance(instances, list) else instances[wanted])
            new_key_bytes = (key_bytes * len(missing)) // len(keys)
            if len(missing) == len(keys):  # every row new and distinct: the answer as it came
                self._remember(list(missing), new_key_bytes, scores)
                return scores
            if not self._remember(list(missing), new_key_bytes, scores):
                fresh = dict(zip(missing, range(len(wanted)), strict=True))
                return np.stack([scores[fresh[k]] if k in fresh else self._table[position[k]] for k in keys])  # type: ignore[index]
        assert self._table is not None
        return self._table[[position[k] for k in keys]]

    def _remember(self, keys: list[bytes | str], key_bytes: int, scores: np.ndarray) -> bool:
        """Keeps these rows' scores unless that would take the memo past `max_bytes`; whether it kept them."""
        first = len(self._position)  # rows kept so far: the table's filled part
        # Room for twice what is needed when the table grows, so that rows are copied about once in all.
        rows = len(self._table) if self._table is not None and first + len(keys) <= len(self._table) else 2 * (first + len(keys))
        keys_held = self._keys_bytes + key_bytes + MEMO_ENTRY_OVERHEAD_BYTES * len(keys)
        if keys_held + rows * (scores.nbytes // max(1, len(scores))) > self.max_bytes:
            return False
        if self._table is None or rows != len(self._table):
            grown = np.empty((rows, *scores.shape[1:]), dtype=scores.dtype)
            if self._table is not None:
                grown[:first] = self._table[:first]
            self._table = grown
        self._table[first : first + len(keys)] = scores
        self._position.update(zip(keys, range(first, first + len(keys)), strict=True))
        self._keys_bytes = keys_held
        return True

    @property
    def held_bytes(self) -> int:
        return self._keys_bytes + (self._table.nbytes if self._table is not None else 0)
