"""Loading a PyTorch model artifact, and the tokenizer a text model ships beside it.

One artifact serves the predictor and the white-box methods: TorchScript
(`model.pt`, torch.jit.save) or torch.export (`model.pt2`, torch.export.save).
A text model ships `tokenizer.json` beside it, so string inputs become tensors
the same way everywhere. The module needs numpy and the standard library alone
until a model is loaded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from glassbox.explainers.data.errors import ArtifactError

ARTIFACT_NAMES = ("model.pt", "model.pt2")
TOKENIZER_NAME = "tokenizer.json"


def find_artifact(model_dir: str | Path) -> Path:
    path = Path(model_dir)
    if path.is_file():
        return path
    for name in ARTIFACT_NAMES:
        if (path / name).is_file():
            return path / name
    found = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    raise ArtifactError(
        f"no model artifact in {path}: expected {' or '.join(ARTIFACT_NAMES)} (TorchScript or torch.export), found {found or 'nothing'}"
    )


def choose_device(requested: str) -> str:
    """'cuda' when asked and available, else 'cpu'; 'auto' picks CUDA when present."""
    import torch

    if requested in ("cuda", "auto") and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def load_module(model_dir: str | Path, device: str, sha256: str | None = None) -> Any:
    """The model as a callable torch module on `device`, in eval mode. Loading an artifact runs code
    (TorchScript, and torch.export's unpickling), so a pinned SHA-256 is checked before torch reads it."""
    import torch

    from glassbox.explainers.data.errors import StorageError

    # Here, not at the top: the tokenizer is also read where only numpy is installed (the bench's MLServer runtime).
    from glassbox.explainers.data.storage import verify_sha256

    artifact = find_artifact(model_dir)
    try:
        verify_sha256(artifact, sha256, str(artifact))
    except StorageError as error:
        raise ArtifactError(str(error)) from error
    try:
        if artifact.suffix == ".pt2":
            module = torch.export.load(str(artifact)).module()
            module.to(device)
        else:
            module = torch.jit.load(str(artifact), map_location=device)  # type: ignore[no-untyped-call]
            module.eval()
    except Exception as error:  # noqa: BLE001  (torch raises many types for bad files)
        raise ArtifactError(f"could not load {artifact} as a TorchScript or torch.export artifact: {error}") from error
    return module


@dataclass(frozen=True)
class Tokenizer:
    """Words to a fixed-size bag-of-words vector: what the text model was trained on."""

    vocabulary: dict[str, int]
    lowercase: bool = True

    @classmethod
    def load(cls, model_dir: str | Path) -> Tokenizer | None:
        path = Path(model_dir)
        path = path.parent if path.is_file() else path
        file = path / TOKENIZER_NAME
        if not file.is_file():
            return None
        spec = json.loads(file.read_text())
        if spec.get("type", "bag_of_words") != "bag_of_words":
            raise ArtifactError(f"{file}: only type 'bag_of_words' is supported, got {spec.get('type')!r}")
        return cls(
            vocabulary={str(k): int(v) for k, v in spec["vocabulary"].items()}, lowercase=bool(spec.get("lowercase", True))
        )

    def save(self, model_dir: str | Path) -> None:
        payload = {"type": "bag_of_words", "lowercase": self.lowercase, "vocabulary": self.vocabulary}
        (Path(model_dir) / TOKENIZER_NAME).write_text(json.dumps(payload, indent=1))

    def words(self, text: str) -> list[str]:
        return re.findall(r"[\w']+", text.lower() if self.lowercase else text)

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), len(self.vocabulary)), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in self.words(text):
                index = self.vocabulary.get(word)
                if index is not None:
                    vectors[row, index] += 1.0
        return vectors
