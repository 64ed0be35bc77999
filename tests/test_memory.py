"""The memory `--model-processes` auto may count on: MemAvailable, capped by a container's cgroup limit."""

from __future__ import annotations

from capfleet.memory import available_memory, cgroup_memory_room

ABSENT = ("/nonexistent/limit", "/nonexistent/usage", "/nonexistent/stat", "inactive_file")


def _files(folder, limit: str, usage: str, stat: str = "", field: str = "inactive_file") -> tuple[str, ...]:
    (folder / "limit").write_text(limit + "\n")
    (folder / "usage").write_text(usage + "\n")
    (folder / "stat").write_text(stat)
    return str(folder / "limit"), str(folder / "usage"), str(folder / "stat"), field


def test_the_cgroup_v2_room_is_its_limit_less_its_usage(tmp_path):
    assert cgroup_memory_room(_files(tmp_path, "4000000000", "1000000000"), ABSENT) == 3_000_000_000
    assert cgroup_memory_room(_files(tmp_path, "max", "1000000000"), ABSENT) is None
    assert cgroup_memory_room(_files(tmp_path, "100", "500"), ABSENT) == 0  # over its limit already


def test_the_page_cache_a_container_can_drop_counts_as_room(tmp_path):
    """Reading a dataset fills the cgroup's usage with page cache; its inactive files are reclaimed, not fatal."""
    stat = "anon 900000000\nfile 2500000000\nactive_file 500000000\ninactive_file 2000000000\n"
    assert cgroup_memory_room(_files(tmp_path, "4000000000", "3500000000", stat), ABSENT) == 2_500_000_000
    v1_stat = "cache 2500000000\ninactive_file 7\ntotal_inactive_file 2000000000\n"
    v1 = _files(tmp_path, "4000000000", "3500000000", v1_stat, "total_inactive_file")
    assert cgroup_memory_room(ABSENT, v1) == 2_500_000_000
    assert cgroup_memory_room(_files(tmp_path, "4000000000", "3500000000", "garbage\n"), ABSENT) == 500_000_000


def test_cgroup_v1_without_a_limit_and_no_cgroup(tmp_path):
    assert cgroup_memory_room(ABSENT, _files(tmp_path, "9223372036854771712", "5")) is None
    assert cgroup_memory_room(ABSENT, _files(tmp_path, "2048", "1024")) == 1024
    assert cgroup_memory_room(ABSENT, ABSENT) is None


def test_a_container_limit_caps_the_hosts_free_memory(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       64000000 kB\nMemAvailable:   50000000 kB\n")
    limited = _files(tmp_path, "4000000000", "3000000000")
    assert available_memory(str(meminfo), v2=limited, v1=ABSENT) == 1_000_000_000
    assert available_memory(str(meminfo), v2=ABSENT, v1=ABSENT) == 50_000_000 * 1024
    assert available_memory(str(tmp_path / "missing"), v2=ABSENT, v1=ABSENT) is None
