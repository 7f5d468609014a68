"""`python -m glassbox.explainers.predictor`: the predictor server, as its image runs it."""

from glassbox.explainers.predictor.server import main

main()
