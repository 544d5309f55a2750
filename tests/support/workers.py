"""Real Celery worker processes for the tests: started, killed and restarted like production ones."""

from __future__ import annotations

from typing import Any

from support.paths import PROJECT_ROOT


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
        import time

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
        deadline = time.monotonic() + 30
        path = log.name
        while time.monotonic() < deadline:
            if b" ready." in open(path, "rb").read():  # noqa: SIM115
                return
            if process.poll() is not None:
                raise RuntimeError(f"worker exited: {open(path, 'rb').read()[-3000:].decode()}")  # noqa: SIM115
            time.sleep(0.1)
        raise RuntimeError("worker did not become ready in 30 s")

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
