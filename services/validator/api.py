"""Routes of the validator service (design.md §5); its stage rules land with their own issue."""

from __future__ import annotations

from fastapi import APIRouter


def build_router() -> APIRouter:
    return APIRouter()
