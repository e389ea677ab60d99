"""ClickHouse DDL for a cluster, made from the same schema files the sink runs on a single server.

Each table and view is created ON CLUSTER (and a column a later release added, ALTERed ON CLUSTER),
so one run reaches every host of the cluster, and each
MergeTree-family engine becomes its Replicated* counterpart, whose parts the replicas of a shard copy
from one another through Keeper, keeping the engine's own arguments. Other engines stay as they are:
every host keeps its own `observations` (Null) table, and the view on it writes into the replicated
table on that host. No Distributed table is made: the layout is one shard with N replicas, where
every replica holds every row, so the sink's inserts and the views' FINAL reads work on any replica
as they do on one server (docs/clickhouse-cluster.md says why, and when that stops being enough).

The deduplication window moves from the local file of a single server to Keeper: it is shared by the
replicas, so a batch retried through another replica is dropped too.
"""
from __future__ import annotations

import re

from pipeline.sinks.clickhouse import DDL_DIR

# Keeper path and replica name per table, filled in by each host from its <macros> ({shard},
# {replica}) and from the table itself ({database}, {table}).
KEEPER_PATH = "'/clickhouse/tables/{shard}/{database}/{table}'"
REPLICA_NAME = "'{replica}'"
# Keeper forgets a block's token after this long, counted back from the newest insert (an hour by
# default in recent releases, a week before). A server keeps its window of tokens however old they
# are: a week keeps a sink that was down for days from inserting its last batch twice.
DEDUPLICATION_SECONDS = 7 * 24 * 3600

# Cluster names are XML element names in the servers' <remote_servers>; the check also keeps a quote
# out of the quoted name.
_CLUSTER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_NAME = r"(?:`[^`]+`|\w+)"
# Up to the table or view name, after which ON CLUSTER goes.
_CREATE_OR_ALTER = re.compile(
    rf"\s*(?:CREATE\s+(?:OR\s+REPLACE\s+)?(?:TABLE|(?:MATERIALIZED\s+)?VIEW)\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    rf"|ALTER\s+TABLE\s+){_NAME}(?:\.{_NAME})?", re.IGNORECASE)
# Engine names are case-sensitive in ClickHouse; the keyword is not.
_MERGE_TREE = re.compile(r"(?i:\bENGINE)\s*=\s*(?!Replicated)(?P<family>\w*)MergeTree\b")
_LOCAL_WINDOW = re.compile(r"\bnon_replicated_deduplication_window\s*=\s*(?P<blocks>\d+)")
# A string literal (with its escapes) or a parenthesis: parentheses inside strings do not count.
_PARENTHESIS_OR_STRING = re.compile(r"'(?:[^'\\]|\\.|'')*'|[()]")


def cluster_ddl(cluster: str) -> str:
    """Every schema statement for `cluster`, in file order, each ended by `;` (for
    `clickhouse-client --multiquery`). Raises ValueError for a name a cluster cannot have."""
    if not _CLUSTER_NAME.fullmatch(cluster):
        raise ValueError(f"{cluster!r} is not a cluster name (letters, digits, '_', '.' or '-')")
    return "\n\n".join(f"{replicated(on_cluster(statement, cluster))};" for statement in schema_statements()) + "\n"


def schema_statements() -> list[str]:
    """The statements of the schema files as the sink's create_tables runs them: files in name
    order (the number in front creates tables before the views that read them), comment lines
    dropped."""
    statements = []
    for path in sorted((f for f in DDL_DIR.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name):
        for statement in path.read_text(encoding="utf-8").split(";"):
            body = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--"))
            if body.strip():
                statements.append(body.strip())
    return statements


def on_cluster(statement: str, cluster: str) -> str:
    """`statement` with ON CLUSTER after the name it creates or alters; raises ValueError for a
    statement that does neither to a table or view (a new kind of statement in the schema files
    must be placed by hand)."""
    created = _CREATE_OR_ALTER.match(statement)
    if not created:
        raise ValueError(f"not a CREATE TABLE or VIEW or an ALTER TABLE statement: {statement.splitlines()[0]!r}")
    return f"{statement[:created.end()]} ON CLUSTER '{cluster}'{statement[created.end():]}"


def replicated(statement: str) -> str:
    """`statement` with its MergeTree-family engine replicated, the engine's arguments after the
    Keeper path and the replica name, and its local deduplication window kept in Keeper instead.
    Other statements are returned as they are."""
    engine = _MERGE_TREE.search(statement)
    if not engine:
        return statement
    own_arguments, rest = _arguments(statement[engine.end():])
    arguments = ", ".join([KEEPER_PATH, REPLICA_NAME, *([own_arguments] if own_arguments else [])])
    replicated_engine = f"Replicated{engine['family']}MergeTree({arguments})"
    window = (r"replicated_deduplication_window = \g<blocks>, "
              f"replicated_deduplication_window_seconds = {DEDUPLICATION_SECONDS}")
    return f"{statement[:engine.start('family')]}{replicated_engine}{_LOCAL_WINDOW.sub(window, rest)}"


def _arguments(text: str) -> tuple[str, str]:
    """The engine arguments `text` opens with, as written ("" when there are none), and the text
    after them."""
    blank = len(text) - len(text.lstrip())
    if not text[blank:].startswith("("):
        return "", text
    depth = 0
    for token in _PARENTHESIS_OR_STRING.finditer(text, blank):
        depth += {"(": 1, ")": -1}.get(token[0], 0)
        if depth == 0:
            return text[blank + 1:token.start()].strip(), text[token.end():]
    raise ValueError(f"unbalanced parentheses in engine arguments: {text[blank:].splitlines()[0]!r}")
