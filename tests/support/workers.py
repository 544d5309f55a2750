"""Real Celery worker processes for the tests: started, killed and restarted like production ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.paths import PROJECT_ROOT
from support.waiting import wait_for_start


class Workers:
    """Real ``celery -A worker worker -P solo`` processes, each one OS process, killable and restartable."""

    def __init__(self, env: dict[str, str], log_dir: Any, pool: tuple[str, ...] = ("-P", "solo")) -> None:
        self.pool = pool
        self.env = env
        self.log_dir = log_dir
        self.processes: dict[int, Any] = {}
        self.starts = 0

    def start(self, index: int) -> None:
        import subprocess
        import sys

        self.starts += 1
        log = (self.log_dir / f"worker{index}-{self.starts}.log").open("wb")
        command = [
            sys.executable, "-m", "celery", "-A", "worker", "worker", *self.pool,
            "-n", f"w{index}-{self.starts}@%h",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.processes[index] = process
        path = Path(log.name)
        wait_for_start(process, lambda: b" ready." in path.read_bytes(), what=f"worker {index}", log=path)

    def kill(self, index: int) -> None:
        import signal

        process = self.processes.pop(index)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        import signal

        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(10)
            except Exception:
                process.kill()
                process.wait(5)
        self.processes.clear()
