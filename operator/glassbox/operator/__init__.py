"""The Glassbox operator: the ExplainedModel API, pure builders of KServe objects, status logic, the reconciler and its watches."""
