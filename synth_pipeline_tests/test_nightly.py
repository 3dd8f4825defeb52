"""The nightly refresh as users run it: the daemon's schedule and sensor, at most one run at a
time, and a run interrupted while publishing that leaves the published output as it was."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.storage.dagster_run import DagsterRun

from synth_pipeline.config import SCHOOL_METADATA
from synth_pipeline.evaluation.nightly import daemon_refresh, write_config
from synth_pipeline.pipeline import (
    JOB_NAME,
    LOAD_JOB_NAME,
    REFRESH_SENSOR_SECONDS,
    build_definitions,
    refresh_request,
)
from synth_pipeline_tests.conftest import count_orphans, tiny_config

PROJECT = Path(__file__).resolve().parents[1]


def _published_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


@pytest.mark.slow
def test_the_daemon_loads_refreshes_and_leaves_the_output_alone_when_nothing_changed(tiny_school_db, school_metadata,
                                                                                     tmp_path):
    """dagster-daemon with the schedule (every minute) and the sensor on: the first tick's
    load_real run, the sensor's synthesize run, a sound published database; the next tick
    loads again, finds nothing stale, and leaves the output byte-identical."""
    out = tmp_path / "out"
    config = write_config(tmp_path / "config.yaml", tiny_school_db, out, metadata=SCHOOL_METADATA, steps=5)
    first_output: dict[str, bytes] = {}

    def second_load_settled(runs) -> bool:
        if not first_output and any(job == JOB_NAME and status == "SUCCESS" for job, status, *_ in runs):
            first_output.update(_published_files(out))
        loads = [r for r in runs if r[0] == LOAD_JOB_NAME and r[1] == "SUCCESS"]
        return len(loads) >= 2 and time.time() - loads[1][4] > 2 * REFRESH_SENSOR_SECONDS + 10

    refresh = daemon_refresh(config, tmp_path / "home", timeout=720, until=second_load_settled)
    assert [(job, status) for job, status, *_ in refresh.runs] == [
        (LOAD_JOB_NAME, "SUCCESS"), (JOB_NAME, "SUCCESS"), (LOAD_JOB_NAME, "SUCCESS")], refresh.daemon_log
    assert {"synthetic.duckdb", "real.duckdb", "report.json", "report.html", "metadata.json"} <= set(first_output)
    assert _published_files(out) == first_output  # nothing changed: nothing re-sampled or re-published
    assert not (out / ".staging").exists()
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["totals"]["fk_violations"] == 0
    with duckdb.connect(str(out / "synthetic.duckdb"), read_only=True) as con:
        for name in school_metadata.tables:
            assert con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] > 0, name
        assert sum(count_orphans(con, rel) for rel in school_metadata.relationships) == 0


def test_a_tick_or_a_refresh_request_during_an_active_run_is_skipped_with_its_reason(school_metadata, tmp_path):
    defs = build_definitions(school_metadata, tiny_config(tmp_path, tmp_path / "school.duckdb"))
    schedule = defs.resolve_schedule_def("nightly_refresh")
    instance = dg.DagsterInstance.local_temp(tempdir=str(tmp_path))

    def tick():
        with dg.build_schedule_context(instance=instance) as context:
            return schedule.evaluate_tick(context)

    assert len(tick().run_requests) == 1 and isinstance(refresh_request(instance, "load-1"), dg.RunRequest)
    for job, run_id in ((JOB_NAME, "a1b2c3d4-0000-0000-0000-000000000000"),
                        (LOAD_JOB_NAME, "e5f6a7b8-0000-0000-0000-000000000000")):
        instance.add_run(DagsterRun(job_name=job, run_id=run_id, status=dg.DagsterRunStatus.STARTED))
        skipped = tick()
        assert not skipped.run_requests and f"{job} run {run_id[:8]} is started" in skipped.skip_message
        request = refresh_request(instance, "load-2")
        if job == JOB_NAME:  # the sensor skips while synthesize runs (it fires again when that run succeeds)
            assert isinstance(request, dg.SkipReason) and "synthesize run a1b2c3d4 is started" in request.skip_message
        instance.report_run_canceled(instance.get_run_by_id(run_id))
    assert len(tick().run_requests) == 1 and isinstance(refresh_request(instance, "load-3"), dg.RunRequest)


KILLED_RUN = """
import os, signal, sys
import synth_pipeline.publish as publish
from synth_pipeline.config import config_from_yaml
from synth_pipeline.runner import run_pipeline

def killed(stage, out, **_):  # everything is written to the staging folder: the process dies here
    assert (stage / "synthetic.duckdb").exists() and (stage / "report.json").exists()
    os.kill(os.getpid(), signal.SIGKILL)

publish.promote = killed
run_pipeline(config_from_yaml(sys.argv[1]))
"""


@pytest.mark.slow
def test_a_run_killed_while_publishing_leaves_the_previous_output_byte_identical(tiny_run, tmp_path):
    config, _ = tiny_run
    out = tmp_path / "out"
    shutil.copytree(config.out_dir, out, ignore=shutil.ignore_patterns("work"))
    shutil.copytree(config.work_dir, tmp_path / "work")
    before = _published_files(out)
    path = write_config(tmp_path / "config.yaml", config.source, out, metadata=SCHOOL_METADATA, steps=5, seed=2,
                        work_dir=tmp_path / "work")
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(path)], cwd=PROJECT, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert _published_files(out) == before
    leftovers = list((out / ".staging").iterdir())
    assert len(leftovers) == 1 and (leftovers[0] / "synthetic.duckdb").exists()  # it was killed mid-publish
    # the next run publishes over it and removes what the killed run left
    from synth_pipeline.config import config_from_yaml
    from synth_pipeline.runner import run_pipeline

    outcome = run_pipeline(config_from_yaml(path), selection='key:"published/*"')
    assert outcome.success, outcome.failures
    assert not (out / ".staging").exists()
    assert outcome.report["run"]["totals"]["fk_violations"] == 0


def test_a_stalled_refresh_says_which_run_and_step_it_was_in(tmp_path):
    """A CI machine's daemon log is gone with it: the error carries the runs and the last step events."""
    from synth_pipeline.evaluation.nightly import _progress

    log = tmp_path / "daemon.log"
    log.write_text("\n".join([
        "2026-12-04 19:02:25 - dagster - DEBUG - synthesize - 1f2a - RUN_START - Started execution of run",
        "2026-12-04 19:02:26 - dagster - DEBUG - synthesize - 1f2a - model__marks - STEP_START - Started step",
        "2026-12-04 19:02:26 - dagster - INFO - synthesize - 1f2a - model__marks - marks: step 180/900",
    ]) + "\n")
    now = time.time()
    runs = [("load_real", "SUCCESS", now - 400, now - 400, now - 398), ("synthesize", "STARTED", now - 390, now - 380, None)]
    text = _progress(runs, log)
    assert "load_real success 2 s" in text and "synthesize started 38" in text
    assert text.splitlines()[-1].endswith("model__marks - STEP_START - Started step")
    assert "step 180/900" not in text  # progress lines are not events
    assert "runs: none" in _progress([], tmp_path / "missing.log")
