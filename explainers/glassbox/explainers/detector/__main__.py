"""`python -m glassbox.explainers.detector`: the detector server, as its image runs it."""

from glassbox.explainers.detector.server import main

main()
