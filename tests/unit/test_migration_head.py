"""The head revision Database.migrate compares against without importing Alembic."""

from __future__ import annotations

from alembic.config import Config
from alembic.script import ScriptDirectory

from conveyor.store.database import HEAD_REVISION, MIGRATIONS


def test_head_revision_is_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    assert script.get_heads() == [HEAD_REVISION], (
        "a migration was added: set HEAD_REVISION in conveyor/store/database.py to its revision"
    )
