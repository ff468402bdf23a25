"""A SQLite judge cache (WAL): a judged (judge, prompt template, metric, question, answer) is never paid for twice.

Several processes may judge at once: before paying for an item, a process *claims* it in one write transaction;
items claimed by another live process are waited for, not requested again. A claim dies with its process: claims
of a process that no longer runs (killed, crashed) are taken over at once, a process that fails releases its own,
and claims older than `stale_after` seconds are taken over in any case. Failed requests are not cached, so a rerun
retries them.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from turncoat.core import paths
from turncoat.judging.scores import JudgeScore

SCHEMA = """
CREATE TABLE IF NOT EXISTS judgements (
    key TEXT PRIMARY KEY, judge TEXT NOT NULL, metric TEXT NOT NULL, score REAL, special TEXT,
    number_mass REAL, distribution TEXT, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, claimed REAL NOT NULL);
CREATE TABLE IF NOT EXISTS validations (judge TEXT NOT NULL, reference TEXT NOT NULL, figures TEXT NOT NULL,
    created TEXT NOT NULL);
"""


def default_cache_path() -> Path:
    """$TURNCOAT_JUDGE_CACHE, else judge_cache.sqlite in turncoat's cache (the test suite points it elsewhere, so
    its judgements never land in a user's cache)."""
    if os.environ.get(paths.JUDGE_CACHE_ENV):
        return Path(os.environ[paths.JUDGE_CACHE_ENV]).expanduser()
    return paths.cache_dir() / "judge_cache.sqlite"


def cache_key(judge: str, template: str, metric: str, question: str, answer: str) -> str:
    return hashlib.sha256(json.dumps([judge, template, metric, question, answer]).encode()).hexdigest()


def _dead_owners(owners: Iterable[str]) -> list[str]:
    """Claim owners (`pid-token`) whose process no longer runs on this machine."""
    dead = []
    for owner in owners:
        pid = owner.split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            dead.append(owner)
        except PermissionError:  # alive, someone else's
            pass
    return dead


class JudgeCache:
    def __init__(self, path: str | Path | None = None, stale_after: float = 600.0):
        self.path = Path(path) if path else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # the pid first: `_dead_owners` reads it
        self.stale_after = stale_after
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=60000")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def get_many(self, keys: Iterable[str]) -> dict[str, JudgeScore]:
        found = {}
        keys = list(keys)
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            rows = self.db.execute(
                f"SELECT key, score, special, number_mass, distribution FROM judgements WHERE key IN "
                f"({','.join('?' * len(chunk))})", chunk).fetchall()
            for key, score, special, mass, distribution in rows:
                found[key] = JudgeScore(score, special, mass or 0.0, json.loads(distribution or "{}"))
        return found

    def claim(self, keys: Iterable[str]) -> set[str]:
        """Claim the keys nobody has judged or is judging; returns those now ours to pay for."""
        keys = list(keys)
        now = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("DELETE FROM claims WHERE claimed < ?", (now - self.stale_after,))
            owners = [row[0] for row in self.db.execute("SELECT DISTINCT owner FROM claims WHERE owner != ?",
                                                        (self.owner,))]
            self.db.executemany("DELETE FROM claims WHERE owner = ?", [(o,) for o in _dead_owners(owners)])
            for key in keys:
                self.db.execute("INSERT OR IGNORE INTO claims (key, owner, claimed) SELECT ?, ?, ? WHERE NOT EXISTS "
                                "(SELECT 1 FROM judgements WHERE key = ?)", (key, self.owner, now, key))
            mine = set()
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                mine.update(row[0] for row in self.db.execute(
                    f"SELECT key FROM claims WHERE owner = ? AND key IN ({','.join('?' * len(chunk))})",
                    [self.owner, *chunk]))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return mine

    def put_many(self, items: Iterable[tuple[str, str, str, JudgeScore]]) -> None:
        """Store (key, judge, metric, score) results and release their claims; failed scores only release."""
        created = datetime.now(UTC).isoformat(timespec="seconds")
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for key, judge, metric, score in items:
                if score.status == "ok":
                    self.db.execute(
                        "INSERT OR REPLACE INTO judgements VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (key, judge, metric, score.score, score.special, score.number_mass,
                         json.dumps(score.distribution), created))
                self.db.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, self.owner))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def release_all(self) -> None:
        """Give up every claim this cache holds (a failed judging run), so others need not wait for them."""
        self.db.execute("DELETE FROM claims WHERE owner = ?", (self.owner,))

    def record_validation(self, judge: str, reference: str, figures: dict) -> None:
        """Keep a judge's measured agreement, so every later report that uses the judge can state it."""
        self.db.execute("INSERT INTO validations VALUES (?, ?, ?, ?)",
                        (judge, reference, json.dumps(figures), datetime.now(UTC).isoformat(timespec="seconds")))

    def latest_validation(self, judge: str) -> dict | None:
        row = self.db.execute("SELECT reference, figures, created FROM validations WHERE judge = ? ORDER BY rowid DESC "
                              "LIMIT 1", (judge,)).fetchone()
        return None if row is None else {"reference": row[0], "created": row[2], **json.loads(row[1])}

    def stats(self) -> dict:
        rows = self.db.execute("SELECT judge, metric, COUNT(*), SUM(score IS NULL AND special IS NULL), "
                               "SUM(special IS NOT NULL) FROM judgements GROUP BY judge, metric").fetchall()
        claims = self.db.execute("SELECT COUNT(*) FROM claims").fetchone()[0]
        return {"path": str(self.path), "bytes": self.path.stat().st_size if self.path.exists() else 0,
                "judgements": sum(r[2] for r in rows), "open_claims": claims,
                "by_judge": [{"judge": r[0], "metric": r[1], "judgements": r[2], "no_score": r[3], "special": r[4]}
                             for r in rows]}

    def clear(self, judge: str | None = None) -> int:
        if judge is None:
            removed = self.db.execute("DELETE FROM judgements").rowcount
            self.db.execute("DELETE FROM claims")
        else:
            removed = self.db.execute("DELETE FROM judgements WHERE judge = ?", (judge,)).rowcount
        self.db.execute("VACUUM")
        return removed
