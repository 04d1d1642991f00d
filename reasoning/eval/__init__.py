"""Evaluation: run a controller over held-out problems and summarise accuracy and cost."""
