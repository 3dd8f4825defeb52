"""Run a command and log, each second: seconds since start, the summed RSS (MB) of it and its
descendants, the machine's busy CPU (%), and each process's RSS above 50 MB.

    python scripts/memtimeline.py LOG COMMAND...   # e.g. LOG .venv/bin/synth-pipeline run --source DIR --out OUT
"""
import os
import subprocess
import sys
import time


def tree(pid: int) -> list[int]:
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    out += tree(int(child))
    except OSError:
        pass
    return out


def rss_mb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS:")), 0)
    except OSError:
        return 0


def cpu_ticks() -> tuple[int, int]:
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    return sum(values), values[3] + values[4]  # all, idle + iowait


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    log = open(sys.argv[1], "w")
    started, peak, last = time.time(), 0, cpu_ticks()
    proc = subprocess.Popen(sys.argv[2:])
    while proc.poll() is None:
        time.sleep(1)
        now = cpu_ticks()
        busy = 100 * (1 - (now[1] - last[1]) / max(1, now[0] - last[0]))
        last = now
        sizes = {p: rss_mb(p) for p in tree(proc.pid)}
        peak = max(peak, sum(sizes.values()))
        log.write(f"{time.time() - started:.0f} {sum(sizes.values())} {busy:.0f} "
                  + " ".join(f"{p}:{m}" for p, m in sizes.items() if m > 50) + "\n")
        log.flush()
    summary = f"wall {time.time() - started:.1f} s, peak summed RSS {peak} MB, exit code {proc.returncode}"
    log.write(f"END {summary}\n")
    print(summary)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
