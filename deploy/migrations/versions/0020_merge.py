"""Joins the branches made side by side from 0008 into one history.

Revision ID: 0020
Revises: 0012d, 0013a, 0014a
Create Date: 2026-12-02 01:00:00
"""
from __future__ import annotations

revision = '0020'
down_revision = ('0012d', '0013a', '0014a', '0015c')
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
