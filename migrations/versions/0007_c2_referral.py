"""incident reviews: where the incident was referred outside the school

Revision ID: 0007_c2_referral
Revises: 0006_console_scope
Create Date: 2026-11-30 21:35:00

Form C2's "action proposed or taken" is free text; the termly report needs to know
which incidents were actually referred (to the police, the local authority, the
IWF or CEOP, Prevent). ``referred_to`` holds those, comma separated; reviews made
before it have NULL: not referred, as far as the record shows.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_c2_referral"
down_revision: str | None = "0006_console_scope"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incident_reviews", schema=None) as batch_op:
        batch_op.add_column(sa.Column("referred_to", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incident_reviews", schema=None) as batch_op:
        batch_op.drop_column("referred_to")
