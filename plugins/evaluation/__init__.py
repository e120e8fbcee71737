"""Evaluation and alignment-tax diagnostics: the ``evaluate`` stage, training alarms, reports."""
