"""The CPU count torch threads default to: affinity mask capped by a cgroup quota."""

from __future__ import annotations

import os

import pytest

from capfleet.cpus import available_cpus, busy_note, cgroup_cpu_limit


@pytest.mark.parametrize(
    ("cpu_max", "expected"), [("max 100000", None), ("150000 100000", 2), ("50000 100000", 1), ("400000 100000", 4)]
)
def test_cgroup_v2_quota_rounds_up_to_whole_cpus(tmp_path, cpu_max, expected):
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    assert cgroup_cpu_limit(str(tmp_path / "cpu.max"), ("/nonexistent", "/nonexistent")) == expected


def test_cgroup_v1_quota_and_no_cgroup(tmp_path):
    (tmp_path / "quota").write_text("250000\n")
    (tmp_path / "period").write_text("100000\n")
    v1 = (str(tmp_path / "quota"), str(tmp_path / "period"))
    assert cgroup_cpu_limit(str(tmp_path / "absent"), v1) == 3
    (tmp_path / "quota").write_text("-1\n")
    assert cgroup_cpu_limit(str(tmp_path / "absent"), v1) is None
    assert cgroup_cpu_limit(str(tmp_path / "absent"), (str(tmp_path / "a"), str(tmp_path / "b"))) is None


def test_available_cpus_follows_the_affinity_mask():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no affinity control on this platform")
    mask = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(mask)})
        assert available_cpus() == 1
    finally:
        os.sched_setaffinity(0, mask)


@pytest.mark.parametrize(("load", "threads", "noted"), [(9.0, 2, True), (0.5, 2, False), (9.0, 1, False)])
def test_a_busy_machine_suggests_one_thread(monkeypatch, load, threads, noted):
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr("capfleet.cpus.available_cpus", lambda: 2)
    note = busy_note(threads)
    assert (note is not None and "--threads 1" in note and "load 9.0 on 2 CPUs" in note) if noted else note is None
