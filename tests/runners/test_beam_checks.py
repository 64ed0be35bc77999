"""Which Beam runners see the launcher's files, and the refusals of paths their workers cannot reach."""

from __future__ import annotations

import fsspec
import pytest
from typer.testing import CliRunner

from capfleet.cli import app
from capfleet.config import ConfigError, RunConfig
from capfleet.runners.beam_checks import check_item_paths, check_paths_for_runner, workers_share_filesystem
from tests.image_zoo import write_noise_images

SHARED = [
    ("DirectRunner", None, None, None),
    ("direct", None, None, None),
    ("FnApiRunner", "DOCKER", None, None),  # capfleet's DirectRunner: in-process, ignores the environment
    ("FlinkRunner", None, None, None),  # --flink_master defaults to [auto]: an embedded cluster
    ("FlinkRunner", None, "[local]", None),
    ("FlinkRunner", "PROCESS", "[auto]", None),  # processes start on this machine
    ("FlinkRunner", "LOOPBACK", "flink-jobmanager:8081", None),  # workers run in the launcher
    ("flink", "beam:env:embedded_python_loopback:v1", "http://flink:8081", None),
    ("SparkRunner", None, None, None),  # --spark_master_url defaults to local[4]
    ("SparkRunner", None, None, "local"),
    ("SparkRunner", "LOOPBACK", None, "spark://master:7077"),
    ("PortableRunner", "LOOPBACK", None, None),
    ("PrismRunner", None, None, None),
]
NOT_SHARED = [
    ("DataflowRunner", None, None, None),
    ("DataflowRunner", "LOOPBACK", None, None),  # Dataflow ignores it: workers are always VMs
    ("dataflow", None, None, None),
    ("apache_beam.runners.dataflow.dataflow_runner.DataflowRunner", None, None, None),
    ("TestDataflowRunner", None, None, None),
    ("FlinkRunner", "DOCKER", "[auto]", None),  # containers on this machine have their own files
    ("FlinkRunner", None, "flink-jobmanager:8081", None),  # a remote cluster defaults to DOCKER
    ("FlinkRunner", "PROCESS", "flink-jobmanager:8081", None),
    ("FlinkRunner", "EXTERNAL", "flink-jobmanager:8081", None),
    ("FlinkRunner", "beam:env:docker:v1", "flink-jobmanager:8081", None),
    ("SparkRunner", None, None, "spark://master:7077"),
    ("SparkRunner", "DOCKER", None, "local[4]"),
    ("SparkRunner", "PROCESS", None, "spark://master:7077"),
    ("PortableRunner", None, None, None),
    ("PortableRunner", "PROCESS", None, None),
    ("PrismRunner", "DOCKER", None, None),
]


@pytest.mark.parametrize(("runner", "env", "flink", "spark"), SHARED)
def test_workers_in_or_beside_the_launcher_share_its_files(runner, env, flink, spark):
    assert workers_share_filesystem(runner, env, flink_master=flink, spark_master=spark)


@pytest.mark.parametrize(("runner", "env", "flink", "spark"), NOT_SHARED)
def test_remote_or_containerised_workers_do_not(runner, env, flink, spark):
    assert not workers_share_filesystem(runner, env, flink_master=flink, spark_master=spark)


def _config(inputs, output) -> RunConfig:
    return RunConfig(inputs=[str(i) for i in inputs], output=str(output), captioner="none", scorer="none")


FLINK_DOCKER = {"runner": "FlinkRunner", "environment_type": "DOCKER", "flink_master": "jm:8081"}
DATAFLOW = {"runner": "DataflowRunner"}


def test_local_output_is_refused_naming_the_path_and_what_to_use(tmp_path):
    with pytest.raises(ConfigError) as refused:
        check_paths_for_runner(_config(["gs://b/photos"], tmp_path / "out"), **FLINK_DOCKER)
    message = str(refused.value)
    assert str(tmp_path / "out") in message and "FlinkRunner DOCKER workers" in message
    assert "gs://" in message and "s3://" in message and "file:///PATH" in message and "\n" not in message


def test_local_input_folder_and_image_are_refused(tmp_path):
    write_noise_images(tmp_path / "imgs", 1)
    image = next((tmp_path / "imgs").iterdir())
    for spec in (tmp_path / "imgs", image):
        with pytest.raises(ConfigError, match=f"input {spec} is a local path that DataflowRunner workers cannot read"):
            check_paths_for_runner(_config([spec], "gs://b/out"), **DATAFLOW)


def test_a_local_file_list_of_urls_is_fine_but_not_one_of_local_paths(tmp_path):
    urls = tmp_path / "urls.txt"
    urls.write_text("gs://b/a.jpg\thello\nhttps://example.com/b.png\n")
    check_paths_for_runner(_config([urls], "gs://b/out"), **DATAFLOW)  # the launcher reads the list
    paths = tmp_path / "paths.txt"
    paths.write_text("gs://b/a.jpg\nimgs/c.jpg\n")
    with pytest.raises(ConfigError, match=f"input image {tmp_path / 'imgs/c.jpg'} .* \\(listed in {paths}\\)"):
        check_paths_for_runner(_config([paths], "gs://b/out"), **DATAFLOW)


def test_file_urls_declare_a_shared_mount_which_dataflow_never_has():
    shared = _config(["file:///nfs/photos"], "file:///nfs/captions")
    check_paths_for_runner(shared, **FLINK_DOCKER)
    check_item_paths(["file:///nfs/photos/a.jpg"], **FLINK_DOCKER)
    with pytest.raises(ConfigError, match="-o file:///nfs/captions is a local folder"):
        check_paths_for_runner(shared, **DATAFLOW)
    with pytest.raises(ConfigError, match="input image file:///nfs/photos/a.jpg"):
        check_item_paths(["gs://b/ok.jpg", "file:///nfs/photos/a.jpg"], **DATAFLOW)


def test_runners_sharing_the_files_accept_local_paths(tmp_path):
    local = _config([tmp_path / "imgs"], tmp_path / "out")
    check_paths_for_runner(local, runner="FlinkRunner", environment_type="LOOPBACK", flink_master="jm:8081")
    check_paths_for_runner(local, runner="SparkRunner", spark_master="local[2]")
    check_item_paths([str(tmp_path / "a.jpg")], runner="FnApiRunner")


cli = CliRunner()
FLINK_ARGS = ["--runner", "beam", "--beam-runner", "FlinkRunner", "--flink_master=jm:8081", "--environment_type=DOCKER"]


def test_cli_refuses_a_local_output_on_remote_workers_and_writes_nothing(tmp_path):
    pytest.importorskip("apache_beam")
    write_noise_images(tmp_path / "imgs", 2)
    args = ["caption", str(tmp_path / "imgs"), "-o", str(tmp_path / "out"), "--captioner", "none", "--scorer", "none"]
    result = cli.invoke(app, [*args, *FLINK_ARGS])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"error: -o {tmp_path / 'out'} is a local folder that FlinkRunner DOCKER workers" in result.output
    assert not (tmp_path / "out").exists()


def test_cli_refuses_local_inputs_before_writing_the_remote_output(tmp_path):
    pytest.importorskip("apache_beam")
    write_noise_images(tmp_path / "imgs", 2)
    out = "memory://capfleet-beam-checks/out"
    args = ["caption", str(tmp_path / "imgs"), "-o", out, "--captioner", "none", "--scorer", "none"]
    result = cli.invoke(
        app, [*args, "--runner", "beam", "--beam-runner", "SparkRunner", "--spark_master_url=spark://m:7077"]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"error: input {tmp_path / 'imgs'} is a local path that SparkRunner workers cannot read" in result.output
    assert not fsspec.filesystem("memory").exists("/capfleet-beam-checks")


def test_local_paths_inside_a_remote_file_list_are_refused_before_submission(tmp_path):
    pytest.importorskip("apache_beam")
    from capfleet.runners.beam import run_beam

    memory = fsspec.filesystem("memory")
    memory.pipe("/capfleet-beam-checks-list/images.txt", f"{tmp_path / 'a.jpg'}\n".encode())
    config = _config(["memory://capfleet-beam-checks-list/images.txt"], "memory://capfleet-beam-checks-list/out")
    try:
        with pytest.raises(ConfigError, match=f"input image {tmp_path / 'a.jpg'} .* rerun with --overwrite"):
            run_beam(config, ["--project=p"], "DataflowRunner")
    finally:
        memory.rm("/capfleet-beam-checks-list", recursive=True)
