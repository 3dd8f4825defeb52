"""The nightly refresh as the Dagster daemon runs it, timed beside the CLI on the same data.

``dagster-daemon`` is started on a fresh ``DAGSTER_HOME`` with the schedule (every minute
here) and the refresh sensor switched on; the first tick's ``load_real`` run, the sensor's
``synthesize`` run and the published output are waited for; then ``synth-pipeline run``
does the same work on the same configuration in another output folder. Both wall times are
printed and written to JSON.

    python -m synth_pipeline.evaluation.nightly [--students 1000] [--steps N] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


@dataclass
class DaemonRefresh:
    """What the daemon ran, first to last: (job, status, created, started, ended) per run."""

    runs: list[tuple[str, str, float, float | None, float | None]] = field(default_factory=list)
    daemon_log: str = ""

    def first(self, job: str):
        return next((r for r in self.runs if r[0] == job), None)

    @property
    def tick_to_published_seconds(self) -> float:
        """From the tick's load_real run being created to the end of the synthesize run."""
        load, synthesize = self.first("load_real"), self.first("synthesize")
        return round(synthesize[4] - load[2], 1)


def write_config(path: Path, source: Path, out_dir: Path, **settings) -> Path:
    """A configuration file whose schedule ticks every minute and starts switched on."""
    import yaml

    values = {"source": str(source), "out_dir": str(out_dir), "schedule_cron": "* * * * *",
              "nightly_refresh": True, **{k: (str(v) if isinstance(v, Path) else v) for k, v in settings.items()}}
    path.write_text(yaml.safe_dump(values))
    return path


def _runs(instance) -> list[tuple[str, str, float, float | None, float | None]]:
    records = instance.get_run_records()
    return sorted(((r.dagster_run.job_name, r.dagster_run.status.value, r.create_timestamp.timestamp(),
                    r.start_time, r.end_time) for r in records), key=lambda r: r[2])


_EVENTS = ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE", "RUN_", "ERROR", "Error", "skipped", "Creating new run")


def _progress(runs, log_path: Path, lines: int = 20) -> str:
    """What a stalled or failed refresh had done: each run (job, status, seconds so far) and
    the daemon log's last step and run events (the log itself is gone with a CI machine)."""
    now = time.time()
    listed = "; ".join(f"{job} {status.lower()}" + (f" {(end or now) - start:.0f} s" if start else " (not started)")
                       for job, status, _, start, end in runs) or "none"
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    events = [line[:240] for line in text.splitlines() if any(k in line for k in _EVENTS)][-lines:]
    return f"runs: {listed}\nthe daemon's last events:\n" + "\n".join(events)


def daemon_refresh(config_path: Path, home: Path, timeout: float = 900, settle: float = 25,
                   until=None) -> DaemonRefresh:
    """Start ``dagster-daemon`` for ``config_path`` (schedule and sensor on) and wait until a
    ``synthesize`` run has succeeded and nothing has run for ``settle`` seconds (the sensor had
    its chance to ask for more), or until ``until(runs)`` says so. A failed run or the timeout
    raises with the daemon's log."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "SYNTH_PIPELINE_CONFIG": str(config_path),
           "GX_ANALYTICS_ENABLED": "false"}
    log_path = home / "daemon.log"
    daemon_bin = Path(sys.executable).with_name("dagster-daemon")
    with open(log_path, "w") as log:
        daemon = subprocess.Popen([str(daemon_bin), "run", "-w", str(PROJECT / "workspace.yaml")], cwd=PROJECT,
                                  env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    result = DaemonRefresh()
    try:
        instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
        deadline = time.time() + timeout
        while True:
            time.sleep(2)
            result.runs = _runs(instance)
            failed = [r for r in result.runs if r[1] in ("FAILURE", "CANCELED")]
            if failed or daemon.poll() is not None or time.time() > deadline:
                why = (f"run of {failed[0][0]} {failed[0][1].lower()}" if failed else
                       "the daemon exited" if daemon.poll() is not None else f"no published output in {timeout:.0f} s")
                raise RuntimeError(f"nightly refresh: {why}; daemon log {log_path}\n{_progress(result.runs, log_path)}")
            if until is not None:
                if until(result.runs):
                    break
                continue
            done = [r for r in result.runs if r[0] == "synthesize" and r[1] == "SUCCESS"]
            active = [r for r in result.runs if r[1] not in ("SUCCESS", "FAILURE", "CANCELED")]
            last_end = max((r[4] or 0) for r in result.runs) if result.runs else 0
            if done and not active and time.time() - last_end > settle:
                break
    finally:
        os.killpg(daemon.pid, signal.SIGKILL)  # the daemon and the runs it launched
        daemon.wait(timeout=30)
        result.daemon_log = log_path.read_text()[-4000:]
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=1000, help="students of the simulated school (default 1000)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per table (default: the quality's)")
    parser.add_argument("--out", default="data/output/nightly.json", help="where the figures are written")
    args = parser.parse_args(argv)
    from synth_pipeline.config import SCHOOL_METADATA, school_config
    from synth_pipeline.sources import build_school_database

    source = school_config(students=args.students).source
    if not source.exists():
        build_school_database(source, students=args.students, seed=0)
    settings = {"metadata": SCHOOL_METADATA, **({"steps": args.steps} if args.steps else {})}
    with tempfile.TemporaryDirectory(prefix="nightly-") as tmp:
        tmp = Path(tmp)
        config = write_config(tmp / "daemon.yaml", source, tmp / "daemon-out", **settings)
        print("dagster-daemon: waiting for the schedule's next minute, then load_real, the sensor, synthesize...",
              flush=True)
        refresh = daemon_refresh(config, tmp / "home")
        for job, status, created, started, ended in refresh.runs:
            print(f"  {job:<12} {status:<8} queued->start {started - created:5.1f} s, ran {ended - started:6.1f} s")
        cli_config = write_config(tmp / "cli.yaml", source, tmp / "cli-out", **settings)
        started = time.perf_counter()
        subprocess.run([str(Path(sys.executable).with_name("synth-pipeline")), "-q", "run", "--config",
                        str(cli_config)], check=True, cwd=PROJECT)
        cli_seconds = round(time.perf_counter() - started, 1)
    figures = {"students": args.students, "steps": args.steps, "cpus": os.cpu_count(),
               "daemon_tick_to_published_seconds": refresh.tick_to_published_seconds,
               "daemon_runs": [{"job": j, "status": s, "seconds": round(e - b, 1)} for j, s, _, b, e in refresh.runs],
               "cli_seconds": cli_seconds,
               "ratio": round(refresh.tick_to_published_seconds / cli_seconds, 2)}
    from synth_pipeline.evaluation.benchmark import write_figures

    write_figures(figures, args.out)
    return figures


if __name__ == "__main__":
    main()
