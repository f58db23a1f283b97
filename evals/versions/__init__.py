"""Eval versions after generation: activation and rollback, edits, export, display."""
