"""The wire between the operator and the servers: the environment variables and URL paths the builders
write into the InferenceServices and the graph, and the servers read and serve.

Defined once here, so the two sides cannot drift apart; imported by the operator's builders and by the
servers, never the other way round.
"""

from __future__ import annotations

# The ExplainerFit (JSON) the explainer server fits its methods from.
EXPLAINER_SPEC_ENV = "GLASSBOX_EXPLAINER_SPEC"
# The DetectorFit (JSON) the detector server fits from.
DETECTOR_FIT_ENV = "GLASSBOX_DETECTOR_FIT"
# KServe's storage initializer fetches STORAGE_URI into MODEL_DIR for a custom container.
STORAGE_URI_ENV = "STORAGE_URI"
MODEL_DIR = "/mnt/models"
# The explainer's answer to a request whose `route` the graph does not offer (the graph lists its routes in the query).
UNKNOWN_ROUTE_PATH = "/glassbox/v1/unknown-route"
# The detector's own paths: the graph's gate (the request narrowed to its outliers, their indices in
# `flagged`) and what it fitted (the operator shows it in the status).
DETECTOR_GATE_PATH = "/glassbox/v1/models/{model}/flagged"
DETECTOR_FITTED_PATH = "/glassbox/v1/models/{model}/fitted"
# Where the graph's predict route passes each request by the detector on its way to an existing InferenceService
# (one Glassbox does not write, so KServe's logger is not on it): the detector answers at once and forwards a
# copy to the drift monitor as KServe's logger would.
DETECTOR_OBSERVE_PATH = "/glassbox/v1/models/{model}/observe"
# The detector's drift monitor: KServe's request logger posts each prediction request here as a CloudEvent,
# and the latest window's report is read here.
DRIFT_EVENTS_PATH = "/glassbox/v1/models/{model}/drift/events"
DRIFT_PATH = "/glassbox/v1/models/{model}/drift"
# The header the explainer sends with its calls to the predictor (perturbed inputs, not users' traffic), and
# that KServe's request logger passes on (logger.metadataHeaders, in the event's `ce-metadata`), so the drift
# monitor leaves them out of its window. In Go's canonical form, which the logger matches exactly.
CALLER_HEADER = "Glassbox-Caller"
EXPLAINER_CALLER = "explainer"
# The explainer's records of its explanations: a page of an audit query here, one record below it by id.
RECORDS_PATH = "/glassbox/v1/models/{model}/records"
# The explainer's explanation jobs (asked with "async": true): one job's state, and its answer when done.
JOBS_PATH = "/glassbox/v1/models/{model}/jobs"
# The PostgreSQL connection string of the explainer's records, from a Secret (never a flag: flags are logged).
RECORDS_POSTGRES_ENV = "GLASSBOX_RECORDS_POSTGRES"

# The body field that picks the graph's route: top level, or in a v2 body's `parameters`.
ROUTE_FIELD = "route"
# The detector gate's answer names the flagged instances' indices in the request here; the explainer
# carries the field into its answer, so a client can tell which instances were explained.
FLAGGED_FIELD = "flagged"
# The keys of the detector's answer on DETECTOR_FITTED_PATH; the status shows them under the same names.
FITTED_THRESHOLD = "threshold"
FITTED_FALSE_POSITIVE_RATE = "falsePositiveRate"
FITTED_HELD_OUT_ROWS = "heldOutRows"
FITTED_REPRESENTATION = "representation"
FITTED_REALISED_RATE = "realisedFalsePositiveRate"  # {"low", "high", "confidence"}
