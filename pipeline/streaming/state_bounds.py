"""How much a source's parser state may hold, as the stream stores it: one record of the
parser-state table's changelog, which Kafka takes up to 1 MB by default.

`patchgate evaluate` keeps its states in memory, yet holds them to the same bounds so that it gives
what the stream gives. It imports this module, which imports no Faust.
"""

# The message tracking log rows a file holds back for its writer's FQDN (see
# pipeline.domain.identity_writers) keep at most this many bytes of row text, beside the learnt
# host names: past it the oldest go as they are, down to half of it.
HELD_ROWS_BYTES = 256 * 1024
