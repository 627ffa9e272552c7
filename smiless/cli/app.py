"""The `smiless` Typer app and the helpers every subcommand shares (console, errors, JSON,
channels). It imports no subcommand: each subcommand module imports it and registers itself,
and `smiless.cli.main` imports the subcommand modules, so there is no import cycle.

Every read command takes `--json`. User mistakes (unreachable gateway, a bad file, an
unknown app) print one clear line and exit 1, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import grpc
import typer
from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console

from smiless.config import Settings
from smiless.protoutil import get_seconds
from smiless.v1 import gateway_pb2_grpc

app = typer.Typer(
    help="smiless: serverless serving of DAG-based inference under one SLA.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

GatewayOpt = Annotated[
    str | None,
    typer.Option(
        "--gateway", envvar="SMILESS_GATEWAY_ADDR", help="Gateway address (default 127.0.0.1:50051)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
T = TypeVar("T")


def fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(1)


@contextmanager
def connect(service: str, address: str | None) -> Iterator[grpc.Channel]:
    """A channel to a smiless service, or one clear line and exit 1 when it is unreachable.
    The gateway's channel uses TLS and carries the token when configured (smiless.security)."""
    from smiless import security

    settings = Settings()
    addr = address or settings.service_addr(service)
    try:
        channel = (
            security.gateway_channel(settings, addr) if service == "gateway" else grpc.insecure_channel(addr)
        )
    except security.SecurityConfigError as exc:
        fail(str(exc))
        raise
    try:
        try:
            grpc.channel_ready_future(channel).result(timeout=5)
        except grpc.FutureTimeoutError:
            env = f"SMILESS_{service.upper()}_ADDR"
            tls = (
                " (TLS: check SMILESS_TLS_CA)"
                if service == "gateway" and security.channel_credentials(settings)
                else ""
            )
            fail(f"cannot reach the {service} at {addr}{tls}: is `smiless up` running? (--{service}, {env})")
        yield channel
    finally:
        channel.close()


@contextmanager
def gateway(address: str | None) -> Iterator[gateway_pb2_grpc.GatewayStub]:
    with connect("gateway", address) as channel:
        yield gateway_pb2_grpc.GatewayStub(channel)


def call(fn: Callable[..., T], request: Message, timeout: float = 30.0) -> T:
    try:
        return fn(request, timeout=timeout)
    except grpc.RpcError as exc:
        fail(f"{exc.code().name}: {exc.details()}")
        raise AssertionError from exc


def to_dict(msg: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


secs = get_seconds
"""Seconds of a Duration or Timestamp, as every command prints them."""
