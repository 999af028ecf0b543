"""Where studies live: storage URLs, opening a storage, finding and loading a study.

SQLite is the default (one file; the driver does every write, so one machine needs no server);
PostgreSQL (``postgresql://user:pass@host/db``) serves several drivers on several machines.
"""
from __future__ import annotations

from pathlib import Path

DEFAULT_STORAGE = "sqlite:///studies/nas.db"


class InputError(ValueError):
    """The user's input is wrong (a name, a URL, a number, a file): the message says what and how to
    put it right. The command line prints it in one line and exits with code 2."""


class SearchError(InputError):
    """A search cannot start or go on; the message says why."""


def open_storage(url: str):
    """An Optuna RDB storage for ``url``; an :class:`InputError` when the URL or the server is bad."""
    import optuna
    import sqlalchemy
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise InputError(f"not a database URL: {url!r} (e.g. sqlite:///studies/nas.db or "
                         "postgresql://user:pass@host/db)") from None
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs={} if sqlite else {"pool_pre_ping": True})
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"cannot open storage {url!r}: {first}") from None
    if sqlite:
        # Every suggest and tell is its own commit. In WAL mode with synchronous=NORMAL a commit
        # needs no fsync, yet a killed process loses nothing that was committed.
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()
    return storage


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def study_names(storage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


def load_study(name: str, storage_url: str):
    """The study ``name`` in the storage at ``storage_url``; an :class:`InputError` naming the
    studies there when it does not exist."""
    import optuna

    storage = open_storage(storage_url)
    names = study_names(storage)
    if name not in names:
        listing = ", ".join(names) if names else "none yet"
        raise InputError(f"no study {name!r} in {storage_url} (studies: {listing})")
    return optuna.load_study(study_name=name, storage=storage)


def set_trial_attr(storage, study_name: str, number: int, key: str, value) -> None:
    """Set a user attribute of trial ``number``, which this process may hold no handle of (a trial
    left RUNNING by a dead driver), through the storage's public interface."""
    study_id = storage.get_study_id_from_name(study_name)
    storage.set_trial_user_attr(storage.get_trial_id_from_study_id_trial_number(study_id, number), key, value)
