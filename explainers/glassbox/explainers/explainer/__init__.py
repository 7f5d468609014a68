"""The explainer (`python -m glassbox.explainers.explainer`): one or more methods for one model, its
requests read once, explanations run on workers admitted by deadline, and what it counts on /metrics."""
