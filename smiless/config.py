"""The one typed configuration object, read from `SMILESS_*` environment variables and
overridden by command-line flags.

Every field's default is documented in its description; `smiless serve --help` and the
README list them. Services get one `Settings` instance at start-up and never read the
environment themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ServiceName = Literal["gateway", "profiler", "predictor", "optimizer"]
SERVICE_NAMES: tuple[ServiceName, ...] = ("gateway", "profiler", "predictor", "optimizer")
DEFAULT_PORTS: dict[str, int] = {"gateway": 50051, "profiler": 50052, "predictor": 50053, "optimizer": 50054}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMILESS_", extra="ignore", frozen=True)

    host: str = Field("127.0.0.1", description="Address every service binds to.")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis holding all shared state.")
    gateway_addr: str = Field("127.0.0.1:50051", description="Where the gateway listens / is reached.")
    profiler_addr: str = Field("127.0.0.1:50052", description="Where the profiler listens / is reached.")
    predictor_addr: str = Field("127.0.0.1:50053", description="Where the predictor listens / is reached.")
    optimizer_addr: str = Field("127.0.0.1:50054", description="Where the optimizer listens / is reached.")
    grace_period_s: float = Field(10.0, gt=0, description="SIGTERM: time in-flight calls get to finish.")
    drain_delay_s: float = Field(
        0.5, ge=0, description="SIGTERM: time NOT_SERVING is shown before new calls are refused."
    )
    redis_timeout_s: float = Field(2.0, gt=0, description="Socket timeout of Redis calls.")
    redis_check_interval_s: float = Field(1.0, gt=0, description="How often health re-checks Redis.")
    log_level: str = Field("INFO", description="Python logging level.")
    log_format: Literal["json", "text"] = Field("json", description="Structured JSON lines or text.")
    catalogue: Path | None = Field(None, description="Hardware catalogue YAML; the packaged one if unset.")
    default_config: str = Field("cpu-1", description="Hardware config for instances without a plan.")
    worker_backend: Literal["process", "docker", "ray"] = Field(
        "process",
        description="How instances run: local child processes, Docker containers or Ray actors.",
    )
    ray_address: str = Field(
        "auto", description="GCS address (host:port) of the Ray cluster of the ray backend; auto: Ray's own."
    )
    ray_namespace: str = Field("smiless", description="Ray namespace of the ray backend's actors.")
    ray_connect_timeout_s: float = Field(
        10.0, gt=0, description="Longest wait to connect to the Ray cluster before giving up."
    )
    worker_network: str = Field(
        "", description="Docker network workers join (compose); empty: publish on 127.0.0.1."
    )
    worker_image: str = Field("smiless-worker:latest", description="Worker image of the docker backend.")
    worker_start_timeout_s: float = Field(120.0, gt=0, description="Longest wait for a worker to be ready.")
    worker_stop_timeout_s: float = Field(5.0, gt=0, description="Graceful stop deadline before a kill.")
    invoke_timeout_s: float = Field(60.0, gt=0, description="Upper bound of one invocation.")
    profile_mape_threshold: float = Field(
        0.15, gt=0, description="Largest held-out MAPE of a fit the profiler stores without force."
    )
    refit_interval_s: float = Field(60.0, gt=0, description="How often the profiler checks for drift.")
    refit_drift: float = Field(
        0.25,
        gt=0,
        description="Median relative error of a profile on observed latencies that triggers a refit.",
    )
    refit_min_samples: int = Field(10, ge=1, description="Observations of a (config, batch) a refit needs.")
    plan_top_k: int = Field(1, ge=1, description="Beam width (top-K) of the optimizer's path search.")
    plan_headroom: float = Field(
        0.2,  # smiless.policy.search.DEFAULT_HEADROOM (the simulator's), which a test keeps equal
        ge=0.0,
        lt=1.0,
        description="Share of the SLA plans leave free for inference noise and queueing.",
    )
    controller: bool = Field(True, description="Run the controller: enforce plans ahead of arrivals.")
    controller_tick_s: float = Field(0.25, gt=0, description="Longest time between two controller passes.")
    replan_interval_s: float = Field(
        10.0, gt=0, description="Re-plan an app at least this often (profiles may have changed)."
    )
    miss_grace_s: float = Field(
        2.0, ge=0, description="How long a pre-warmed instance waits past its predicted arrival."
    )
    max_instances: int = Field(
        8,
        ge=1,
        description="Most live instances this host runs (memory): planned starts wait below it.",
    )
    max_parallel_starts: int = Field(
        2, ge=1, description="Instances started at once; more would only slow every start down."
    )
    fallback_keep_alive_s: float = Field(
        600.0, gt=0, description="Keep-alive of instances of apps that cannot be planned yet."
    )
    slot_s: float = Field(1.0, gt=0, description="Slot length of the invocation history (s).")
    predictor_history_s: float = Field(86400.0, gt=0, description="History the predictor reads (s).")
    predictor_train_interval_s: float = Field(
        30.0, gt=0, description="How often the predictor looks for apps to refit."
    )
    predictor_retrain_arrivals: int = Field(20, ge=1, description="New arrivals that trigger a refit.")
    predictor_min_its: int = Field(33, ge=2, description="Inter-arrivals an app needs before its first fit.")
    predictor_it_correction: Literal["record", "mape", "strict", "none"] = Field(
        "record",
        description="The SMIless IT correction: record (the median where its last 50 forecasts "
        "over-estimated none, else mape), mape (the reference's 1 - MAPE shrink), strict, none.",
    )
    max_message_mb: int = Field(64, gt=0, description="Largest gRPC message accepted or sent.")
    invocation_retention: int = Field(100_000, gt=0, description="Invocation records kept per app.")
    arrival_retention_s: float = Field(7 * 86400.0, gt=0, description="Arrival history kept per app.")
    app_refresh_s: float = Field(
        1.0, gt=0, description="How often the gateway reloads cached apps and plans."
    )
    batch_max_wait_s: float = Field(
        0.01, ge=0, description="Longest wait for a batch to fill (the SLA budget may allow less)."
    )
    record_buffer: int = Field(
        100_000, gt=0, description="Records of each kind buffered while Redis is down; beyond, dropped."
    )
    stream_max_in_flight: int = Field(256, gt=0, description="Invocations of one InvokeStream run at once.")
    worker_streams: bool = Field(
        True, description="Gateway -> worker calls over one InferStream per worker (False: unary Infer)."
    )
    # --- metrics and security (README: "Metrics", "Security") ---
    metrics_port_offset: int = Field(
        1000, ge=0, description="Prometheus endpoint port = the service's gRPC port + this; 0 disables."
    )
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Metrics port of the service this process runs; 0: port + offset."
    )
    metrics_refresh_s: float = Field(
        5.0, gt=0, description="How often the optimizer's endpoint re-reads instances and lifetimes."
    )
    api_token: SecretStr = Field(
        SecretStr(""), description="Bearer token every gateway call must carry; empty: no check."
    )
    admin_token: SecretStr = Field(
        SecretStr(""), description="Bearer token RegisterApp/DeleteApp require; empty: the API token."
    )
    tls_cert: Path | None = Field(None, description="PEM certificate of the gateway; with tls_key: TLS.")
    tls_key: Path | None = Field(None, description="PEM private key of the gateway's certificate.")
    tls_ca: Path | None = Field(
        None, description="PEM roots clients verify the gateway with; default: tls_cert (self-signed)."
    )
    max_request_mb: float = Field(
        16.0, gt=0, description="Largest request the gateway accepts (RESOURCE_EXHAUSTED above)."
    )

    def service_addr(self, name: str) -> str:
        return str(getattr(self, f"{name}_addr"))

    def service_port(self, name: str) -> int:
        return int(self.service_addr(name).rsplit(":", 1)[1])
