"""`python -m glassbox.explainers.explainer`: the explainer server, as its image runs it."""

from glassbox.explainers.explainer.server import main

main()
