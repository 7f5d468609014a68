"""The Glassbox operator: the ExplainedModel API, pure builders of KServe objects, status logic and kopf handlers."""
