"""The predictor: a PyTorch model served with dynamic batching (`python -m glassbox.explainers.predictor`),
and the small example models the demo and the tests serve."""
