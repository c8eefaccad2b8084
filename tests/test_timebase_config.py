"""Time parsing/formatting (ISO 8601 with offsets, relative times, durations) and config
validation: bad input gets a clear error, never a traceback or a guess."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vstore.base.errors import ConfigError, UsageError
from vstore.base.timebase import (
    TimeRange,
    format_time,
    ns_to_ticks,
    parse_duration_ns,
    parse_time_ns,
    ticks_to_ns,
)
from vstore.store.config import load_config

T = 1_737_075_600_000_000_000  # 2025-01-17T01:00:00Z


@pytest.mark.parametrize(
    "text",
    [
        "2025-01-17T08:00:00+07:00",
        "2025-01-17T01:00:00Z",
        "2025-01-17T01:00:00+00:00",
        "2025-01-16T20:00:00-05:00",
        "2025-01-17T01:00:00.000Z",
    ],
)
def test_iso_with_offsets_are_the_same_instant(text):
    assert parse_time_ns(text) == T


def test_relative_and_now():
    assert parse_time_ns("now", now_ns=T) == T
    assert parse_time_ns("-15m", now_ns=T) == T - 15 * 60 * 10**9
    assert parse_time_ns("-1h30m", now_ns=T) == T - 5400 * 10**9


@pytest.mark.parametrize(
    "bad", ["2025-01-17T08:00:00", "yesterday", "", "2025-13-01T00:00Z", "-15x"]
)
def test_bad_times_are_usage_errors(bad):
    with pytest.raises(UsageError):
        parse_time_ns(bad, now_ns=T)


def test_format_round_trips_with_offset():
    assert format_time(T) == "2025-01-17T01:00:00.000+00:00"
    assert parse_time_ns(format_time(T + 123_000_000)) == T + 123_000_000


@pytest.mark.parametrize(
    "text,ns",
    [
        ("90s", 90 * 10**9),
        ("15m", 900 * 10**9),
        ("1h30m", 5400 * 10**9),
        ("30d", 30 * 86400 * 10**9),
        ("2.5", 2_500_000_000),
        ("250ms", 250_000_000),
    ],
)
def test_durations(text, ns):
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize("bad", ["", "x", "1h-3m", "-5m", "5 parsecs"])
def test_bad_durations(bad):
    with pytest.raises(UsageError):
        parse_duration_ns(bad)


def test_inverted_and_empty_ranges_are_refused():
    with pytest.raises(UsageError, match="inverted"):
        TimeRange(T, T)
    with pytest.raises(UsageError):
        TimeRange(T, T - 1)


@given(
    st.integers(-(2**40), 2**40),
    st.sampled_from([(1, 90000), (1, 1000), (1, 48000), (1, 8000), (1001, 30000), (1, 25)]),
)
def test_ticks_round_trip_exactly(ticks, tb):
    assert ns_to_ticks(ticks_to_ns(ticks, *tb), *tb) == ticks


def test_config_defaults_without_file(tmp_path):
    cfg = load_config(tmp_path / "vstore.toml")
    assert cfg.camera("any").segment_duration_s == 60.0


def test_config_per_camera_override(tmp_path):
    p = tmp_path / "vstore.toml"
    p.write_text(
        "[store]\nsegment_duration_s = 30\n[cameras.gate-1]\nfsync_interval_s = 2\n"
        'url = "rtsp://x/y"\n'
    )
    cfg = load_config(p)
    assert cfg.camera("gate-1").segment_duration_s == 30.0
    assert cfg.camera("gate-1").fsync_interval_s == 2.0
    assert cfg.camera("gate-1").url == "rtsp://x/y"
    assert cfg.camera("other").fsync_interval_s == 0.0


@pytest.mark.parametrize(
    "text,match",
    [
        ("[store]\nsegment_duration_s = 0\n", "segment_duration_s"),
        ("[store]\nsegment_durations = 5\n", "unknown setting"),
        ("[stor]\n", "unknown section"),
        ("[store\n", "vstore.toml"),
        ('[store]\nqueue_packets = "many"\n', "integer"),
        ("[store]\ndrop_page_cache = 1\n", "true or false"),
        ("[cameras.'bad id']\n", "camera id"),
        ("[tier]\nparallel = 0\n", "parallel"),
        ('[tier]\nmax_rate = "1KB"\n', "max_rate"),
        ('[tier]\nmax_rate = "fast"\n', "max_rate: bad rate 'fast': use auto, none"),
        ('[tier]\nlegal_hold = "yes"\n', "legal_hold"),
        ('[tier.cameras.lobby]\nolder_than = "soon"\n', "tier.cameras.lobby"),
        ('[tier.cameras.lobby]\nolder = "1d"\n', "unknown setting"),
        ('[retention]\ntiered_max_age = "forever"\n', "retention"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, text, match):
    p = tmp_path / "vstore.toml"
    p.write_text(text)
    with pytest.raises((ConfigError, UsageError), match=match):
        load_config(p)


def test_template_parses(tmp_path):
    from vstore.store.config import CONFIG_TEMPLATE

    p = tmp_path / "vstore.toml"
    p.write_text(CONFIG_TEMPLATE)
    assert load_config(p).defaults.segment_duration_s == 60.0
    # Its [cluster] section, uncommented as someone setting up a node would, is valid.
    lines = CONFIG_TEMPLATE.splitlines()
    at = lines.index("# [cluster]")
    block = []
    for line in lines[at:]:
        if not line.startswith("# ") or line.startswith("#  "):
            if block and not line.startswith("#  "):
                break
            continue
        block.append(line[2:])
    p.write_text("\n".join(block) + "\n")
    c = load_config(p).cluster
    assert (c.name, c.prefix, c.lease_ttl_s, c.deletion_delay_s) == ("node1", "/vstore/city", 10,
                                                                     600.0)  # fmt: skip
    assert c.pins == {"junction-1": "node2"} and len(c.etcd) == 3
    p.write_text('[cluster]\netcd = ["http://e:2379"]\ndeletion_delay_s = -1\n')
    with pytest.raises(ConfigError, match="deletion_delay_s"):
        load_config(p)
    # A delay shorter than the retention runs is allowed, and named for what it risks.
    p.write_text('[retention]\nevery = "10m"\n[cluster]\netcd = ["http://e:2379"]\n'
                 'prefix = "/vstore/city"\ndeletion_delay_s = 60\n')  # fmt: skip
    assert any("shorter than [retention] every" in n for n in load_config(p).notes)


def test_tier_and_tiered_retention_settings(tmp_path):
    p = tmp_path / "vstore.toml"
    p.write_text(
        '[tier]\nolder_than = "2d"\nparallel = 4\nmax_rate = "20MB"\ncache = "0"\n'
        '[tier.groups.traffic]\ncameras = ["x-1", "x-2"]\nolder_than = "12h"\n'
        '[tier.cameras.x-2]\nolder_than = "1h"\n'
        '[retention]\nmax_age = "30d"\ntiered_max_age = "365d"\n'
        '[retention.cameras.lobby]\nmax_age = "90d"\n'
    )
    cfg = load_config(p)
    h = 3600 * 10**9
    assert cfg.tier.older_than_for("x-2") == h  # the camera's own beats its group's
    assert cfg.tier.older_than_for("x-1") == 12 * h
    assert cfg.tier.older_than_for("lobby") == 48 * h
    assert (cfg.tier.parallel, cfg.tier.max_rate_bytes, cfg.tier.cache_bytes) == (4, 20e6, 0)
    p.write_text('[tier]\nmax_rate = "none"\n')
    assert load_config(p).tier.max_rate_bytes == 0
    p.write_text("[tier]\n")
    assert load_config(p).tier.max_rate_bytes == "auto"
    pol = cfg.retention.policy("any")
    assert pol.age_limit_ns(False) == 30 * 24 * h and pol.age_limit_ns(True) == 365 * 24 * h
    # A camera's own policy inherits the store's tiered age unless it sets one.
    assert cfg.retention.policy("lobby").age_limit_ns(True) == 365 * 24 * h


def test_one_definition_of_groups_serves_access_retention_and_tiering(tmp_path):
    """[retention.groups.X] and [tier.groups.X] take the cameras of [groups.X]; the old form
    that lists them in place is still read, with a note saying how to move it."""
    p = tmp_path / "vstore.toml"
    p.write_text(
        '[groups.traffic]\ncameras = ["x-1", "x-2"]\n'
        '[retention.groups.traffic]\nmax_age = "3d"\n'
        '[tier.groups.traffic]\nolder_than = "12h"\n'
    )
    cfg = load_config(p)
    h = 3600 * 10**9
    assert cfg.groups == {"traffic": ("x-1", "x-2")}
    assert cfg.retention.policy("x-2").max_age_ns == 72 * h
    assert cfg.tier.older_than_for("x-1") == 12 * h
    assert cfg.retention.policy("lobby").max_age_ns is None and not cfg.notes
    # The old form: read, and noted.
    p.write_text('[retention.groups.old]\ncameras = ["lobby"]\nmax_age = "9d"\n')
    cfg = load_config(p)
    assert cfg.retention.policy("lobby").max_age_ns == 9 * 24 * h
    assert len(cfg.notes) == 1 and "move the list to [groups.old]" in cfg.notes[0]
    # A policy group no [groups] defines, or a list that contradicts it: a clear error.
    p.write_text('[retention.groups.nowhere]\nmax_age = "9d"\n')
    with pytest.raises(ConfigError, match=r"no \[groups.nowhere\]"):
        load_config(p)
    p.write_text(
        '[groups.t]\ncameras = ["a"]\n[tier.groups.t]\ncameras = ["b"]\nolder_than = "1d"\n'
    )
    with pytest.raises(ConfigError, match="differ"):
        load_config(p)
