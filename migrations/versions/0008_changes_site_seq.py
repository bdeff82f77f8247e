"""changes: an index on (site, seq), for one school's change log newest first

Since 0004 every console page of the change log is kept to a site
(``WHERE site = ? ORDER BY seq DESC``). With only ``ix_changes_site`` SQLite
read every row of the site and sorted them: page 1 of a million-row log took
1.2 s and page 400 2.9 s (``python -m bench.console``); with this index each
reads its 26 rows in order.

Revision ID: 0008_changes_site_seq
Revises: 0007_c2_referral
Create Date: 2026-12-01 05:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_changes_site_seq"
down_revision: str | None = "0007_c2_referral"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_changes_site_seq", "changes", ["site", "seq"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_changes_site_seq", table_name="changes")
