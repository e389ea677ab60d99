"""The ends of the pipeline: the log shipper that feeds it, the MTA side that enforces its decisions."""
