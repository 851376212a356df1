"""The inspection log's database: SQLite or PostgreSQL, one connection type over both dialects,
and the schema's migrations.

The schema is versioned: ``MIGRATIONS`` is an append-only list, applied in order inside a
transaction, and the version reached is kept in ``schema_version``. A migration is its statements,
or where the dialects differ (SQLite cannot drop a constraint in place) one tuple per dialect.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote, unquote, urlsplit

# Column types per dialect; the migrations are written once with these placeholders.
_TYPES = {
    # clustered: a table stored in its key's order, so a range of buckets is read in one sweep
    "sqlite": {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL", "blob": "BLOB",
               "clustered": "WITHOUT ROWID"},
    "postgresql": {"serial": "BIGSERIAL PRIMARY KEY", "real": "DOUBLE PRECISION", "blob": "BYTEA", "clustered": ""},
}

Migration = tuple[str, ...] | dict[str, tuple[str, ...]]

MIGRATIONS: tuple[Migration, ...] = (
    # 1: the inspections themselves
    (
        """CREATE TABLE inspections (
            seq {serial},
            id TEXT NOT NULL UNIQUE,
            time TEXT NOT NULL,
            source TEXT NOT NULL,
            label TEXT,
            score {real},
            p_defect {real},
            decision TEXT,
            threshold {real} NOT NULL,
            model TEXT NOT NULL,
            scores TEXT,
            latency_ms {real},
            station TEXT
        )""",
        "CREATE INDEX inspections_time ON inspections (time)",
        "CREATE INDEX inspections_decision ON inspections (decision, seq)",
    ),
    # 2: optional audit copies of the inspected photos, stored once per content (sha256)
    (
        """CREATE TABLE images (
            sha256 TEXT PRIMARY KEY,
            format TEXT,
            bytes {blob} NOT NULL,
            first_seen TEXT NOT NULL
        )""",
        "ALTER TABLE inspections ADD COLUMN image_sha256 TEXT",
    ),
    # 3: no threshold for a model that classifies defect types (no OK class, no p(defect))
    {
        "postgresql": ("ALTER TABLE inspections ALTER COLUMN threshold DROP NOT NULL",),
        # SQLite rebuilds the table (its documented way to change a constraint), rows and seq kept.
        "sqlite": (
            """CREATE TABLE inspections_3 (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                time TEXT NOT NULL,
                source TEXT NOT NULL,
                label TEXT,
                score REAL,
                p_defect REAL,
                decision TEXT,
                threshold REAL,
                model TEXT NOT NULL,
                scores TEXT,
                latency_ms REAL,
                station TEXT,
                image_sha256 TEXT
            )""",
            "INSERT INTO inspections_3 SELECT seq, id, time, source, label, score, p_defect, decision, "
            "threshold, model, scores, latency_ms, station, image_sha256 FROM inspections",
            "DROP TABLE inspections",
            "ALTER TABLE inspections_3 RENAME TO inspections",
            "CREATE INDEX inspections_time ON inspections (time)",
            "CREATE INDEX inspections_decision ON inspections (decision, seq)",
        ),
    },
    # 4: why a photo is unlike the training photos (a JSON list), and how familiar it looks
    (
        "ALTER TABLE inspections ADD COLUMN reasons TEXT",
        "ALTER TABLE inspections ADD COLUMN familiarity {real}",
        "ALTER TABLE inspections ADD COLUMN familiar INTEGER",
    ),
    # 5: a client's idempotency key (a retry returns the first answer); counters kept with the
    # rows, so the stats cost the same at a million rows as at ten; the log's identity, so that a
    # reconnect can tell it reached the same log; the drift monitor's first and last rows per model
    (
        "ALTER TABLE inspections ADD COLUMN request_key TEXT",
        "CREATE UNIQUE INDEX inspections_request_key ON inspections (request_key)",
        "CREATE INDEX inspections_model ON inspections (model, seq)",
        *(f"""CREATE TABLE inspection_{span} (
            {bucket} TEXT NOT NULL,
            model TEXT NOT NULL,
            decision TEXT NOT NULL,
            label TEXT NOT NULL,
            n BIGINT NOT NULL,
            PRIMARY KEY ({bucket}, model, decision, label)
        ) {{clustered}}""" for span, bucket in (("minutes", "minute"), ("hours", "hour"))),
        """CREATE TABLE inspection_totals (
            model TEXT NOT NULL,
            decision TEXT NOT NULL,
            label TEXT NOT NULL,
            n BIGINT NOT NULL,
            PRIMARY KEY (model, decision, label)
        ) {clustered}""",
        *(f"INSERT INTO inspection_{span} SELECT substr(time, 1, {width}), model, coalesce(decision, ''), "
          f"coalesce(label, ''), COUNT(*) FROM inspections GROUP BY substr(time, 1, {width}), model, decision, label"
          for span, width in (("minutes", 16), ("hours", 13))),
        "INSERT INTO inspection_totals SELECT model, coalesce(decision, ''), coalesce(label, ''), COUNT(*) "
        "FROM inspections GROUP BY model, decision, label",
        "ALTER TABLE schema_version ADD COLUMN log_id TEXT",
    ),
    # 6: messages for the line (MQTT), written with their records, sent in order, then deleted
    (
        """CREATE TABLE outbox (
            seq {serial},
            station TEXT NOT NULL,
            topic TEXT NOT NULL,
            payload TEXT NOT NULL,
            created TEXT NOT NULL
        )""",
        "CREATE INDEX outbox_station ON outbox (station, seq)",
    ),
    # 7: people's dispositions (append-only: the latest for a part is final, none is erased), the
    # review queue (``awaiting``), counters of the final decisions, and the model registry
    (
        """CREATE TABLE dispositions (
            seq {serial},
            id TEXT NOT NULL UNIQUE,
            inspection_id TEXT NOT NULL,
            decision TEXT NOT NULL,
            label TEXT,
            who TEXT NOT NULL,
            role TEXT NOT NULL,
            time TEXT NOT NULL,
            note TEXT
        )""",
        "CREATE INDEX dispositions_inspection ON dispositions (inspection_id, seq)",
        "ALTER TABLE inspections ADD COLUMN disposition TEXT",
        "ALTER TABLE inspections ADD COLUMN awaiting INTEGER",
        "UPDATE inspections SET awaiting = 1 WHERE decision = 'review' OR familiar = 0",
        "CREATE INDEX inspections_awaiting ON inspections (awaiting, seq)",
        *(f"""CREATE TABLE final_{span} (
            {bucket} TEXT NOT NULL,
            decision TEXT NOT NULL,
            n BIGINT NOT NULL,
            PRIMARY KEY ({bucket}, decision)
        ) {{clustered}}""" for span, bucket in (("minutes", "minute"), ("hours", "hour"))),
        "CREATE TABLE final_totals (decision TEXT PRIMARY KEY, n BIGINT NOT NULL)",
        *(f"INSERT INTO final_{span} SELECT substr(time, 1, {width}), decision, COUNT(*) FROM inspections "
          f"WHERE decision IS NOT NULL GROUP BY substr(time, 1, {width}), decision"
          for span, width in (("minutes", 16), ("hours", 13))),
        "INSERT INTO final_totals SELECT decision, COUNT(*) FROM inspections WHERE decision IS NOT NULL "
        "GROUP BY decision",
        """CREATE TABLE models (
            id TEXT PRIMARY KEY,
            created TEXT NOT NULL,
            source TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            bytes {blob} NOT NULL,
            data_fingerprint TEXT,
            metrics TEXT,
            classes TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 0,
            registered_by TEXT NOT NULL
        )""",
        """CREATE TABLE promotions (
            seq {serial},
            model TEXT NOT NULL,
            who TEXT NOT NULL,
            time TEXT NOT NULL
        )""",
    ),
    # 8: retention (``retention``): the counts of the rows deleted, so a listing's total is the
    # rows kept while the stats keep every count; photos found by the inspections that refer to them
    (
        """CREATE TABLE retired (
            model TEXT NOT NULL,
            decision TEXT NOT NULL,
            label TEXT NOT NULL,
            n BIGINT NOT NULL,
            PRIMARY KEY (model, decision, label)
        ) {clustered}""",
        "CREATE INDEX inspections_image ON inspections (image_sha256)",
    ),
    # 9: the anomaly model's p(defect), where one judges beside the classifier
    ("ALTER TABLE inspections ADD COLUMN anomaly {real}",),
)
SCHEMA_VERSION = len(MIGRATIONS)
IDENTITY_SINCE = 5  # the schema version that gave a log its identity

COLUMNS = ("id", "time", "source", "label", "score", "p_defect", "decision", "threshold", "model",
           "scores", "latency_ms", "station", "image_sha256", "reasons", "familiarity", "familiar",
           "request_key", "disposition", "awaiting", "anomaly")

# Time limits, so that a database that hangs (a network partition, a frozen server) or a lock held
# by another process costs a request a bounded wait, never the station: seconds.
CONNECT_TIMEOUT = 5
STATEMENT_TIMEOUT = 5  # PostgreSQL, per statement, server side
LOCK_TIMEOUT = 3  # PostgreSQL, waiting for a row or table lock
SQLITE_BUSY = 2  # SQLite, waiting for another process's write lock
MIGRATION_BUSY = 120  # a migration may wait for another station's (a table rebuild takes a while)


@dataclass(frozen=True)
class Target:
    dialect: str  # "sqlite" or "postgresql"
    location: str  # a file path (sqlite) or a libpq connection string (postgresql)

    def describe(self) -> str:
        """The target without a password, for logs and errors."""
        if self.dialect == "sqlite":
            return f"sqlite:{self.location}"
        parts = urlsplit(self.location)
        host = parts.hostname or "localhost"
        return f"postgresql://{parts.username or ''}@{host}:{parts.port or 5432}{parts.path}"


def parse_url(url: str | Path) -> Target:
    """``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``postgresql://...`` (also
    ``postgres://`` and ``postgresql+psycopg://``), or a bare file path (SQLite)."""
    text = str(url)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if not scheme:
        return Target("sqlite", text)
    if scheme == "sqlite":
        path = unquote(text[len("sqlite:///"):]) if text.lower().startswith("sqlite:///") else ""
        if not path:
            raise ValueError(f"{text}: expected sqlite:///relative.db or sqlite:////absolute/path.db")
        return Target("sqlite", path)
    if scheme.split("+")[0] in ("postgresql", "postgres"):
        return Target("postgresql", "postgresql://" + text.split("://", 1)[1])
    raise ValueError(f"{text}: unsupported database URL (sqlite:///FILE, postgresql://... or a file path)")


class Database:
    """One connection and its dialect's differences: placeholders, connect, pragmas, time limits.
    With ``create`` False a SQLite file that is not there is an error, not a new empty log."""

    def __init__(self, target: Target, create: bool = True) -> None:
        self.dialect = target.dialect
        self.committing = False
        if target.dialect == "sqlite":
            path = Path(target.location)
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            elif not path.is_file():
                raise FileNotFoundError(f"{target.location}: the inspection log is gone (moved or deleted)")
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so migrations (DDL) are
            # transactional too. check_same_thread=False: callers serialise access with a lock.
            # mode=rw: a reconnect opens the file that is there or fails; it never creates one.
            uri = f"file:{quote(str(path.absolute()))}?mode={'rwc' if create else 'rw'}"
            self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                                        timeout=SQLITE_BUSY)
            self.conn.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            self.conn.execute("PRAGMA synchronous=FULL")  # a commit survives power loss, not only a crash
            self.busy(SQLITE_BUSY)
            self.file = os.stat(path)
        else:
            try:
                import psycopg
            except ImportError:
                raise ImportError("PostgreSQL logs need: pip install 'castinspect[postgres]'") from None
            # Keepalives and tcp_user_timeout notice a peer that vanished (a partition), where the
            # kernel would otherwise retransmit for a quarter of an hour; the server-side timeouts
            # end a statement stuck behind a lock.
            self.conn = psycopg.connect(
                target.location, autocommit=True, connect_timeout=CONNECT_TIMEOUT, keepalives=1,
                keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
                tcp_user_timeout=STATEMENT_TIMEOUT * 2000,
                options=f"-c statement_timeout={STATEMENT_TIMEOUT * 1000} -c lock_timeout={LOCK_TIMEOUT * 1000}")
            self.file = None

    def busy(self, seconds: float) -> None:
        """How long SQLite waits for another connection's lock before it gives up (SQLITE_BUSY)."""
        if self.dialect == "sqlite":
            self.conn.execute(f"PRAGMA busy_timeout={int(seconds * 1000)}")

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.dialect == "postgresql" else statement

    def execute(self, statement: str, params: Iterable[Any] = ()):
        return self.conn.execute(self.sql(statement), tuple(params))

    def executemany(self, statement: str, rows: list[tuple]) -> None:
        if self.dialect == "postgresql":
            with self.conn.cursor() as cur:
                cur.executemany(self.sql(statement), rows)
        else:
            self.conn.executemany(statement, rows)

    def transaction(self) -> "Transaction":
        return Transaction(self)

    def close(self) -> None:
        self.conn.close()


class Transaction:
    """BEGIN ... COMMIT, or ROLLBACK on an error. ``db.committing`` stays True when COMMIT itself
    failed: over a network the transaction may then have committed without our hearing."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def __enter__(self) -> Database:
        self.db.committing = False
        # IMMEDIATE: take SQLite's write lock at the start, so two stations' migrations or
        # writes queue up instead of failing half-way.
        self.db.execute("BEGIN IMMEDIATE" if self.db.dialect == "sqlite" else "BEGIN")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.db.committing = True
            self.db.execute("COMMIT")
            self.db.committing = False
            return
        try:
            self.db.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - the connection is gone: the transaction went with it
            pass


def migrate(db: Database) -> tuple[int, str | None]:
    """Bring the schema to ``SCHEMA_VERSION``; returns the version found before and the log's
    identity (made once, kept in ``schema_version``). A log written by a newer castinspect is
    refused rather than guessed at."""
    db.busy(MIGRATION_BUSY)
    with db.transaction():
        if db.dialect == "postgresql":
            # A migration may take long on a big log, or wait for another station's: no time limit.
            db.execute("SET LOCAL statement_timeout = 0")
            db.execute("SET LOCAL lock_timeout = 0")
            # Two stations starting at once against one empty database: one migrates, one waits.
            db.execute("SELECT pg_advisory_xact_lock(4711)")
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_version").fetchone()
        found = row[0] if row else 0
        if found > SCHEMA_VERSION:
            raise RuntimeError(f"the log has schema version {found}, newer than this castinspect "
                               f"understands ({SCHEMA_VERSION}); upgrade castinspect")
        for migration in MIGRATIONS[found:]:
            statements = migration[db.dialect] if isinstance(migration, dict) else migration
            for statement in statements:
                db.execute(statement.format(**_TYPES[db.dialect]))
        if row is None:
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        else:
            db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        log_id = None
        if SCHEMA_VERSION >= IDENTITY_SINCE:
            db.execute("UPDATE schema_version SET log_id = ? WHERE log_id IS NULL", (uuid.uuid4().hex,))
            log_id = db.execute("SELECT log_id FROM schema_version").fetchone()[0]
    db.busy(SQLITE_BUSY)
    return found, log_id


def identity(db: Database) -> tuple[int, str | None]:
    """The schema version and identity of the log this connection reached."""
    row = db.execute("SELECT version, log_id FROM schema_version").fetchone()
    if row is None:
        raise RuntimeError("the inspection log has no schema version (not an inspection log)")
    return int(row[0]), row[1]
