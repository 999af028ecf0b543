"""Where studies live: storage URLs, opening a storage, finding and loading a study.

SQLite is the default (one file; the driver does every write, so one machine needs no server);
PostgreSQL (``postgresql://user:pass@host/db``) serves several drivers on several machines.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Callable, Optional

DEFAULT_STORAGE = "sqlite:///studies/nas.db"


class InputError(ValueError):
    """The user's input is wrong (a name, a URL, a number, a file): the message says what and how to
    put it right. The command line prints it in one line and exits with code 2."""


class SearchError(InputError):
    """A search cannot start or go on; the message says why."""


def open_storage(url: str, heartbeat_s: Optional[int] = None, on_stale: Optional[Callable] = None):
    """An Optuna RDB storage for ``url``; an :class:`InputError` when the URL or the server is bad.

    A driver passes ``heartbeat_s``: its running trials then carry a heartbeat, and a trial whose
    heartbeat is older than three intervals (its driver died, on any machine) is failed by
    ``optuna.storages.fail_stale_trials`` and handed to ``on_stale(study, trial)``."""
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
    beat = dict(heartbeat_interval=heartbeat_s, grace_period=3 * heartbeat_s,
                heartbeat_stale_trial_callback=on_stale) if heartbeat_s else {}
    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # heartbeats are flagged experimental, and relied on here
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(url, engine_kwargs={} if sqlite else {"pool_pre_ping": True},
                                                     **beat)
            break
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as e:
            if attempt < 4 and ("already exists" in str(e) or "UNIQUE" in str(e) or "locked" in str(e)):
                time.sleep(0.2 * (attempt + 1))  # another driver is creating the same new database: let it finish
                continue
            raise InputError(f"cannot open storage {url!r}: {_first_line(e)}") from None
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as e:
            raise InputError(f"cannot open storage {url!r}: {_first_line(e)}") from None
    if sqlite:
        # Every suggest and tell is its own commit. In WAL mode with synchronous=NORMAL a commit
        # needs no fsync, yet a killed process loses nothing that was committed.
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()
    return storage


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


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


# ---------------------------------------------------------------------------- claims
# One row per (study, key): the first writer owns the key. The database's primary key makes the
# claim atomic across processes and machines, with no clock involved: two drivers that sample one
# architecture at once cannot both train it.
_CLAIMS = None


def _claims_table():
    global _CLAIMS
    if _CLAIMS is None:
        import sqlalchemy as sa

        _CLAIMS = sa.Table("nas_claims", sa.MetaData(), sa.Column("study", sa.String(512), primary_key=True),
                           sa.Column("key", sa.String(128), primary_key=True),
                           sa.Column("owner", sa.String(256), nullable=False))
    return _CLAIMS


def claim(storage, study_name: str, key: str, owner: str) -> str:
    """Claim ``key`` in ``study_name`` for ``owner``; returns the owner of the claim (``owner`` when
    this call won it, else whoever claimed first)."""
    import sqlalchemy as sa

    table = _claims_table()
    for attempt in range(5):
        try:
            with storage.engine.begin() as conn:
                conn.execute(table.insert().values(study=study_name, key=key, owner=owner))
            return owner
        except sa.exc.IntegrityError:
            with storage.engine.connect() as conn:
                found = conn.execute(sa.select(table.c.owner).where(table.c.study == study_name,
                                                                    table.c.key == key)).scalar()
            if found is not None:
                return found
        except (sa.exc.OperationalError, sa.exc.ProgrammingError):
            if attempt == 4:
                raise
            try:  # the table is missing: create it (another driver may do so at the same moment)
                table.create(storage.engine, checkfirst=True)
            except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError):
                pass
    raise InputError(f"cannot claim {key!r} in study {study_name!r}: the claim table keeps changing")


def release(storage, study_name: str, key: str, owner: str) -> None:
    """Give up ``owner``'s claim on ``key`` (a failed evaluation may be tried again)."""
    import sqlalchemy as sa

    table = _claims_table()
    try:
        with storage.engine.begin() as conn:
            conn.execute(table.delete().where(table.c.study == study_name, table.c.key == key,
                                              table.c.owner == owner))
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):
        pass  # no table: nothing was claimed
