"""Prometheus metrics: mgmt's names where mgmt has them, pymgmt's own beside them.

Counted from the events as they come (`emit` adds to a few dicts: no lock,
no import, nothing a drift repair waits for) and turned into metric families
by prometheus_client only when ``/metrics`` is scraped.

mgmt's (``prometheus/prometheus.go``), with its labels:

  mgmt_checkapply_total{kind,apply,eventful,errorful}  counter: each check(+apply);
      apply: not noop; eventful: it changed (or, in noop, would change)
      something; errorful: it failed
  mgmt_resources{kind}               gauge: resources in the running graph
  mgmt_failures{kind,failure}        gauge: resources failing now; failure is
                                     ``soft`` (a retry is scheduled) or ``hard``
  mgmt_failures_total{kind,failure}  counter: failures so far
  mgmt_graph_start_time_seconds      gauge: when the running graph was swapped in

pymgmt's own:

  pymgmt_drift_repairs_total{kind}   counter: the system moved by itself, put back
  pymgmt_repair_latency_seconds      histogram: the check and apply of each repair
  pymgmt_converged                   gauge: 1 while every resource is as wanted
                                     and nothing is being done, else 0
  pymgmt_resources_state{state}      gauge: resources pending, applying, converged, failed
  pymgmt_info{version}               gauge: always 1

Every series of a kind in the graph exists from the start, at 0 (mgmt
issue 259: a series that appears only on the first failure breaks
``rate()`` and alerts). The exposition is Prometheus text format 0.0.4,
whatever the scraper asks for: OpenMetrics cannot carry mgmt's counter
``mgmt_failures_total`` beside its gauge ``mgmt_failures``.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from .._version import __version__
from ..report.events import (
    Applying,
    Checked,
    Converged,
    Event,
    Failed,
    GraphStarted,
    GraphSwapped,
    Settled,
)

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from ..graph.model import Graph

#: upper bounds of the repair-latency buckets (s): a repair by inotify takes
#: about a millisecond, a package or a service far longer
LATENCY_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
LATENCY_BUCKETS += (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Failure = Literal["soft", "hard"]
_BOOL = ("false", "true")


class Metrics:
    """The counters behind ``/metrics``: a reporter (`emit`) and a graph observer."""

    def __init__(
        self, *, noop: bool, states: Callable[[], Mapping[str, int]] | None = None
    ) -> None:
        """`states`: resources per live state (pending, applying, ...), read at each scrape."""
        self.apply = _BOOL[not noop]
        self.states = states
        #: (kind, apply, eventful, errorful) -> count
        self.checkapply: Counter[tuple[str, str, str, str]] = Counter()
        self.resources: Counter[str] = Counter()
        self.failures_total: Counter[tuple[str, Failure]] = Counter()
        #: vertex -> how it is failing now
        self.failing: dict[str, Failure] = {}
        self.drift_repairs: Counter[str] = Counter()
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last: +Inf
        self.latency_sum = 0.0
        self.graph_start_time = 0.0
        self.converged = False
        #: vertex name (as in events) -> its kind
        self.kinds: dict[str, str] = {}

    # -- fed by the engine ------------------------------------------------------------

    def graph_swapped(self, graph: Graph[Any]) -> None:
        """The running graph changed: count its kinds, create their series at 0."""
        # named as in events: str(resource) (an autogroup's name lists its members)
        self.kinds = {str(res): k[0] for k, res in graph.vertices.items()}
        self.resources = Counter(k[0] for k in graph.vertices)
        self.failing = {v: f for v, f in self.failing.items() if v in self.kinds}
        for kind in self.resources:
            for eventful in _BOOL:
                for errorful in _BOOL:
                    self.checkapply[(kind, self.apply, eventful, errorful)] += 0
            for failure in ("soft", "hard"):
                self.failures_total[(kind, failure)] += 0
            self.drift_repairs[kind] += 0

    def emit(self, event: Event) -> None:
        if isinstance(event, Checked):
            self._checked(event)
        elif isinstance(event, Failed):
            self._failed(event)
        elif isinstance(event, Applying):
            self.converged = False
        elif isinstance(event, GraphStarted | GraphSwapped):
            self.graph_start_time = time.time()
            self.converged = False
        elif isinstance(event, Settled):
            self.converged = not event.failed and not event.would_change
        elif isinstance(event, Converged):
            self.converged = not self.failing

    def _kind(self, vertex: str) -> str:
        return self.kinds.get(vertex) or vertex.partition("[")[0].lower()

    def _checked(self, e: Checked) -> None:
        kind = self._kind(e.vertex)
        eventful = e.applied or e.noop
        self.checkapply[(kind, self.apply, _BOOL[eventful], "false")] += 1
        self.failing.pop(e.vertex, None)
        if eventful:
            self.converged = False
        if e.drift:
            self.drift_repairs[kind] += 1
            self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, e.seconds)] += 1
            self.latency_sum += e.seconds

    def _failed(self, e: Failed) -> None:
        self.converged = False
        if "[" not in e.vertex:
            return  # an observer's failure ("observer exporter"): no resource of a kind
        kind = self._kind(e.vertex)
        if e.phase in ("check", "apply"):
            self.checkapply[(kind, self.apply, _BOOL[e.phase == "apply"], "true")] += 1
        failure: Failure = "soft" if e.retry_in is not None else "hard"
        self.failures_total[(kind, failure)] += 1
        self.failing[e.vertex] = failure

    # -- read at each scrape ------------------------------------------------------------

    def registry(self) -> CollectorRegistry:
        """A registry of these metrics and the process's (CPU, memory, fds)."""
        from prometheus_client import PlatformCollector, ProcessCollector
        from prometheus_client.registry import CollectorRegistry

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        return registry


class _Collector:
    """Turns the `Metrics` counts into prometheus_client metric families, at each scrape."""

    def __init__(self, m: Metrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
        )

        m = self.m
        checkapply = CounterMetricFamily(
            "mgmt_checkapply_total",
            "Checks (and applies) of resources, by kind and outcome",
            labels=["kind", "apply", "eventful", "errorful"],
        )
        for labels, n in sorted(m.checkapply.items()):
            checkapply.add_metric(list(labels), n)
        yield checkapply
        resources = GaugeMetricFamily(
            "mgmt_resources", "Resources in the running graph, by kind", labels=["kind"]
        )
        for kind, n in sorted(m.resources.items()):
            resources.add_metric([kind], n)
        yield resources
        yield from self._failures()
        yield GaugeMetricFamily(
            "mgmt_graph_start_time_seconds",
            "When the running graph was swapped in (Unix time)",
            value=m.graph_start_time,
        )
        drift = CounterMetricFamily(
            "pymgmt_drift_repairs_total",
            "Resources the system moved away from what is wanted, put back",
            labels=["kind"],
        )
        for kind, n in sorted(m.drift_repairs.items()):
            drift.add_metric([kind], n)
        yield drift
        yield self._latency()
        yield GaugeMetricFamily(
            "pymgmt_converged",
            "1 while every resource is as wanted and nothing is being done",
            value=int(m.converged),
        )
        if m.states is not None:
            states = GaugeMetricFamily(
                "pymgmt_resources_state", "Resources by live state", labels=["state"]
            )
            for state, n in sorted(m.states().items()):
                states.add_metric([state], n)
            yield states
        info = GaugeMetricFamily("pymgmt_info", "The agent's version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info

    def _failures(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        m = self.m
        total = CounterMetricFamily(
            "mgmt_failures_total",
            "Failures of resources; soft: a retry was scheduled, hard: given up",
            labels=["kind", "failure"],
        )
        for (kind, failure), n in sorted(m.failures_total.items()):
            total.add_metric([kind, failure], n)
        yield total
        now = GaugeMetricFamily(
            "mgmt_failures",
            "Resources failing now; soft: a retry is scheduled, hard: given up",
            labels=["kind", "failure"],
        )
        failing = Counter((m.kinds.get(v, "?"), f) for v, f in m.failing.items())
        for kind in sorted(m.resources):
            for failure in ("soft", "hard"):
                now.add_metric([kind, failure], failing[(kind, failure)])
        yield now

    def _latency(self) -> Any:
        from prometheus_client.core import HistogramMetricFamily

        m = self.m
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), m.latency_counts, strict=True):
            running += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return HistogramMetricFamily(
            "pymgmt_repair_latency_seconds",
            "How long each drift repair took: the check that found it and the apply",
            buckets=buckets,
            sum_value=m.latency_sum,
        )


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The exposition (text format 0.0.4) and its content type."""
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
