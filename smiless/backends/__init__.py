"""Worker backends: how instances run (child processes here; Docker containers later).

The controller and the profiler are the only callers; nothing else starts workers.
"""
