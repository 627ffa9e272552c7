"""Generated gRPC code for the smiless.v1 contracts (see protos/)."""
