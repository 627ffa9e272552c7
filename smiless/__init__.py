"""smiless: serverless serving of DAG-based inference under one SLA."""

__version__ = "0.1.0"
