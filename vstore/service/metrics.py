"""`GET /metrics` for Prometheus: what the node's recorders, disk and HTTP API are doing.

Recording figures are read from the engine at scrape time (each writer already counts its
packets, bytes and drops; ``store.io_stats`` keeps fsync latencies), so recording pays
nothing for them. HTTP requests are counted by the API's middleware. One registry per node.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from vstore.service.node import Node
from vstore.store import io_stats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Writer counters of drops, by the reason the metric's label gives.
_DROPS = {
    "before_keyframe": "dropped_before_keyframe",
    "no_codec_parameters": "dropped_no_params",
    "no_timestamp": "dropped_no_timestamp",
    "disk_full": "dropped_disk_full",
}


class _NodeCollector:
    """Reads the node at each scrape."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def describe(self) -> list[Metric]:
        return []  # (collected at scrape time only: the camera set changes)

    def collect(self) -> Iterator[Metric]:
        node = self.node
        cams = node.recording()
        yield GaugeMetricFamily(
            "vstore_cameras_recording", "Cameras whose source is connected now", value=len(cams)
        )
        packets = CounterMetricFamily(
            "vstore_packets_written", "Packets stored, per camera", labels=["camera"]
        )
        written = CounterMetricFamily(
            "vstore_bytes_written", "Footage bytes stored, per camera", labels=["camera"]
        )
        dropped = CounterMetricFamily(
            "vstore_ingest_dropped_packets",
            "Packets not stored, per camera and reason",
            labels=["camera", "reason"],
        )
        reconnects = CounterMetricFamily(
            "vstore_source_reconnects", "Reconnections to a camera's source", labels=["camera"]
        )
        lag = GaugeMetricFamily(
            "vstore_ingest_lag_seconds",
            "Seconds between now and the end of a camera's durable footage",
            labels=["camera"],
        )
        now_ns = node.store.clock.wall_ns()
        for cam in node.recorded():
            st: dict[str, Any] = node.camera_status(cam)
            w = st.get("writer") or {}
            packets.add_metric([cam], w.get("packets", 0))
            written.add_metric([cam], w.get("bytes", 0))
            for reason, key in _DROPS.items():
                dropped.add_metric([cam, reason], w.get(key, 0))
            dropped.add_metric([cam, "queue_full"], st.get("dropped_queue_full", 0))
            dropped.add_metric([cam, "fenced"], st.get("dropped_fenced", 0))
            reconnects.add_metric([cam], st.get("reconnects", 0))
            if st.get("durable_end_ns") is not None:
                lag.add_metric([cam], max(0.0, (now_ns - st["durable_end_ns"]) / 1e9))
        yield from (packets, written, dropped, reconnects, lag)
        agent = node.cluster
        if agent is not None:
            yield GaugeMetricFamily(
                "vstore_cluster_lease_valid",
                "1 while this member surely holds its lease (it records only then)",
                value=1 if agent.member.valid() else 0,
            )
            yield GaugeMetricFamily(
                "vstore_cluster_cameras_owned",
                "Cameras this member holds",
                value=len(agent.owned()),
            )
            yield CounterMetricFamily(
                "vstore_cluster_claims", "Cameras this member took", value=agent.claimed
            )
            yield CounterMetricFamily(
                "vstore_cluster_handovers", "Cameras this member handed over", value=agent.handovers
            )
            yield CounterMetricFamily(
                "vstore_cluster_lease_losses", "Leases this member lost", value=agent.member.losses
            )
            yield GaugeMetricFamily(
                "vstore_cluster_deleter",
                "1 while this member is the cluster's elected deleter of tiered footage",
                value=1 if agent.retention_lead.epoch() else 0,
            )
            yield GaugeMetricFamily(
                "vstore_cluster_assigner",
                "1 while this member is the cluster's elected assigner (it plans who records "
                "which camera, balanced by bitrate)",
                value=1 if agent.assign_lead.epoch() else 0,
            )
            yield GaugeMetricFamily(
                "vstore_cluster_load_bits_per_second",
                "The bitrate of the cameras this member records, as it last published it",
                value=agent.load_bps,
            )
            yield CounterMetricFamily(
                "vstore_cluster_plan_moves",
                "Cameras this member, as the assigner, moved between members to even out load",
                value=agent.assigner.moves,
            )
        failed = CounterMetricFamily(
            "vstore_jobs_failed", "Jobs that failed, by job (tier, retention, ...)", labels=["job"]
        )
        for name, n in sorted(node.jobs.failed_counts().items()):
            failed.add_metric([name], n)
        yield failed
        disk = node.store.disk_usage()
        yield GaugeMetricFamily(
            "vstore_disk_free_bytes", "Free bytes on the store's file system", value=disk.free_bytes
        )
        yield GaugeMetricFamily(
            "vstore_disk_total_bytes", "Size of the store's file system", value=disk.total_bytes
        )
        deleted = CounterMetricFamily(
            "vstore_deleted_segments",
            "Footage segments deleted, by reason (retention's rule, a replaced import...)",
            labels=["reason"],
        )
        deleted_bytes = CounterMetricFamily(
            "vstore_deleted_bytes", "Footage bytes deleted, by reason", labels=["reason"]
        )
        for reason, (n, nbytes) in sorted(io_stats.DELETED.snapshot().items()):
            deleted.add_metric([reason], n)
            deleted_bytes.add_metric([reason], nbytes)
        yield from (deleted, deleted_bytes)
        segs, nbytes = io_stats.TIER_BACKLOG.value
        yield GaugeMetricFamily(
            "vstore_tier_backlog_segments",
            "Segments due for the tier that its last run did not move",
            value=segs,
        )
        yield GaugeMetricFamily(
            "vstore_tier_backlog_bytes", "Bytes of those segments", value=nbytes
        )
        buckets, total_s, _count = io_stats.FSYNC.snapshot()
        yield HistogramMetricFamily(
            "vstore_fsync_seconds",
            "Latency of footage fsyncs",
            buckets=[(_le(b), n) for b, n in buckets],
            sum_value=total_s,
        )


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class Metrics:
    """The node's registry: the collector above and the HTTP API's own counters."""

    def __init__(self, node: Node) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_NodeCollector(node))  # type: ignore[arg-type]
        self.requests = Counter(
            "vstore_http_requests",
            "HTTP requests answered, by route and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vstore_http_request_seconds",
            "Time to answer an HTTP request (for clips: to the last byte)",
            ["route"],
            registry=self.registry,
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
