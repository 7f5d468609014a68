"""The Glassbox data plane: the explainer and predictor model servers."""
