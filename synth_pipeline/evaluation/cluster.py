"""The demo database through Dagster's Celery executor: a local Redis broker, two
``dagster-celery`` workers, the ``synthesize`` job's steps spread over them; then the same
work in one process (the CLI), for comparison. Figures are printed and written to JSON.

    python -m synth_pipeline.evaluation.cluster [--students 1000] [--steps N] [--partitions 2] [--out FILE]

Needs ``redis-server`` (Debian: ``apt-get install redis-server``) and the ``cluster`` extra
(``pip install -e '.[cluster]'``: dagster-celery, redis); ``make cluster-demo`` installs both.
Each worker runs one step at a time (``-c 1``): with two workers on two cores, two tables
train at once, each with one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
WORKERS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _wait_for_redis(port: int, deadline: float) -> None:
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"redis-server did not answer on port {port}")


def run_on_celery(config_path: Path, home: Path, broker: str, partitions: int, log_dir: Path) -> float:
    """Seconds to materialize everything through the Celery executor, the steps executed by
    the workers: the real tables and models, then every sampling partition at once (one run
    each), then the published database."""
    env = {**os.environ, "DAGSTER_HOME": str(home), "SYNTH_PIPELINE_CONFIG": str(config_path),
           "GX_ANALYTICS_ENABLED": "false"}
    run_config = home / "run_config.yaml"
    run_config.write_text(json.dumps({"execution": {"config": {"broker": broker, "backend": broker}}}))
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))  # its storage, once, before runs at once
    base = [_bin("dagster"), "asset", "materialize", "-m", "synth_pipeline.definitions", "-c", str(run_config)]
    if partitions == 1:
        stages = [[base + ["--select", "*"]]]
    else:  # as the CLI does: the models once, then every partition at once, then publishing
        sampled = 'key:"synthetic/*" or key:"repaired/*"'
        stages = [[base + ["--select", 'key:"real/*" or key:"model/*"']],
                  [base + ["--select", sampled, "--partition", str(p)] for p in range(partitions)],
                  [base + ["--select", 'key:"published/*"']]]
    started = time.perf_counter()
    for number, stage in enumerate(stages):
        procs = [subprocess.Popen(cmd, cwd=PROJECT, env=env, stdout=open(log_dir / f"stage{number}-{i}.log", "w"),
                                  stderr=subprocess.STDOUT) for i, cmd in enumerate(stage)]
        if any([p.wait() for p in procs]):  # every run of the stage ends before the check
            raise RuntimeError(f"a run through the Celery executor failed: logs in {log_dir}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=1000, help="students of the simulated school (default 1000)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per table (default: the quality's)")
    parser.add_argument("--partitions", type=int, default=2, help="sampling partitions, one run each (default 2)")
    parser.add_argument("--out", default="data/output/cluster.json", help="where the figures are written")
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        sys.exit("cluster demo: redis-server is not installed (Debian: apt-get install redis-server)")
    try:
        import dagster_celery  # noqa: F401
    except ImportError:
        sys.exit("cluster demo: dagster-celery is not installed (pip install -e '.[cluster]')")
    import yaml

    from synth_pipeline.config import SCHOOL_METADATA, school_config
    from synth_pipeline.sources import build_school_database

    source = school_config(students=args.students).source
    if not source.exists():
        build_school_database(source, students=args.students, seed=0)
    tmp = Path(tempfile.mkdtemp(prefix="cluster-"))
    port = _free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    settings = {"source": str(source), "metadata": str(SCHOOL_METADATA), "partitions": args.partitions,
                **({"steps": args.steps} if args.steps else {})}
    cluster_config = tmp / "cluster.yaml"
    cluster_config.write_text(yaml.safe_dump({**settings, "out_dir": str(tmp / "cluster-out"), "executor": "celery"}))
    (tmp / "home").mkdir()
    (tmp / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (tmp / "celery").mkdir()
    (tmp / "celery" / "dagster_celery_config.py").write_text(  # read by dagster_celery.app in each worker
        f"broker_url = {broker!r}\nresult_backend = {broker!r}\nworker_prefetch_multiplier = 1\n")
    env = {**os.environ, "DAGSTER_HOME": str(tmp / "home"), "SYNTH_PIPELINE_CONFIG": str(cluster_config),
           "GX_ANALYTICS_ENABLED": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp / "celery"), str(PROJECT), os.environ.get("PYTHONPATH")]))}
    processes = []
    try:
        processes.append(subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                           "--appendonly", "no"], stdout=open(tmp / "redis.log", "w"),
                                          stderr=subprocess.STDOUT, start_new_session=True))
        _wait_for_redis(port, time.time() + 30)
        for i in range(WORKERS):
            processes.append(subprocess.Popen(
                [_bin("celery"), "-A", "dagster_celery.app", "worker", "-c", "1", "--prefetch-multiplier=1",
                 "-Q", "dagster", "-n", f"synth{i}@%h", "--loglevel", "WARNING"], cwd=PROJECT, env=env,
                stdout=open(tmp / f"worker{i}.log", "w"), stderr=subprocess.STDOUT, start_new_session=True))
        print(f"redis on port {port}, {WORKERS} dagster-celery workers; running the demo through Celery...", flush=True)
        celery_seconds = run_on_celery(cluster_config, tmp / "home", broker, args.partitions, tmp)
        workers_used = _workers_used(tmp / "home")
    finally:
        for proc in reversed(processes):  # the workers, then the broker
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
    one = tmp / "one.yaml"
    one.write_text(yaml.safe_dump({**settings, "out_dir": str(tmp / "one-out")}))
    started = time.perf_counter()
    subprocess.run([_bin("synth-pipeline"), "-q", "run", "--config", str(one)], check=True, cwd=PROJECT)
    one_seconds = time.perf_counter() - started
    report = json.loads((tmp / "cluster-out" / "report.json").read_text())["run"]
    figures = {"students": args.students, "steps": args.steps, "partitions": args.partitions, "workers": WORKERS,
               "cpus": os.cpu_count(), "celery_seconds": round(celery_seconds, 1),
               "one_process_seconds": round(one_seconds, 1), "steps_per_worker": workers_used,
               "celery_fk_violations": report["totals"]["fk_violations"],
               "celery_rows": report["totals"]["synthetic_rows"]}
    from synth_pipeline.evaluation.benchmark import write_figures

    write_figures(figures, args.out)
    shutil.rmtree(tmp, ignore_errors=True)
    return figures


def _workers_used(home: Path) -> dict[str, int]:
    """How many steps each worker process ran (from the runs' step start events)."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    pids: dict[str, int] = {}
    for record in instance.get_run_records():
        for event in instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_START):
            pid = str(event.dagster_event.pid if event.dagster_event else None)
            pids[pid] = pids.get(pid, 0) + 1
    return pids


if __name__ == "__main__":
    main()
