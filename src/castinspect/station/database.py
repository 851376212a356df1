"""The inspection log's database: SQLite or PostgreSQL, one connection type over both dialects,
and the schema's migrations.

The schema is versioned: ``MIGRATIONS`` is an append-only list, applied in order inside a
transaction, and the version reached is kept in ``schema_version``. A migration is its statements,
or where the dialects differ (SQLite cannot drop a constraint in place) one tuple per dialect.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import unquote, urlsplit

# Column types per dialect; the migrations are written once with these placeholders.
_TYPES = {
    "sqlite": {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL", "blob": "BLOB"},
    "postgresql": {"serial": "BIGSERIAL PRIMARY KEY", "real": "DOUBLE PRECISION", "blob": "BYTEA"},
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
)
SCHEMA_VERSION = len(MIGRATIONS)

COLUMNS = ("id", "time", "source", "label", "score", "p_defect", "decision", "threshold", "model",
           "scores", "latency_ms", "station", "image_sha256", "reasons", "familiarity", "familiar")


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
    """One connection and its dialect's differences: placeholders, connect, pragmas."""

    def __init__(self, target: Target) -> None:
        self.dialect = target.dialect
        if target.dialect == "sqlite":
            Path(target.location).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so migrations (DDL) are
            # transactional too. check_same_thread=False: callers serialise access with a lock.
            self.conn = sqlite3.connect(target.location, isolation_level=None, check_same_thread=False,
                                        timeout=30)
            self.conn.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            self.conn.execute("PRAGMA synchronous=FULL")  # a commit survives power loss, not only a crash
            self.conn.execute("PRAGMA busy_timeout=30000")
        else:
            try:
                import psycopg
            except ImportError:
                raise ImportError("PostgreSQL logs need: pip install 'castinspect[postgres]'") from None
            self.conn = psycopg.connect(target.location, autocommit=True, connect_timeout=10)

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
    def __init__(self, db: Database) -> None:
        self.db = db

    def __enter__(self) -> Database:
        # IMMEDIATE: take SQLite's write lock at the start, so two stations' migrations or
        # writes queue up instead of failing half-way.
        self.db.execute("BEGIN IMMEDIATE" if self.db.dialect == "sqlite" else "BEGIN")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def migrate(db: Database) -> int:
    """Bring the schema to ``SCHEMA_VERSION``; returns the version found before. A log written by
    a newer castinspect is refused rather than guessed at."""
    with db.transaction():
        if db.dialect == "postgresql":
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
    return found
