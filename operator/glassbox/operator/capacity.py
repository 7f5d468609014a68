"""What a component's capacity tells its autoscaler: pure decisions, rendered by the builders.

Under Knative (KServe's Serverless mode) a replica's hard limit of requests in flight is its
`containerConcurrency`: what it computes at once (workers) plus what it may hold waiting. KServe copies the
component's `containerConcurrency` into the Knative revision and its `scaleTarget` into the revision's
`autoscaling.knative.dev/target` annotation (kserve pkg/controller/v1beta1/inferenceservice/reconcilers/
knative/ksvc_reconciler.go, createKnativeService: `ContainerConcurrency: componentExtension.ContainerConcurrency`
and `annotations[autoscaling.TargetAnnotationKey] = fmt.Sprint(*componentExtension.ScaleTarget)`). With the
limit set, Knative's queue-proxy lets no more than that into the container and its activator buffers the rest
of a burst until a replica has room; the autoscaler aims at `target` x 70% in flight per replica
(container-concurrency-target-percentage), averaged over a 60 s stable window and a 6 s panic window, and
when the panic window asks for twice the ready replicas it scales up to that at once, and not down until a
stable window later (knative/serving pkg/autoscaler/scaling/autoscaler.go, Scale; config-autoscaler's
defaults). So the target is the workers: replicas are added once they are busy on average, before anything
waits long.

Under RawDeployment there is no queue-proxy or activator: KServe makes an HPA, and its HPA reads only
`cpu` and `memory` (reconcilers/hpa/hpa_reconciler.go, getHPAMetrics: any other scaleMetric gives an HPA
with no metric of its own). A Python explainer keeps one core busy at most (alibi's searches hold the GIL),
so the CPU target must be one that one busy core reaches on the replica's request: 70% of a core, as a
percent of the request. A replica holds a larger waiting room there, since nothing in front of it buffers.
Which mode applies is the ExplainedModel's annotation, else what KServe reports for its predictor
(builders.Parent.raw_deployment).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from glassbox.contract.api import Autoscaling, Capacity, ComputeResources, ScaleMetric
from glassbox.contract.server_args import MAX_WAITING_EXPLANATIONS

# The share of a core (and of the concurrency target) the autoscaler aims at: Knative's default
# container-concurrency-target-percentage, and the CPU a busy Python process should reach before another is added.
TARGET_UTILIZATION = 0.7
# The bounds of a derived CPU target, in percent of the request: below 10 the HPA would chase noise, above 80
# a replica is too busy to absorb a burst while another starts (KServe's own default is 80).
CPU_TARGET_BOUNDS = (10, 80)
# Cores one server process keeps busy: its computing holds the GIL.
BUSY_CORES_PER_PROCESS = 1.0


@dataclass(frozen=True)
class Scaling:
    """What a component's InferenceService says to its autoscaler, and how many requests its server holds waiting."""

    metric: ScaleMetric
    target: int | None
    container_concurrency: int | None  # None: not written (RawDeployment has no queue-proxy to enforce it)
    max_waiting: int


def cpu_cores(quantity: int | str) -> float:
    """A Kubernetes CPU quantity in cores: 2, "500m", "1.5"."""
    text = str(quantity).strip()
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    return float(text)


def cpu_target_percent(resources: ComputeResources, busy_cores: float = BUSY_CORES_PER_PROCESS) -> int:
    """The HPA's CPU target for a server that keeps `busy_cores` busy at most: 70% of what it can use, as a
    percent of its request (one busy core on a 2-core request reaches 50%, so the target is 35)."""
    request = cpu_cores(resources.cpu_request)
    limit = cpu_cores(resources.cpu_limit) if resources.cpu_limit is not None else request
    reachable = min(busy_cores, limit) / request * 100
    low, high = CPU_TARGET_BOUNDS
    return max(low, min(high, math.floor(TARGET_UTILIZATION * reachable)))


def waiting_room(capacity: Capacity, autoscaling: Autoscaling, raw_deployment: bool) -> int:
    """Requests a replica holds waiting: as said, or what the user's containerConcurrency leaves beside the
    workers, or one per worker where Knative's activator buffers the rest, a larger room where nothing does."""
    if capacity.max_waiting is not None:
        return capacity.max_waiting
    limit = autoscaling.container_concurrency
    if not raw_deployment and limit:
        return max(0, limit - capacity.workers)
    if raw_deployment or limit == 0:
        return MAX_WAITING_EXPLANATIONS
    return capacity.workers


def metric_of(autoscaling: Autoscaling, raw_deployment: bool) -> ScaleMetric:
    """The metric a component scales on: as the user chose (KEDA reads concurrency under RawDeployment, for
    one), else concurrency under Knative and cpu, what KServe's HPA reads, under RawDeployment."""
    if autoscaling.scale_metric is not None:
        return autoscaling.scale_metric
    return ScaleMetric.cpu if raw_deployment else ScaleMetric.concurrency


def scaling_of(autoscaling: Autoscaling, capacity: Capacity | None, resources: ComputeResources, raw_deployment: bool) -> Scaling:
    """The metric, target and containerConcurrency to write for a component; `capacity` None (the predictor)
    derives nothing, so only what the user wrote is written."""
    metric = metric_of(autoscaling, raw_deployment)
    target = autoscaling.scale_target
    if capacity is None:
        return Scaling(metric, target, None if raw_deployment else autoscaling.container_concurrency, 0)
    waiting = waiting_room(capacity, autoscaling, raw_deployment)
    if target is None and metric is ScaleMetric.concurrency:
        target = capacity.workers
    elif target is None and metric is ScaleMetric.cpu:
        target = cpu_target_percent(resources)
    limit = autoscaling.container_concurrency
    if limit is None:
        limit = capacity.workers + waiting
    return Scaling(metric, target, None if raw_deployment else limit, waiting)
