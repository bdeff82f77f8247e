"""change control: changes, overrides, suspensions, applied events

Revision ID: 0001
Revises:
Create Date: 2026-11-23 11:17:30.834201
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import proxy.store.models

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "applied_events",
        sa.Column("event_id", sa.String(length=120), nullable=False),
        sa.Column("applied_at", proxy.store.models.UTCDateTime(), nullable=False),
        sa.Column("change_seq", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_applied_events")),
    )
    op.create_table(
        "changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", proxy.store.models.UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("until", proxy.store.models.UTCDateTime(), nullable=True),
        sa.Column("approved_by", sa.String(length=200), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_changes")),
        sa.UniqueConstraint("seq", name=op.f("uq_changes_seq")),
    )
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_changes_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_changes_kind"), ["kind"], unique=False)

    op.create_table(
        "overrides",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=40), nullable=True),
        sa.Column("what_kind", sa.String(length=10), nullable=False),
        sa.Column("what", sa.Text(), nullable=False),
        sa.Column("scope_kind", sa.String(length=10), nullable=False),
        sa.Column("scope", sa.String(length=200), nullable=True),
        sa.Column("starts", proxy.store.models.UTCDateTime(), nullable=False),
        sa.Column("ends", proxy.store.models.UTCDateTime(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("requested_at", proxy.store.models.UTCDateTime(), nullable=False),
        sa.Column("approved_by", sa.String(length=200), nullable=True),
        sa.Column("approved_at", proxy.store.models.UTCDateTime(), nullable=True),
        sa.Column("revoked_by", sa.String(length=200), nullable=True),
        sa.Column("revoked_at", proxy.store.models.UTCDateTime(), nullable=True),
        sa.Column("expiry_recorded", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_overrides")),
        sa.UniqueConstraint("reference", name=op.f("uq_overrides_reference")),
    )
    op.create_table(
        "suspensions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user", sa.String(length=200), nullable=False),
        sa.Column("starts", proxy.store.models.UTCDateTime(), nullable=False),
        sa.Column("ends", proxy.store.models.UTCDateTime(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("by", sa.String(length=200), nullable=False),
        sa.Column("restored_by", sa.String(length=200), nullable=True),
        sa.Column("restored_at", proxy.store.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suspensions")),
    )
    with op.batch_alter_table("suspensions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_suspensions_user"), ["user"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("suspensions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_suspensions_user"))

    op.drop_table("suspensions")
    op.drop_table("overrides")
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_changes_kind"))
        batch_op.drop_index(batch_op.f("ix_changes_at"))

    op.drop_table("changes")
    op.drop_table("applied_events")
