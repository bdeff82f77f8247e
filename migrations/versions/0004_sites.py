"""sites: every row that records something at a site names it (one trust, many schools)

Rows written before sites existed are filled with the default site, ``main``
(``proxy.store.site.DEFAULT_SITE``); the change log's hashes stay valid, since a
row's hash covers its site only when it is not the default.

Revision ID: 0004_sites
Revises: 0003_console
Create Date: 2026-11-30 17:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_sites"
down_revision: str | None = "0003_console"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("changes", "overrides", "suspensions", "incidents", "incident_reviews", "searches")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(
            table,
            sa.Column("site", sa.String(length=63), server_default="main", nullable=False),
        )
        op.create_index(op.f(f"ix_{table}_site"), table, ["site"], unique=False)


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(op.f(f"ix_{table}_site"), table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("site")
