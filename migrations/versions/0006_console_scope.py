"""console scope and sites: a console account sees one school's rows or the trust's; every
stored alert delivery, and every policy proposal, names the site it was made at

Accounts made before scopes existed get the default site, ``main``, as 0004 gave
every older row: a trust that has set ``site:`` moves each account to its school
(or to the trust, ``*``) with ``proxy.console.accounts.set_scope``.

Revision ID: 0006_console_scope
Revises: 0005_c2_signatures
Create Date: 2026-11-30 21:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_console_scope"
down_revision: str | None = "0005_c2_signatures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "console_users",
        sa.Column("site", sa.String(length=63), server_default="main", nullable=False),
    )
    op.add_column(
        "alert_deliveries",
        sa.Column("site", sa.String(length=63), server_default="main", nullable=False),
    )
    op.create_index(op.f("ix_alert_deliveries_site"), "alert_deliveries", ["site"], unique=False)
    op.add_column(
        "console_policy_proposals",
        sa.Column("site", sa.String(length=63), server_default="main", nullable=False),
    )
    op.create_index(
        op.f("ix_console_policy_proposals_site"), "console_policy_proposals", ["site"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_console_policy_proposals_site"), table_name="console_policy_proposals")
    with op.batch_alter_table("console_policy_proposals") as batch:
        batch.drop_column("site")
    op.drop_index(op.f("ix_alert_deliveries_site"), table_name="alert_deliveries")
    with op.batch_alter_table("alert_deliveries") as batch:
        batch.drop_column("site")
    with op.batch_alter_table("console_users") as batch:
        batch.drop_column("site")
