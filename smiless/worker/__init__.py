"""The worker: a gRPC server in each instance that serves exactly one zoo model."""
