"""The db.query node against real PostgreSQL, MariaDB and SQLite: parameters bound, never
spliced; rows as JSON; truncation; read-only reads; statement timeouts; which failures are
retryable; the outbound guard; and runs through the app on both Conveyor backends."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymysql
import pytest
from pydantic import BaseModel, ConfigDict, Field

from conveyor.app import Conveyor
from conveyor.engine.interfaces import SystemClock
from conveyor.engine.steps import Outcome, run_attempt
from conveyor.errors import DefinitionError, NodeError
from conveyor.nodes.base import Credential, NetworkPolicy, NodeContext, node
from conveyor.nodes.builtin import build_registry
from conveyor.nodes.database import DbQuery
from conveyor.worker import Worker
from tests.conftest import fresh_database
from tests.support import admin, pg_url, require_postgres

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
INJECTION = "'; DROP TABLE {table}; --"
# A bound only a hang could cross: the statement timeout in these tests is 1 s.
PROMPT = 15.0


class Credentials:
    """A workspace's credentials, held in memory (the protocol the runner fills in)."""

    def __init__(self, **urls: str) -> None:
        self.urls = urls

    async def get(self, name: str) -> Credential:
        if name not in self.urls:
            raise NodeError(f"no credential '{name}'", non_retryable=True)
        return Credential(name, "database", {"url": self.urls[name]})


class _Services:
    async def notify(self, execution_id: str, node_id: str, payload: dict[str, Any]) -> str:
        return "n"

    async def start_child(self, *args: Any) -> str:
        return "c"


@dataclass
class Db:
    """One database under test, and how its SQL dialect spells what the tests need."""

    kind: str
    url: str
    placeholder: str
    sleep_sql: str

    def named(self, name: str) -> str:
        return f":{name}" if self.kind == "sqlite" else f"%({name})s"

    def table(self) -> str:
        return f"t_{uuid.uuid4().hex[:10]}"


async def run(
    config: dict[str, Any], url: str, *, allow_private: bool = True, node_id: str = "q"
) -> Outcome:
    ctx = NodeContext(
        execution_id="e1",
        workflow_id="w1",
        node_id=node_id,
        attempt=1,
        services=_Services(),
        clock=lambda: datetime.now(UTC),
        credentials=Credentials(db=url),
        network=NetworkPolicy(allow_private=allow_private),
    )
    return await run_attempt(DbQuery(), ctx, {"credential": "db", **config}, None)


async def ok(config: dict[str, Any], url: str) -> dict[str, Any]:
    outcome = await run(config, url)
    assert outcome.error is None, outcome.error
    assert isinstance(outcome.output, dict)
    return outcome.output


def failure(outcome: Outcome) -> tuple[str, bool]:
    assert outcome.error is not None, f"expected a failure, got {outcome.output}"
    assert outcome.failure is not None
    return outcome.error["message"], outcome.failure.non_retryable


# -- the databases ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    require_postgres()
    name = f"conveyor_dbq_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def mariadb_reason() -> str | None:
    try:
        pymysql.connect(**MARIADB, connect_timeout=3).close()  # type: ignore[arg-type]
        return None
    except pymysql.Error as exc:
        return f"MariaDB not reachable as root@127.0.0.1:3306: {exc}"


@dataclass
class MariaDb:
    database: str
    user: str
    password: str

    def url(self, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"mariadb://{self.user}:{secret}@127.0.0.1:3306/{self.database}"


@pytest.fixture(scope="module")
def mariadb() -> Iterator[MariaDb]:
    reason = mariadb_reason()
    if reason is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    suffix = uuid.uuid4().hex[:8]
    found = MariaDb(f"conveyor_dbq_{suffix}", f"dbq_{suffix}", f"pw-{uuid.uuid4().hex}")
    with pymysql.connect(**MARIADB, autocommit=True) as conn, conn.cursor() as cur:  # type: ignore[arg-type]
        cur.execute(f"CREATE DATABASE {found.database}")
        cur.execute(f"CREATE USER '{found.user}'@'127.0.0.1' IDENTIFIED BY %s", (found.password,))
        cur.execute(f"GRANT ALL ON {found.database}.* TO '{found.user}'@'127.0.0.1'")
    try:
        yield found
    finally:
        with pymysql.connect(**MARIADB, autocommit=True) as conn, conn.cursor() as cur:  # type: ignore[arg-type]
            cur.execute(f"DROP DATABASE IF EXISTS {found.database}")
            cur.execute(f"DROP USER IF EXISTS '{found.user}'@'127.0.0.1'")


@pytest.fixture(params=["postgresql", "mariadb", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    if request.param == "postgresql":
        name = request.getfixturevalue("pg_database")
        return Db("postgresql", pg_url(name), "%s", "SELECT pg_sleep(30)")
    if request.param == "mariadb":
        found: MariaDb = request.getfixturevalue("mariadb")
        return Db("mariadb", found.url(), "%s", "SELECT SLEEP(30)")
    path = tmp_path / "data.db"
    sqlite3.connect(path).close()
    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
        "WHERE x < 100000000000) SELECT count(*) FROM c"
    )
    return Db("sqlite", f"sqlite:///{path}", "?", endless)


async def create(db: Db, table: str, columns: str = "id INTEGER PRIMARY KEY, note TEXT") -> None:
    await ok({"sql": f"CREATE TABLE {table} ({columns})", "mode": "write"}, db.url)


# -- every database --------------------------------------------------------------------------


async def test_select_with_params(db: Db) -> None:
    output = await ok(
        {
            "sql": f"SELECT {db.placeholder} AS a, {db.placeholder} AS b",
            "params": [41, "forty-one"],
        },
        db.url,
    )
    assert output["rows"] == [{"a": 41, "b": "forty-one"}]
    assert output["columns"] == ["a", "b"]
    assert output["row_count"] == 1
    assert output["truncated"] is False


async def test_insert_then_select_with_named_params(db: Db) -> None:
    table = db.table()
    await create(db, table)
    inserted = await ok(
        {
            "sql": f"INSERT INTO {table} (id, note) VALUES ({db.named('id')}, {db.named('note')})",
            "params": {"id": 7, "note": "hello"},
            "mode": "write",
        },
        db.url,
    )
    assert inserted["affected_rows"] == 1
    assert inserted["rows"] == []
    output = await ok(
        {"sql": f"SELECT id, note FROM {table} WHERE id = {db.placeholder}", "params": [7]},
        db.url,
    )
    assert output["rows"] == [{"id": 7, "note": "hello"}]


async def test_a_hostile_value_is_stored_verbatim(db: Db) -> None:
    table = db.table()
    await create(db, table)
    hostile = INJECTION.format(table=table)
    await ok(
        {
            "sql": f"INSERT INTO {table} (id, note) VALUES (1, {db.placeholder})",
            "params": [hostile],
            "mode": "write",
        },
        db.url,
    )
    output = await ok({"sql": f"SELECT note FROM {table}"}, db.url)
    assert output["rows"] == [{"note": hostile}]


async def test_read_mode_refuses_a_write(db: Db) -> None:
    table = db.table()
    await create(db, table)
    message, non_retryable = failure(
        await run({"sql": f"INSERT INTO {table} (id, note) VALUES (1, 'x')"}, db.url)
    )
    assert non_retryable, message
    count = await ok({"sql": f"SELECT count(*) AS n FROM {table}"}, db.url)
    assert count["rows"] == [{"n": 0}]
    message, non_retryable = failure(await run({"sql": f"DROP TABLE {table}"}, db.url))
    assert non_retryable, message
    await ok({"sql": f"SELECT count(*) AS n FROM {table}"}, db.url)  # still there


async def test_rows_past_max_rows_are_truncated(db: Db) -> None:
    table = db.table()
    await create(db, table)
    values = ", ".join(f"({i}, 'n{i}')" for i in range(1, 6))
    await ok({"sql": f"INSERT INTO {table} (id, note) VALUES {values}", "mode": "write"}, db.url)
    output = await ok({"sql": f"SELECT id FROM {table} ORDER BY id", "max_rows": 3}, db.url)
    assert output["rows"] == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert output["truncated"] is True
    assert output["row_count"] == 3
    exact = await ok({"sql": f"SELECT id FROM {table} ORDER BY id", "max_rows": 5}, db.url)
    assert exact["truncated"] is False
    assert exact["row_count"] == 5


async def test_the_statement_timeout_ends_a_long_query_retryably(db: Db) -> None:
    began = time.monotonic()
    message, non_retryable = failure(await run({"sql": db.sleep_sql, "timeout": "1s"}, db.url))
    elapsed = time.monotonic() - began
    assert not non_retryable, message
    assert elapsed < PROMPT, f"took {elapsed:.1f}s"
    assert any(word in message.lower() for word in ("timeout", "interrupted", "cancel")), message


async def test_a_syntax_error_is_not_retryable(db: Db) -> None:
    message, non_retryable = failure(await run({"sql": "SELEKT 1"}, db.url))
    assert non_retryable
    assert "SELEKT" in message or "syntax" in message.lower(), message


# -- server databases: connections, authentication, the guard ---------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
async def test_connection_refused_is_retryable(scheme: str) -> None:
    url = f"{scheme}://someone:secret-pw@127.0.0.1:{closed_port()}/db"
    message, non_retryable = failure(await run({"sql": "SELECT 1"}, url))
    assert not non_retryable, message
    assert "secret-pw" not in message


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener never accepts: the TCP handshake completes (the kernel's
    backlog) and then the server says nothing, as a hung database would."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
async def test_a_server_that_never_answers_times_out_retryably(
    scheme: str, silent_port: int
) -> None:
    began = time.monotonic()
    url = f"{scheme}://someone:secret-pw@127.0.0.1:{silent_port}/db"
    message, non_retryable = failure(await run({"sql": "SELECT 1", "timeout": "2s"}, url))
    assert not non_retryable, message
    assert "secret-pw" not in message
    assert time.monotonic() - began < PROMPT


@pytest.mark.parametrize("scheme", ["postgresql", "mariadb"])
async def test_a_private_host_is_refused_unless_allowed(scheme: str) -> None:
    url = f"{scheme}://someone:pw@127.0.0.1:{closed_port()}/db"
    outcome = await run({"sql": "SELECT 1"}, url, allow_private=False)
    message, non_retryable = failure(outcome)
    assert non_retryable
    assert outcome.error is not None and outcome.error["type"] == "BlockedAddress"
    assert "loopback" in message


async def test_mariadb_wrong_password_is_not_retryable(mariadb: MariaDb) -> None:
    message, non_retryable = failure(
        await run({"sql": "SELECT 1"}, mariadb.url(password="wrong-password-123"))
    )
    assert non_retryable
    assert "Access denied" in message
    assert "wrong-password-123" not in message


async def test_mariadb_values_come_back_as_json(mariadb: MariaDb) -> None:
    output = await ok(
        {
            "sql": "SELECT CAST(12.50 AS DECIMAL(6,2)) AS price, CAST('2026-01-02 03:04:05' "
            "AS DATETIME) AS at, CAST(%s AS BINARY) AS raw"
        }
        | {"params": ["hi"]},
        mariadb.url(),
    )
    assert output["rows"] == [{"price": "12.50", "at": "2026-01-02T03:04:05", "raw": "aGk="}]


async def test_postgres_unknown_role_and_database_are_not_retryable(pg_database: str) -> None:
    for url in (
        "postgresql://no_such_role_xyz:pw@127.0.0.1:5432/" + pg_database,
        "postgresql://postgres@127.0.0.1:5432/no_such_database_xyz",
    ):
        message, non_retryable = failure(await run({"sql": "SELECT 1"}, url))
        assert non_retryable, message
        assert "does not exist" in message


class PasswordAsker:
    """A PostgreSQL server's first words, enough for a client to send its password: it
    answers the SSL request with 'N', the startup message with a cleartext-password request,
    and records what comes back (nothing, when the client has no password to give)."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                length = int.from_bytes(await reader.readexactly(4), "big")
                body = await reader.readexactly(length - 4)
                if body[:4] == (80877103).to_bytes(4, "big"):  # SSLRequest
                    writer.write(b"N")
                    continue
                break
            writer.write(b"R" + (8).to_bytes(4, "big") + (3).to_bytes(4, "big"))
            await writer.drain()
            kind = await reader.readexactly(1)
            length = int.from_bytes(await reader.readexactly(4), "big")
            self.received.append(kind + await reader.readexactly(length - 4))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_postgres_never_lends_the_workers_own_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL without a password gets none: not the worker's PGPASSWORD, not its ~/.pgpass."""
    passfile = tmp_path / "pgpass"
    passfile.write_text("*:*:*:*:worker-passfile-secret\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSWORD", "worker-env-secret")
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    asker = PasswordAsker()
    async with asker as port:
        message, non_retryable = failure(
            await run({"sql": "SELECT 1"}, f"postgresql://someone@127.0.0.1:{port}/db")
        )
        with_password = await run({"sql": "SELECT 1"}, f"postgresql://u:given@127.0.0.1:{port}/d")
    assert non_retryable
    assert "no password supplied" in message
    assert with_password.error is not None
    assert asker.received == [b"pgiven\0"]  # only the URL's own password was ever sent


async def test_postgres_values_come_back_as_json(pg_database: str) -> None:
    output = await ok(
        {
            "sql": "SELECT 12.50::numeric AS price, '2026-01-02T03:04:05Z'::timestamptz AS at, "
            "'\\x6869'::bytea AS raw, '{\"a\": [1, 2]}'::jsonb AS doc, "
            "'00000000-0000-0000-0000-000000000001'::uuid AS id, interval '90 seconds' AS wait"
        },
        pg_url(pg_database),
    )
    row = output["rows"][0]
    assert row["price"] == "12.50"
    assert datetime.fromisoformat(row["at"]) == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert row["raw"] == "aGk="
    assert row["doc"] == {"a": [1, 2]}
    assert row["id"] == "00000000-0000-0000-0000-000000000001"
    assert row["wait"] == 90.0


async def test_exactly_one_statement_runs(db: Db) -> None:
    table = db.table()
    await create(db, table)
    message, non_retryable = failure(
        await run({"sql": f"SELECT 1; COMMIT; DROP TABLE {table}"}, db.url)
    )
    assert non_retryable, message
    await ok({"sql": f"SELECT count(*) AS n FROM {table}"}, db.url)  # still there


async def test_cancelling_a_step_stops_its_statement(db: Db) -> None:
    """A cancelled step (execution cancelled, step timeout) leaves nothing running: the
    server cancels the statement (PostgreSQL's cancel request, MariaDB's KILL QUERY, SQLite's
    interrupt), so its locks go too."""
    marker = f"dbq_cancel_{uuid.uuid4().hex[:8]}"
    sql = f"{db.sleep_sql} /* {marker} */"
    attempt = asyncio.create_task(run({"sql": sql, "mode": "write", "timeout": "60s"}, db.url))
    assert await _until(lambda: _running(db, marker), lambda n: n == 1)
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    assert await _until(lambda: _running(db, marker), lambda n: n == 0)


async def _running(db: Db, marker: str) -> int:
    """How many statements tagged ``marker`` run now (SQLite: whether one holds the write
    lock, the only trace a statement leaves that another connection can see)."""
    if db.kind == "sqlite":
        conn = sqlite3.connect(db.url.removeprefix("sqlite:///"), timeout=0)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return 0
        except sqlite3.OperationalError:
            return 1
        finally:
            conn.close()
    if db.kind == "postgresql":
        sql = "SELECT count(*) AS n FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND "
        sql += f"query LIKE '%{marker}%'"
    else:
        sql = "SELECT count(*) AS n FROM information_schema.processlist WHERE id <> "
        sql += f"connection_id() AND command = 'Query' AND info LIKE '%{marker}%'"
    output = await ok({"sql": sql}, db.url)
    return int(output["rows"][0]["n"])


async def _until(probe: Any, done: Any, bound: float = PROMPT) -> bool:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if done(await probe()):
            return True
        await asyncio.sleep(0.1)
    return False


# -- SQLite specifics ------------------------------------------------------------------------


async def test_sqlite_refuses_a_conveyor_database(tmp_path: Path) -> None:
    with fresh_database("sqlite", tmp_path) as url:
        for mode in ("read", "write"):
            message, non_retryable = failure(await run({"sql": "SELECT 1", "mode": mode}, url))
            assert non_retryable
            assert "Conveyor database" in message


async def test_postgres_refuses_a_conveyor_database(tmp_path: Path) -> None:
    with fresh_database("postgres", tmp_path) as url:
        for mode in ("read", "write"):
            message, non_retryable = failure(await run({"sql": "SELECT 1", "mode": mode}, url))
            assert non_retryable
            assert "Conveyor database" in message


async def test_sqlite_never_creates_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    for mode in ("read", "write"):
        for url in (f"sqlite:///{missing}", f"sqlite:///{missing}?mode=rwc"):
            message, non_retryable = failure(await run({"sql": "SELECT 1", "mode": mode}, url))
            assert non_retryable, message
    assert not missing.exists()


async def test_sqlite_reaches_no_other_file(tmp_path: Path) -> None:
    """ATTACH and VACUUM INTO would read or write any file the worker can reach."""
    path = tmp_path / "data.db"
    sqlite3.connect(path).close()
    other = tmp_path / "other.db"
    for sql in (f"VACUUM INTO '{other}'", f"ATTACH 'file:{other}?mode=rwc' AS x"):
        for mode in ("read", "write"):
            message, non_retryable = failure(
                await run({"sql": sql, "mode": mode}, f"sqlite:///{path}")
            )
            assert non_retryable
            # VACUUM also fails for running inside the step's transaction; ATTACH only for
            # the limit of attached databases, which holds for both.
            assert "attached" in message or sql.startswith("VACUUM"), message
    assert not other.exists()


# -- through the app, on both Conveyor backends -----------------------------------------------


async def test_a_template_in_sql_is_rejected_pointing_to_params(conveyor: Conveyor) -> None:
    definition = {
        "name": "bad-sql",
        "nodes": [
            {
                "id": "q",
                "type": "db.query",
                "config": {"credential": "db", "sql": "SELECT * FROM t WHERE id = {{ input.id }}"},
            }
        ],
    }
    with pytest.raises(DefinitionError) as raised:
        await conveyor.apply(definition)
    problem = raised.value.problems[0]
    assert (problem.node_id, problem.path) == ("q", "config.sql")
    assert "params" in problem.message


async def test_braces_that_are_not_a_template_are_kept_in_sql(conveyor: Conveyor) -> None:
    """A PostgreSQL array literal looks like a template to a glance but reads no data."""
    await conveyor.apply(
        {
            "name": "array-literal",
            "nodes": [
                {
                    "id": "q",
                    "type": "db.query",
                    "config": {"credential": "db", "sql": "SELECT '{{1,2},{3,4}}'::int[] AS m"},
                }
            ],
        }
    )


class LiteralConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(json_schema_extra={"x-template": False})
    value: Any = None


@node("test.literal", config=LiteralConfig)
async def literal_node(ctx: NodeContext, config: LiteralConfig) -> dict[str, Any]:
    return {"text": config.text, "value": config.value}


async def test_the_runner_passes_literal_fields_unrendered(conveyor: Conveyor) -> None:
    """A field marked "x-template": false reaches the node as written; the others render."""
    conveyor.registry.register(literal_node)
    await conveyor.apply(
        {
            "name": "literal",
            "nodes": [
                {
                    "id": "n",
                    "type": "test.literal",
                    "config": {"text": "{{1,2},{3,4}} {% raw %}", "value": "{{ input.v }}"},
                }
            ],
        }
    )
    execution_id = (await conveyor.execute("literal", {"v": [1, 2]})).execution_id
    worker = Worker(conveyor.store, conveyor.registry, SystemClock())
    await asyncio.wait_for(worker.run_one(execution_id), timeout=30)
    execution = await conveyor.store.get_execution(conveyor.workspace_id, execution_id)
    assert execution["status"] == "succeeded", execution
    step = execution["steps"][0]
    assert step["output"] == {"text": "{{1,2},{3,4}} {% raw %}", "value": [1, 2]}


async def test_a_workflow_binds_template_params_and_keeps_sql_literal(
    conveyor: Conveyor, tmp_path: Path
) -> None:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    await conveyor.set_credential("shop", "database", {"url": f"sqlite:///{path}"})
    hostile = "'; DROP TABLE notes; --"
    await conveyor.apply(
        {
            "name": "store-note",
            "nodes": [
                {
                    "id": "put",
                    "type": "db.query",
                    "config": {
                        "credential": "shop",
                        "sql": "INSERT INTO notes (body) VALUES (:body)",
                        "params": {"body": "{{ input.body }}"},
                        "mode": "write",
                    },
                },
                {
                    "id": "get",
                    "type": "db.query",
                    "needs": ["put"],
                    "config": {"credential": "shop", "sql": "SELECT body FROM notes"},
                },
            ],
        }
    )
    execution_id = (await conveyor.execute("store-note", {"body": hostile})).execution_id
    worker = Worker(conveyor.store, conveyor.registry, SystemClock())
    await asyncio.wait_for(worker.run_one(execution_id), timeout=30)
    execution = await conveyor.store.get_execution(conveyor.workspace_id, execution_id)
    assert execution["status"] == "succeeded", execution
    get = next(s for s in execution["steps"] if s["node_id"] == "get")
    assert get["output"]["rows"] == [{"body": hostile}]


async def run_workflow(app: Conveyor, definition: dict[str, Any]) -> dict[str, Any]:
    await app.apply(definition)
    execution_id = (await app.execute(definition["name"], {})).execution_id
    worker = Worker(app.store, app.registry, SystemClock())
    await asyncio.wait_for(worker.run_one(execution_id), timeout=60)
    return await app.store.get_execution(app.workspace_id, execution_id)


def one_query(name: str, credential: str, **config: Any) -> dict[str, Any]:
    return {
        "name": name,
        "nodes": [
            {
                "id": "q",
                "type": "db.query",
                "retry": {"max_attempts": 3, "initial_interval": "10ms"},
                "config": {"credential": credential, "sql": "SELECT 1 AS one", **config},
            }
        ],
    }


async def test_through_the_app_a_wrong_password_fails_once_and_is_never_stored(
    conveyor: Conveyor, mariadb: MariaDb
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    await conveyor.set_credential("maria", "database", {"url": mariadb.url(password=wrong)})
    execution = await run_workflow(conveyor, one_query("bad-password", "maria"))
    assert execution["status"] == "failed"
    [step] = execution["steps"]
    assert step["attempt"] == 1  # not retried, though the policy allows 3
    assert "Access denied" in step["error"]["message"]
    assert wrong not in repr(execution)


async def test_through_the_app_a_refused_connection_is_retried(conveyor: Conveyor) -> None:
    url = f"postgresql://someone:pw-{uuid.uuid4().hex}@127.0.0.1:{closed_port()}/db"
    await conveyor.set_credential("down", "database", {"url": url})
    execution = await run_workflow(conveyor, one_query("refused", "down"))
    assert execution["status"] == "failed"
    assert sorted(s["attempt"] for s in execution["steps"]) == [1, 2, 3]


async def test_through_the_app_postgres_rows_reach_the_next_node(
    conveyor: Conveyor, pg_database: str
) -> None:
    await conveyor.set_credential("pg", "database", {"url": pg_url(pg_database)})
    definition = one_query("pg-rows", "pg", sql="SELECT %s::int + 1 AS n", params=[41])
    definition["nodes"].append(
        {
            "id": "after",
            "type": "transform",
            "needs": ["q"],
            "config": {"output": "{{ nodes.q.output.rows[0].n }}"},
        }
    )
    execution = await run_workflow(conveyor, definition)
    assert execution["status"] == "succeeded", execution
    after = next(s for s in execution["steps"] if s["node_id"] == "after")
    assert after["output"] == 42


async def test_through_a_guarded_app_a_loopback_database_is_refused(
    database_url: str, pg_database: str
) -> None:
    app = await Conveyor.open(database_url, build_registry(allow_private_network=False))
    try:
        await app.set_credential("pg", "database", {"url": pg_url(pg_database)})
        execution = await run_workflow(app, one_query("guarded", "pg"))
    finally:
        app.close()
    assert execution["status"] == "failed"
    [step] = execution["steps"]
    assert step["error"]["type"] == "BlockedAddress"


def test_registry_has_db_query() -> None:
    assert build_registry().get("db.query") is not None
