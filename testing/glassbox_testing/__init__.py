"""What Glassbox's tests, demos and benchmarks share: the local control plane, the operator as a process,
data and models with known answers, KServe's router. A package of its own (testing/pyproject.toml), installed
into the development environment and never into an image."""
