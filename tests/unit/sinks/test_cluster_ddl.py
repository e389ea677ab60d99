import re
from typing import cast

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.sinks.clickhouse import connect, create_tables
from pipeline.sinks.cluster_ddl import cluster_ddl, on_cluster, replicated, schema_statements

KEEPER = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
# What each shipped table is stored by on a cluster: the engine's own arguments follow Keeper's.
SHIPPED_ENGINES = {
    "decisions": f"ReplicatedReplacingMergeTree({KEEPER}, version)",
    "server_state": f"ReplicatedReplacingMergeTree({KEEPER}, version)",
    "server_messages": f"ReplicatedReplacingMergeTree({KEEPER}, event_time)",
    "observations": "Null",
    "enforcement": f"ReplicatedReplacingMergeTree({KEEPER})",
    "control_log": f"ReplicatedReplacingMergeTree({KEEPER})",
}
CREATED = re.compile(r"(?:CREATE (?:OR REPLACE )?(?:TABLE|MATERIALIZED VIEW|VIEW) (?:IF NOT EXISTS )?"
                     r"|ALTER TABLE )(\w+)")


def generated(cluster="patchgate"):
    """The statements of cluster_ddl, split as clickhouse-client --multiquery splits them."""
    return [statement.strip() for statement in cluster_ddl(cluster).split(";") if statement.strip()]


def test_the_schema_statements_are_the_ones_the_sink_runs():
    class RecordingClient:
        def __init__(self):
            self.commands = []

        def command(self, statement):
            self.commands.append(statement.strip())

    client = RecordingClient()
    create_tables(cast(Client, client))
    assert client.commands == schema_statements()
    assert len(client.commands) == 12


def test_every_statement_is_created_on_the_cluster_right_after_its_name_in_file_order():
    statements = generated("prod_1")
    assert len(statements) == len(schema_statements())
    for source, statement in zip(schema_statements(), statements, strict=True):
        name = CREATED.match(source)[1]
        assert CREATED.match(statement)[1] == name
        assert statement.startswith(f"{CREATED.match(source)[0]} ON CLUSTER 'prod_1'")
        assert statement.count("ON CLUSTER") == 1


def test_every_merge_tree_engine_is_replicated_keeping_its_arguments_and_others_stay():
    engines = {}
    for statement in generated():
        engine = re.search(r"ENGINE = (.*)", statement)
        if engine:
            engines[CREATED.match(statement)[1]] = engine[1].strip()
    assert engines == SHIPPED_ENGINES
    assert not re.search(r"ENGINE = (?!Replicated)\w*MergeTree", cluster_ddl("patchgate"))


def test_the_deduplication_window_moves_to_keeper_with_the_same_size():
    for source, statement in zip(schema_statements(), generated(), strict=True):
        window = re.search(r"non_replicated_deduplication_window = (\d+)", source)
        assert "non_replicated" not in statement
        if window:
            assert (f"replicated_deduplication_window = {window[1]}, "
                    "replicated_deduplication_window_seconds = 604800") in statement


def test_views_keep_their_query():
    for source, statement in zip(schema_statements(), generated(), strict=True):
        if "ENGINE" not in source:
            assert statement.replace(" ON CLUSTER 'patchgate'", "", 1) == source


@pytest.mark.parametrize(("engine", "expected"), [
    ("MergeTree", f"ReplicatedMergeTree({KEEPER})"),
    ("MergeTree()", f"ReplicatedMergeTree({KEEPER})"),
    ("SummingMergeTree((bytes, messages))", f"ReplicatedSummingMergeTree({KEEPER}, (bytes, messages))"),
    ("ReplacingMergeTree(version, is_deleted)", f"ReplicatedReplacingMergeTree({KEEPER}, version, is_deleted)"),
    # A parenthesis inside a string does not end the arguments.
    ("GraphiteMergeTree('rollup (daily)')", f"ReplicatedGraphiteMergeTree({KEEPER}, 'rollup (daily)')"),
    ("ReplicatedMergeTree('/own/path', 'r1')", "ReplicatedMergeTree('/own/path', 'r1')"),
    ("Null", "Null"),
    ("Memory", "Memory"),
])
def test_engines(engine, expected):
    columns = "CREATE TABLE t (a String, bytes UInt64, messages UInt64)"
    assert replicated(f"{columns} ENGINE = {engine} ORDER BY a") == f"{columns} ENGINE = {expected} ORDER BY a"


def test_unbalanced_engine_arguments_are_refused():
    with pytest.raises(ValueError, match="unbalanced"):
        replicated("CREATE TABLE t (a String) ENGINE = ReplacingMergeTree(version ORDER BY a")


@pytest.mark.parametrize(("statement", "expected"), [
    ("create table if not exists db.`my table` (a String) ENGINE = Null",
     "create table if not exists db.`my table` ON CLUSTER 'c' (a String) ENGINE = Null"),
    ("CREATE MATERIALIZED VIEW mv TO t AS SELECT 1", "CREATE MATERIALIZED VIEW mv ON CLUSTER 'c' TO t AS SELECT 1"),
    ("CREATE OR REPLACE VIEW v AS SELECT 1", "CREATE OR REPLACE VIEW v ON CLUSTER 'c' AS SELECT 1"),
    ("ALTER TABLE decisions ADD COLUMN IF NOT EXISTS x UInt8",
     "ALTER TABLE decisions ON CLUSTER 'c' ADD COLUMN IF NOT EXISTS x UInt8"),
])
def test_on_cluster_follows_the_name(statement, expected):
    assert on_cluster(statement, "c") == expected


def test_statements_that_create_or_alter_no_table_or_view_are_refused():
    with pytest.raises(ValueError, match="not a CREATE TABLE or VIEW or an ALTER TABLE"):
        on_cluster("DROP TABLE decisions", "c")


@pytest.mark.parametrize("cluster", ["", "x'; DROP TABLE decisions; --", "two words", "1st"])
def test_names_a_cluster_cannot_have_are_refused(cluster):
    with pytest.raises(ValueError, match="not a cluster name"):
        cluster_ddl(cluster)


def test_the_real_parser_reads_every_statement_and_knows_every_engine(tmp_path):
    """The embedded engine has no Keeper and no cluster, so the statements cannot run; ClickHouse's
    own parser (formatQuery) reads them, and the engines they name exist."""
    client = connect(f"chdb://{tmp_path}/ch")
    try:
        engines = {row[0] for row in client.query("SELECT name FROM system.table_engines").result_rows}
        for statement in generated("patchgate"):
            parsed = client.query("SELECT formatQuery({q:String})", parameters={"q": statement}).result_rows[0][0]
            assert CREATED.match(parsed)[0] + " ON CLUSTER patchgate" in parsed
            engine = re.search(r"ENGINE = `?(\w+)", parsed)
            if engine:
                assert engine[1] in engines
                assert engine[1] == "Null" or engine[1].startswith("Replicated")
        with pytest.raises(Exception, match="Syntax error"):
            client.query("SELECT formatQuery({q:String})", parameters={"q": "CREATE TABLE t ON CLUSTER"})
    finally:
        client.close()
