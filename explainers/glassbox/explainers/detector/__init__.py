"""The outlier detector (`python -m glassbox.explainers.detector`): fitted on reference rows, it says per
instance whether an input is unlike them, and the graph explains only those it flags."""
