"""The ends of the pipeline: the log shipper that feeds it, the MTA side that enforces its decisions."""

# kafka-python's reconnect backoff grows to 30 s and more by default, so a client would find a
# broker back from an outage only that long after: the edges' clients try again sooner.
RECONNECT_BACKOFF_MAX_MS = 2_000
