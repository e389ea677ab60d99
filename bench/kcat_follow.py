"""Follow log files as a one-line-per-record shipper does, for the fault campaign: for each file,
`tail -F` into `kcat -P`, one Kafka record per line keyed by the file's path, with the partitioner
docs/shipping.md recommends, and librdkafka's idempotent producer (a send the broker took but never
confirmed is not written twice).

    python bench/kcat_follow.py BOOTSTRAP TOPIC FILE...

On SIGTERM the tails stop; each kcat sends what it read and exits. The exit status is the worst
kcat's. With -E kcat waits for a broker that went away (librdkafka retries for
message.timeout.ms, 5 min) instead of exiting when all are down.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading


def main(bootstrap: str, topic: str, paths: list[str]) -> int:
    followers = []
    for path in paths:
        tail = subprocess.Popen(["tail", "-n", "+1", "-F", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        # -E: kcat otherwise exits when every broker is down, dropping what it holds.
        kcat = subprocess.Popen(["kcat", "-P", "-E", "-b", bootstrap, "-t", topic, "-k", path,
                                 "-X", "topic.partitioner=murmur2_random", "-X", "enable.idempotence=true"],
                                stdin=tail.stdout)
        assert tail.stdout is not None
        tail.stdout.close()  # kcat holds the pipe: it sees its end when tail exits
        followers.append((tail, kcat))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    for tail, _ in followers:
        tail.terminate()
    return max(kcat.wait() for _, kcat in followers)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
