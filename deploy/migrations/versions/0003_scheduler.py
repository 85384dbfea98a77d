"""scheduler: sessions, courses, course members, class students, establishments (session generation)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 21:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('scheduler_sessions',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('establishment', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('course', sa.String(length=128), nullable=False),
    sa.Column('start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('week', sa.Integer(), nullable=False),
    sa.Column('rooms', sa.JSON(), nullable=False),
    sa.Column('teachers', sa.JSON(), nullable=False),
    sa.Column('classes', sa.JSON(), nullable=False),
    sa.Column('groups', sa.JSON(), nullable=False),
    sa.Column('students', sa.JSON(), nullable=False),
    sa.Column('equipment', sa.JSON(), nullable=False),
    sa.Column('staff', sa.JSON(), nullable=False),
    sa.Column('fp', sa.String(length=16), nullable=False),
    sa.Column('import_id', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    schema='scheduler'
    )
    op.create_index('ix_scheduler_sessions_est_start', 'scheduler_sessions', ['site', 'establishment', 'start'], unique=False, schema='scheduler')
    op.create_index('ix_scheduler_sessions_course', 'scheduler_sessions', ['site', 'establishment', 'course', 'start'], unique=False, schema='scheduler')
    op.create_table('scheduler_courses',
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('establishment', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('target', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=255), nullable=False),
    sa.Column('teachers', sa.JSON(), nullable=False),
    sa.Column('classes', sa.JSON(), nullable=False),
    sa.Column('students', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('fp', sa.String(length=16), nullable=False),
    sa.Column('import_id', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('site', 'establishment', 'key'),
    schema='scheduler'
    )
    op.create_table('scheduler_course_members',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('establishment', sa.String(length=64), nullable=False),
    sa.Column('course', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('ident', sa.String(length=64), nullable=False),
    sa.Column('start', sa.Date(), nullable=True),
    sa.Column('end', sa.Date(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    schema='scheduler'
    )
    op.create_index('ix_scheduler_course_members_ident', 'scheduler_course_members', ['site', 'establishment', 'kind', 'ident'], unique=False, schema='scheduler')
    op.create_index('ix_scheduler_course_members_course', 'scheduler_course_members', ['site', 'establishment', 'course'], unique=False, schema='scheduler')
    op.create_table('scheduler_class_students',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('establishment', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('ident', sa.String(length=64), nullable=False),
    sa.Column('student', sa.String(length=64), nullable=False),
    sa.Column('start', sa.Date(), nullable=True),
    sa.Column('end', sa.Date(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    schema='scheduler'
    )
    op.create_index('ix_scheduler_class_students_student', 'scheduler_class_students', ['site', 'establishment', 'student'], unique=False, schema='scheduler')
    op.create_table('scheduler_establishments',
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('establishment', sa.String(length=64), nullable=False),
    sa.Column('import_id', sa.String(length=32), nullable=False),
    sa.Column('timetable_sha256', sa.String(length=64), nullable=False),
    sa.Column('names', sa.JSON(), nullable=False),
    sa.Column('class_students_fp', sa.String(length=16), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('site', 'establishment'),
    schema='scheduler'
    )


def downgrade() -> None:
    op.drop_table('scheduler_establishments', schema='scheduler')
    op.drop_index('ix_scheduler_class_students_student', table_name='scheduler_class_students', schema='scheduler')
    op.drop_table('scheduler_class_students', schema='scheduler')
    op.drop_index('ix_scheduler_course_members_course', table_name='scheduler_course_members', schema='scheduler')
    op.drop_index('ix_scheduler_course_members_ident', table_name='scheduler_course_members', schema='scheduler')
    op.drop_table('scheduler_course_members', schema='scheduler')
    op.drop_table('scheduler_courses', schema='scheduler')
    op.drop_index('ix_scheduler_sessions_course', table_name='scheduler_sessions', schema='scheduler')
    op.drop_index('ix_scheduler_sessions_est_start', table_name='scheduler_sessions', schema='scheduler')
    op.drop_table('scheduler_sessions', schema='scheduler')
