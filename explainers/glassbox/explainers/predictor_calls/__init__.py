"""The explainer's only way to the model: the predictor's prediction API over pooled keep-alive HTTP,
concurrent explanations' calls shared, rows already scored not sent again, each cut off at its deadline."""
