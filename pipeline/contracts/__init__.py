"""The wire the shipper, the worker and the MTA side share: topic names and partitioning (topics),
the Avro schemas and their codecs (avro), records to and from the domain's types (records, control),
packed lines (packing) and the reading of compacted topics (compacted). No Faust here: a host that
only ships or enforces needs these, not the worker."""
