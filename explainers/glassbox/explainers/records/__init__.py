"""Explanation records: every explanation kept with what identifies its answer (the model, the method's
settings and seed, the input's digest), so the same question is answered again from its record, and an
auditor can ask later what was explained, when, for whom, and how."""
