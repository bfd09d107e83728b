"""Evaluation harness, metrics and reports."""
