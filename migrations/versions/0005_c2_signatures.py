"""incident reviews: the second reviewer signs from their own login; alert deliveries

Revision ID: 0005_c2_signatures
Revises: 0004_sites
Create Date: 2026-11-30 17:21:00

A review filled in the console waits for its second reviewer's signature:
``second_signed_at`` is NULL until they sign. Reviews recorded before this
(``incidents review`` proves both people at once) count as signed when made.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import proxy.store.models

revision: str = "0005_c2_signatures"
down_revision: str | None = "0004_sites"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incident_reviews", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("second_signed_at", proxy.store.models.UTCDateTime(), nullable=True)
        )
    op.execute("UPDATE incident_reviews SET second_signed_at = reviewed_at")
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", proxy.store.models.UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("channel", sa.String(length=200), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_deliveries")),
    )
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_deliveries_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_deliveries_at"))
    op.drop_table("alert_deliveries")
    with op.batch_alter_table("incident_reviews", schema=None) as batch_op:
        batch_op.drop_column("second_signed_at")
