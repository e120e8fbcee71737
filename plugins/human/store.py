"""The label store: SQLAlchemy models and the few transactions the app and the provider need.

SQLite (the default) runs in WAL mode with ``synchronous=FULL`` and takes the write lock
at the start of every writing transaction (``BEGIN IMMEDIATE``), so concurrent annotators
queue instead of failing and a label acknowledged to a client is on disk even if the
server is killed the next instant. PostgreSQL works with the same code through its URL
(``postgresql+psycopg://user@host/db``); the only dialect-specific piece is the
``INSERT ... ON CONFLICT`` constructor, which both dialects offer.

Uniqueness is enforced by the database, not by the app: an item is unique per
(project, content key), a label per (item, annotator), an assignment per (item,
annotator). That makes re-submits and re-pushed pairs idempotent under any concurrency.

New tables appear in an existing database on the next start (``create_all`` adds missing
tables and never alters existing ones), which is how ``login_sessions`` arrived.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator, Sequence

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    case,
    create_engine,
    delete,
    event,
    func,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

CHOICES = ("a", "b", "tie", "skip")
SIDES = ("left", "right", "tie", "skip")
ASSIGNMENT_TTL = timedelta(minutes=30)
"""An item shown to an annotator is reserved for them this long before others may take it."""
MAX_SECONDS = 3600.0
"""Time-per-label is capped: a tab left open overnight is not an hour of annotation."""
SESSION_TTL = timedelta(days=30)
"""A browser sign-in lasts this long (or until sign-out), then the token is asked for again."""
MAX_ITEM_ID = 2**31 - 1
"""Item ids are SQL INTEGERs (32-bit on PostgreSQL): a larger id names no item and is refused as bad input."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def hash_token(token: str) -> str:
    """Tokens are 256-bit random strings, so a plain SHA-256 is a safe stored form."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def item_key(prompt: Any, response_a: str, response_b: str) -> str:
    """Content key of a pair: the same pair pushed twice is one item."""
    blob = json.dumps([prompt, response_a, response_b], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def side_to_choice(side: str, swapped: bool) -> str:
    """A displayed side in the item's own terms: with ``swapped``, response B was on the left."""
    if side == "left":
        return "b" if swapped else "a"
    if side == "right":
        return "a" if swapped else "b"
    return side


def as_messages(prompt: Any) -> list[dict[str, str]]:
    """A prompt as chat messages: a plain string is one user turn (so both forms are one item)."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]


class Base(DeclarativeBase):
    pass


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    overlap: Mapped[int] = mapped_column(Integer, default=1)
    principles: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("project_id", "key", name="uq_item_project_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    prompt: Mapped[Any] = mapped_column(JSON)
    response_a: Mapped[str] = mapped_column(Text)
    response_b: Mapped[str] = mapped_column(Text)
    origin_run: Mapped[str | None] = mapped_column(Text, nullable=True)
    origin_stage: Mapped[str | None] = mapped_column(String(200), nullable=True)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Annotator(Base):
    __tablename__ = "annotators"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LoginSession(Base):
    """A browser sign-in: the cookie holds a random id whose hash is stored here; sign-out deletes the row."""

    __tablename__ = "login_sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class Assignment(Base):
    """An item shown to an annotator, with the side order they saw (randomised, recorded)."""

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("item_id", "annotator_id", name="uq_assignment_item_annotator"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id", ondelete="CASCADE"), index=True)
    swapped: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Label(Base):
    """One annotator's verdict on one item, in the item's own terms (``a`` is response_a)."""

    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("item_id", "annotator_id", name="uq_label_item_annotator"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id", ondelete="CASCADE"), index=True)
    choice: Mapped[str] = mapped_column(String(4))
    swapped: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    principles: Mapped[list] = mapped_column(JSON, default=list)
    comment: Mapped[str] = mapped_column(Text, default="")
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class StoreError(ValueError):
    """A request the store refuses (unknown item, bad choice, duplicate name)."""


class NotFound(StoreError):
    """No such item (in that project)."""


class NotAssigned(StoreError):
    """The item was never shown to this annotator, so the side they picked means nothing."""


def check_item_id(value: Any) -> int:
    """``value`` as an item id, or ``StoreError`` naming the field: a bool is not an int, and ids are 1..MAX_ITEM_ID."""
    if type(value) is not int or not 1 <= value <= MAX_ITEM_ID:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise StoreError(f"item_id must be an integer from 1 to {MAX_ITEM_ID}, got {shown}")
    return value


@dataclass(frozen=True)
class LabelRow:
    """A label joined with its annotator's name, as agreement and export read them."""

    item_id: int
    annotator: str
    choice: str
    seconds: float | None
    principles: tuple[str, ...] = ()
    comment: str = ""


def normalise_url(url: str) -> str:
    """A bare path is a SQLite file; ``postgresql://`` uses psycopg 3."""
    if "://" not in url:
        return f"sqlite:///{url}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class Store:
    """One database of projects, items, annotators and labels."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = normalise_url(url)
        if self.url.startswith("sqlite"):
            self.engine = create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 60},
                                        pool_size=32, max_overflow=32)
            _sqlite_pragmas(self.engine)
        else:
            self.engine = create_engine(self.url, pool_size=16, max_overflow=32, pool_pre_ping=True)
        self.dialect = self.engine.dialect.name
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(alignkit_write=True), expire_on_commit=False)
        self._write_light = sessionmaker(self.engine.execution_options(alignkit_write=True, alignkit_durable=False),
                                         expire_on_commit=False)
        if create:
            Base.metadata.create_all(self.engine)

    @property
    def display_url(self) -> str:
        """The URL with any password masked: safe for logs and summary.json."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    # -- sessions --------------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self, durable: bool = True) -> Iterator[Session]:
        """A writing transaction, committed on exit (SQLite: holds the write lock throughout).

        SQLite commits with ``durable=False`` skip the fsync (``synchronous=NORMAL``): still
        safe when the process is killed, and the next durable commit flushes them too. Used
        for assignments, never for labels.
        """
        session = (self._write if durable else self._write_light)()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        session = self._read()
        try:
            yield session
        finally:
            session.close()  # ends the transaction; loaded objects stay readable (detached)

    def _insert(self, table: Any) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:  # pragma: no cover - the two tested dialects
            raise StoreError(f"unsupported database {self.dialect!r}: use SQLite or PostgreSQL")
        return insert(table)

    # -- projects and items ----------------------------------------------------------------

    def ensure_project(self, name: str, overlap: int | None = None,
                       principles: Sequence[str] | None = None) -> int:
        """The id of project ``name``, created on first use; ``overlap``/``principles`` update it."""
        if overlap is not None and overlap < 1:
            raise StoreError(f"overlap must be at least 1, got {overlap}")
        with self.write() as s:
            stmt = self._insert(Project.__table__).values(
                name=name, overlap=overlap or 1, principles=list(principles or []), created_at=utcnow())
            s.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
            project = s.scalars(select(Project).where(Project.name == name)).one()
            if overlap is not None:
                project.overlap = overlap
            if principles is not None:
                project.principles = list(principles)
            return project.id

    def project(self, name: str) -> Project | None:
        with self.read() as s:
            return s.scalars(select(Project).where(Project.name == name)).one_or_none()

    def projects(self) -> list[Project]:
        with self.read() as s:
            return list(s.scalars(select(Project).order_by(Project.id)))

    def add_items(self, project: str, pairs: Iterable[dict[str, Any]], *, overlap: int | None = None,
                  origin_run: str | None = None, origin_stage: str | None = None) -> list[int]:
        """Push pairs (``prompt``, ``response_a``, ``response_b``, optional ``meta``); returns item ids in order.

        A pair already in the project keeps its id and labels: pushing is idempotent.
        """
        project_id = self.ensure_project(project, overlap)
        rows = []
        for pair in pairs:
            prompt = as_messages(pair["prompt"])
            rows.append({
                "project_id": project_id,
                "key": item_key(prompt, pair["response_a"], pair["response_b"]),
                "prompt": prompt, "response_a": pair["response_a"], "response_b": pair["response_b"],
                "origin_run": pair.get("origin_run", origin_run),
                "origin_stage": pair.get("origin_stage", origin_stage),
                "meta": dict(pair.get("meta") or {}), "created_at": utcnow(),
            })
        if not rows:
            return []
        with self.write() as s:
            for start in range(0, len(rows), 500):
                stmt = self._insert(Item.__table__).values(rows[start:start + 500])
                s.execute(stmt.on_conflict_do_nothing(index_elements=["project_id", "key"]))
            keys = [r["key"] for r in rows]
            found: dict[str, int] = {}
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                found.update(s.execute(select(Item.key, Item.id).where(
                    Item.project_id == project_id, Item.key.in_(chunk))).all())
        return [found[k] for k in keys]

    def items(self, project: str) -> list[Item]:
        with self.read() as s:
            return list(s.scalars(select(Item).join(Project).where(Project.name == project).order_by(Item.id)))

    def item(self, item_id: int) -> Item | None:
        with self.read() as s:
            return s.get(Item, item_id)

    # -- annotators ------------------------------------------------------------------------

    def add_annotator(self, name: str, *, admin: bool = False) -> str:
        """Create annotator ``name``; returns the secret token (shown once; only its hash is stored)."""
        name = name.strip()
        if not name or len(name) > 200:
            raise StoreError("an annotator needs a name of 1 to 200 characters")
        token = secrets.token_urlsafe(32)
        with self.write() as s:
            if s.scalars(select(Annotator).where(Annotator.name == name)).one_or_none() is not None:
                raise StoreError(f"annotator {name!r} already exists; pick another name or use rotate-token")
            s.add(Annotator(name=name, token_hash=hash_token(token), is_admin=admin, created_at=utcnow()))
        return token

    def rotate_token(self, name: str) -> str:
        """A new token for ``name``; the old one and every browser signed in with it stop working."""
        token = secrets.token_urlsafe(32)
        with self.write() as s:
            annotator = s.scalars(select(Annotator).where(Annotator.name == name)).one_or_none()
            if annotator is None:
                raise StoreError(f"no annotator named {name!r}")
            annotator.token_hash = hash_token(token)
            s.execute(delete(LoginSession).where(LoginSession.annotator_id == annotator.id))
        return token

    def authenticate(self, token: str | None) -> Annotator | None:
        if not token or len(token) > 200:
            return None
        with self.read() as s:
            return s.scalars(select(Annotator).where(Annotator.token_hash == hash_token(token))).one_or_none()

    # -- browser sessions ------------------------------------------------------------------

    def start_session(self, annotator_id: int, ttl: timedelta = SESSION_TTL) -> str:
        """A new sign-in for the annotator; returns the secret session id for the cookie (only its hash is stored)."""
        session_id = secrets.token_urlsafe(32)
        now = utcnow()
        with self.write() as s:
            s.execute(delete(LoginSession).where(LoginSession.expires_at <= now))  # expired ones: tidy as we go
            s.add(LoginSession(id_hash=hash_token(session_id), annotator_id=annotator_id, created_at=now,
                               expires_at=now + ttl))
        return session_id

    def session_annotator(self, session_id: str | None) -> Annotator | None:
        """Who a session cookie belongs to; None once it was ended, expired or never existed."""
        if not session_id or len(session_id) > 200:
            return None
        with self.read() as s:
            return s.scalars(select(Annotator).join(LoginSession, LoginSession.annotator_id == Annotator.id)
                             .where(LoginSession.id_hash == hash_token(session_id),
                                    LoginSession.expires_at > utcnow())).one_or_none()

    def end_session(self, session_id: str | None) -> None:
        """Sign-out: the session id stops working everywhere, including in a copied cookie."""
        if session_id and len(session_id) <= 200:
            with self.write() as s:
                s.execute(delete(LoginSession).where(LoginSession.id_hash == hash_token(session_id)))

    def annotators(self) -> list[Annotator]:
        with self.read() as s:
            return list(s.scalars(select(Annotator).order_by(Annotator.id)))

    def has_admin(self) -> bool:
        with self.read() as s:
            return s.scalar(select(func.count()).select_from(Annotator).where(Annotator.is_admin)) > 0

    # -- assignment and labelling ------------------------------------------------------------

    def next_item(self, project: str, annotator_id: int, *, rng: random.Random | None = None
                  ) -> tuple[Item, Assignment] | None:
        """The item this annotator should label next, reserved for them with a random side order.

        An item the annotator was already shown and has not labelled comes back first (a
        reload shows the same item, same sides). Otherwise the oldest item that still needs
        labels, counting fresh reservations by others, so ``overlap`` annotators see each item.
        """
        rng = rng or random.SystemRandom()
        labelled = select(Label.item_id).where(Label.annotator_id == annotator_id)
        with self.read() as s:  # most calls end here: a reload, or the item after a label
            project_row = s.scalars(select(Project).where(Project.name == project)).one_or_none()
            if project_row is None:
                return None
            open_own = s.execute(
                select(Item, Assignment).join(Assignment, Assignment.item_id == Item.id)
                .where(Item.project_id == project_row.id, Assignment.annotator_id == annotator_id,
                       Item.id.not_in(labelled))
                .order_by(Assignment.id).limit(1)).first()
            if open_own is not None:
                return open_own[0], open_own[1]
        with self.write(durable=False) as s:
            votes = (select(func.count()).select_from(Label)
                     .where(Label.item_id == Item.id, Label.choice != "skip").scalar_subquery())
            cutoff = utcnow() - ASSIGNMENT_TTL
            reserved = (select(func.count()).select_from(Assignment)
                        .where(Assignment.item_id == Item.id, Assignment.annotator_id != annotator_id,
                               Assignment.created_at > cutoff,
                               ~select(Label.id).where(Label.item_id == Item.id,
                                                       Label.annotator_id == Assignment.annotator_id).exists())
                        .scalar_subquery())
            base = (select(Item).where(Item.project_id == project_row.id, Item.id.not_in(labelled),
                                       votes < project_row.overlap).order_by(Item.id))
            item = s.scalars(base.where(votes + reserved < project_row.overlap).limit(1)).first()
            if item is None:  # everything is reserved: help with the oldest open item
                item = s.scalars(base.limit(1)).first()
            if item is None:
                return None
            stmt = self._insert(Assignment.__table__).values(
                item_id=item.id, annotator_id=annotator_id, swapped=rng.random() < 0.5, created_at=utcnow())
            s.execute(stmt.on_conflict_do_nothing(index_elements=["item_id", "annotator_id"]))
            assignment = s.scalars(select(Assignment).where(
                Assignment.item_id == item.id, Assignment.annotator_id == annotator_id)).one()
            return item, assignment

    def assignment(self, item_id: int, annotator_id: int) -> Assignment | None:
        with self.read() as s:
            return s.scalars(select(Assignment).where(
                Assignment.item_id == item_id, Assignment.annotator_id == annotator_id)).one_or_none()

    def submit(self, item_id: int, annotator_id: int, choice: str | None = None, *, side: str | None = None,
               project: str | None = None, principles: Sequence[str] = (), comment: str = "",
               seconds: float | None = None) -> tuple[str, int]:
        """Store one annotator's label; returns (``stored``|``unchanged``|``updated``, label id).

        Give ``choice`` in the item's terms (``a`` = response_a), or ``side`` as the
        annotator saw it (``left``/``right``/``tie``/``skip``), which needs their assignment
        (``NotAssigned`` otherwise). One durable transaction: once this returns, the label is
        on disk. Submitting the same label again changes nothing; a different choice replaces
        the annotator's earlier one.
        """
        item_id = check_item_id(item_id)
        if side is not None and side not in SIDES:
            raise StoreError(f"choice must be one of {', '.join(SIDES)}, got {side!r}")
        if side is None and choice not in CHOICES:
            raise StoreError(f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
        principles = [str(p)[:200] for p in principles][:50]
        comment = (comment or "")[:10000]
        with self.write() as s:
            item = s.get(Item, item_id)
            if item is None or (project is not None and item.project_id != s.scalar(
                    select(Project.id).where(Project.name == project))):
                raise NotFound(f"no item {item_id}" + (f" in project {project!r}" if project else ""))
            assignment = s.scalars(select(Assignment).where(
                Assignment.item_id == item_id, Assignment.annotator_id == annotator_id)).one_or_none()
            if side is not None:
                if assignment is None:
                    raise NotAssigned(f"item {item_id} was not assigned to this annotator")
                choice = side_to_choice(side, assignment.swapped)
            now = utcnow()
            if seconds is None and assignment is not None:
                seconds = (now - assignment.created_at).total_seconds()
            if seconds is not None:
                seconds = max(0.0, min(float(seconds), MAX_SECONDS))
            existing = s.scalars(select(Label).where(
                Label.item_id == item_id, Label.annotator_id == annotator_id)).one_or_none()
            if existing is not None:
                if (existing.choice, list(existing.principles or []), existing.comment) == (choice, principles, comment):
                    return "unchanged", existing.id
                existing.choice, existing.principles, existing.comment = choice, principles, comment
                existing.updated_at = now
                return "updated", existing.id
            stmt = self._insert(Label.__table__).values(
                item_id=item_id, annotator_id=annotator_id, choice=choice,
                swapped=None if assignment is None else assignment.swapped, principles=principles,
                comment=comment, seconds=seconds, created_at=now, updated_at=now)
            inserted = s.execute(stmt.on_conflict_do_nothing(index_elements=["item_id", "annotator_id"])).rowcount
            label_id = s.scalars(select(Label.id).where(
                Label.item_id == item_id, Label.annotator_id == annotator_id)).one()
            return ("stored" if inserted else "unchanged"), label_id

    # -- reading labels --------------------------------------------------------------------

    def labels(self, project: str, item_ids: Sequence[int] | None = None) -> list[LabelRow]:
        """Every label of ``project`` (or of ``item_ids``), oldest first."""
        query = (select(Label.item_id, Annotator.name, Label.choice, Label.seconds, Label.principles, Label.comment)
                 .join(Annotator, Annotator.id == Label.annotator_id)
                 .join(Item, Item.id == Label.item_id).join(Project, Project.id == Item.project_id)
                 .where(Project.name == project).order_by(Label.id))
        out: list[LabelRow] = []
        with self.read() as s:
            if item_ids is None:
                rows = s.execute(query).all()
            else:
                ids = list(item_ids)
                rows = []
                for start in range(0, len(ids), 500):
                    rows += s.execute(query.where(Label.item_id.in_(ids[start:start + 500]))).all()
        for item_id, name, choice, seconds, principles, comment in rows:
            out.append(LabelRow(item_id, name, choice, seconds, tuple(principles or ()), comment or ""))
        return out

    def progress(self, project: str) -> dict[str, Any]:
        """Items, items with ``overlap`` votes, and per-annotator counts and mean seconds."""
        with self.read() as s:
            project_row = s.scalars(select(Project).where(Project.name == project)).one_or_none()
            if project_row is None:
                return {"items": 0, "complete": 0, "overlap": 0, "annotators": {}}
            total = s.scalar(select(func.count()).select_from(Item).where(Item.project_id == project_row.id))
            votes = (select(Label.item_id, func.count().label("n")).join(Item, Item.id == Label.item_id)
                     .where(Item.project_id == project_row.id, Label.choice != "skip")
                     .group_by(Label.item_id).subquery())
            complete = s.scalar(select(func.count()).select_from(votes).where(votes.c.n >= project_row.overlap))
            per = s.execute(
                select(Annotator.name, func.count(Label.id), func.avg(Label.seconds),
                       func.sum(case((Label.choice == "skip", 1), else_=0)))
                .join(Label, Label.annotator_id == Annotator.id).join(Item, Item.id == Label.item_id)
                .where(Item.project_id == project_row.id).group_by(Annotator.name).order_by(Annotator.name)).all()
        return {
            "items": int(total or 0), "complete": int(complete or 0), "overlap": project_row.overlap,
            "annotators": {name: {"labels": int(n), "skips": int(skips or 0),
                                  "mean_seconds": None if avg is None else round(float(avg), 2)}
                           for name, n, avg, skips in per},
        }

    def annotator_count(self, project: str, annotator_id: int) -> int:
        with self.read() as s:
            return int(s.scalar(select(func.count()).select_from(Label).join(Item, Item.id == Label.item_id)
                                .join(Project, Project.id == Item.project_id)
                                .where(Project.name == project, Label.annotator_id == annotator_id)) or 0)


def _sqlite_pragmas(engine: Any) -> None:
    """WAL, foreign keys, ``BEGIN IMMEDIATE`` and the fsync policy for writing sessions."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let the 'begin' hook below issue BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        options = conn.get_execution_options()
        if options.get("alignkit_write", False):
            durable = options.get("alignkit_durable", True)
            conn.exec_driver_sql(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
