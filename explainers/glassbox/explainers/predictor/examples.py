"""Small PyTorch models exported for Glassbox's predictor: used by the demo and the tests.

Each model takes raw inputs (standardisation is inside it), answers class
probabilities, and is saved as TorchScript (`model.pt`), the artifact both the
predictor and the white-box methods load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from glassbox.explainers.data.torch_artifacts import Tokenizer


def _modules() -> Any:
    import torch

    class TabularClassifier(torch.nn.Module):
        def __init__(self, mean: np.ndarray, scale: np.ndarray, hidden: int, classes: int, depth: int = 1):
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
            self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
            layers: list[torch.nn.Module] = []
            width = len(mean)
            for _ in range(depth):
                layers += [torch.nn.Linear(width, hidden), torch.nn.Tanh()]
                width = hidden
            self.net = torch.nn.Sequential(*layers, torch.nn.Linear(width, classes))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.net((x - self.mean) / self.scale), dim=-1)  # type: ignore[operator]

    class ImageClassifier(torch.nn.Module):
        """Images as (batch, height, width, channels), like the v1 JSON users send."""

        def __init__(self, pixels: int, classes: int):
            super().__init__()
            self.linear = torch.nn.Linear(pixels, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.linear(x.reshape(x.shape[0], -1)), dim=-1)

    return TabularClassifier, ImageClassifier


def _train(model: Any, X: np.ndarray, y: np.ndarray, epochs: int, seed: int, lr: float = 0.02) -> Any:
    import torch

    torch.manual_seed(seed)
    inputs = torch.tensor(X, dtype=torch.float32)
    targets = torch.tensor(y, dtype=torch.long)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        log_probabilities = torch.log(model(inputs).clamp_min(1e-9))
        # Label smoothing keeps the model from saturating (p = 1.0 in float32), where loss
        # gradients vanish and gradient-based explanations (influence, IG) turn to noise.
        loss = 0.9 * torch.nn.functional.nll_loss(log_probabilities, targets) - 0.1 * log_probabilities.mean()
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    return model.eval()


def _save(model: Any, folder: Path) -> Path:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    scripted = torch.jit.script(model)
    path = folder / "model.pt"
    scripted.save(str(path))
    return path


def tabular_classifier(
    X: np.ndarray,
    y: np.ndarray,
    folder: Path,
    hidden: int = 16,
    epochs: int = 300,
    seed: int = 0,
    depth: int = 1,
    tie_gap: float = 0.0,
) -> Path:
    """Train a small MLP (`depth` hidden layers of `hidden` units) on (X, y) and save it as `folder/model.pt`.

    A `tie_gap` then makes classes 0 and 1 all but equal (class 1's output weights those of class 0 times
    1 + tie_gap), so many inputs lie within a float32 rounding of a tie: a model to test tie-breaking on."""
    import torch

    torch.manual_seed(seed)
    TabularClassifier, _ = _modules()
    scale = X.std(axis=0)
    scale[scale == 0] = 1.0
    model = _train(TabularClassifier(X.mean(axis=0), scale, hidden, int(y.max()) + 1, depth), X, y, epochs, seed)
    if tie_gap:
        with torch.no_grad():
            last = model.net[-1]
            last.weight[1] = last.weight[0] * (1 + tie_gap)
            last.bias[1] = last.bias[0]
    return _save(model, folder)


def text_classifier(texts: list[str], y: np.ndarray, folder: Path, epochs: int = 200, seed: int = 0) -> Path:
    """A bag-of-words classifier, saved with its `tokenizer.json`: the predictor takes strings."""
    import torch

    words = sorted({w for t in texts for w in Tokenizer({}).words(t)})
    tokenizer = Tokenizer({w: i for i, w in enumerate(words)})
    X = tokenizer.encode(texts)
    torch.manual_seed(seed)
    TabularClassifier, _ = _modules()
    model = TabularClassifier(np.zeros(len(words)), np.ones(len(words)), 16, int(y.max()) + 1)
    path = _save(_train(model, X, y, epochs, seed), folder)
    tokenizer.save(folder)
    return path


def image_classifier(images: np.ndarray, y: np.ndarray, folder: Path, epochs: int = 200, seed: int = 0) -> Path:
    """A linear classifier over pixels of (N, H, W, C) images."""
    import torch

    torch.manual_seed(seed)
    _, ImageClassifier = _modules()
    model = ImageClassifier(int(np.prod(images.shape[1:])), int(y.max()) + 1)
    return _save(_train(model, images, y, epochs, seed, lr=0.05), folder)
