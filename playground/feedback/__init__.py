"""Feedback: feedback.db (sqlite-utils), exports in TRL's formats, and ratings. No torch, no gradio."""

from playground.feedback.store import FeedbackStore

__all__ = ["FeedbackStore"]
