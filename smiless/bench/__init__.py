"""Benchmarks that report numbers (not pass/fail tests): planner and auto-scaler timing."""
