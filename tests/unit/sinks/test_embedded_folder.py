"""One sink per embedded ClickHouse folder: a second process that would open it stops with a clear
message instead (chdb must not be opened by two processes at once)."""
import subprocess
import sys
import time

import pytest

from pipeline.sinks.clickhouse import FolderInUse, own_embedded_folder

HOLDER = "import sys, time; from pipeline.sinks.clickhouse import own_embedded_folder; " \
         "own_embedded_folder(sys.argv[1]); print('held', flush=True); time.sleep(60)"


@pytest.fixture
def held_folder(tmp_path):
    """A chdb DSN whose folder another process owns."""
    dsn = f"chdb://{tmp_path / 'clickhouse'}"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, dsn], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    yield dsn, holder.pid
    holder.kill()
    holder.wait()


def test_a_second_process_is_told_who_owns_the_folder(held_folder):
    dsn, pid = held_folder
    with pytest.raises(FolderInUse, match=rf"in use by pid {pid}: with the embedded engine exactly one sink runs"):
        own_embedded_folder(dsn)


def test_a_second_sink_stops_at_start_with_one_line(held_folder, tmp_path):
    dsn, pid = held_folder
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pipeline", "sink"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "CLICKHOUSE_URL": dsn, "PATCHGATE_DATA_DIR": str(tmp_path)})
    assert done.returncode == 1
    assert done.stderr.startswith(f"patchgate: the embedded ClickHouse folder {dsn.removeprefix('chdb://')} is in use "
                                  f"by pid {pid}")
    assert time.monotonic() - started < 30  # before any broker is asked


def test_the_owner_may_ask_again_and_a_server_needs_no_lock(tmp_path):
    dsn = f"chdb://{tmp_path / 'clickhouse'}"
    own_embedded_folder(dsn)
    own_embedded_folder(dsn)
    own_embedded_folder("http://clickhouse:8123/patchgate")
    assert (tmp_path / "clickhouse" / ".patchgate.lock").read_text().startswith("pid ")
