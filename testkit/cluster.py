"""The secured three-broker cluster's script, deploy/kafka/cluster.sh, as the tests and the fault
campaign drive it."""
from __future__ import annotations

import os
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CLUSTER = Path(__file__).resolve().parents[1] / "deploy" / "kafka" / "cluster.sh"


class ClusterScript:
    """deploy/kafka/cluster.sh on the home and ports that `environ` gives it (PATCHGATE_CLUSTER_HOME,
    CLUSTER_BASE_PORT; by default the suite's cluster): its role users' settings, and Kafka's ACL tool."""

    def __init__(self, environ: dict | None = None):
        self.environ = {**os.environ, **(environ or {})}

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        """cluster.sh ARGS; with `check`, a failure raises with what the script said."""
        done = subprocess.run(["bash", str(CLUSTER), *args], env=self.environ, capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"cluster.sh {shlex.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done

    def env(self, role: str, base: dict) -> dict:
        """`base` with the client settings of the role's user (`admin`: the cluster's super user)."""
        lines = self.run("env", f"patchgate-{role}").stdout.splitlines()
        return {**base, **dict(line.removeprefix("export ").split("=", 1) for line in lines)}

    def admin_config(self) -> str:
        return self.run("admin-config").stdout.strip()

    def apply(self, acl_lines: list[str]) -> None:
        """Run `kafka-acls.sh` lines as they are, with Kafka's own tool (three at a time: a JVM each)."""
        def run(line: str) -> subprocess.CompletedProcess:
            words = shlex.split(line)
            assert words[0] == "kafka-acls.sh", line
            return self.run("kafka-acls", *words[1:], timeout=120, check=False)

        with ThreadPoolExecutor(3) as pool:
            for line, done in zip(acl_lines, pool.map(run, acl_lines), strict=True):
                assert done.returncode == 0, f"{line}\n{done.stderr}"
