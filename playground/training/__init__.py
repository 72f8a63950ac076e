"""Retraining from feedback: datasets, TRL trainers with LoRA, publishing adapter versions, background jobs."""
