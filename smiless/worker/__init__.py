"""The worker: a gRPC server in each instance that serves exactly one zoo model."""

# InferStream coalescing (smiless/services/gateway/streams.py, smiless/worker/server.py):
COALESCE_KEY = "smiless-coalesce"
"""Initial metadata key by which a worker says it takes coalesced requests."""
COALESCE_MAX_BYTES = 1 << 20
"""Tensor bytes past which a message takes no more coalesced requests or answers: large
tensors gain nothing from sharing a message, and a message must stay under the gRPC size
limit."""
