"""A job's configuration: one dataclass, a YAML file whose keys mirror the flags.

``sam-batch run --config job.yaml --workers 8`` reads the file, then lets flags
override it; the Python API takes the same ``JobConfig``. Storage credentials
and endpoints may sit in ``storage_options``; they are redacted from everything
the job records or prints (``redacted()`` and ``Redactor``), so a config can be
shared and a dataset published without leaking them.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from sam_batch.dataset.retention import DEFAULT_KEEP_STATES, KeepStates
from sam_batch.errors import ConfigError
from sam_batch.plan.discovery import DiscoverySettings, parse_discover
from sam_batch.plan.model_spec import DEFAULT_CONFIG, ModelSpec
from sam_batch.plan.object_groups import check_objects_per_worker

#: Keys whose values are secrets or endpoints anywhere in a config.
SECRET_KEY = re.compile(r"(secret|token|password|passwd|credential|key|endpoint|session)", re.I)
#: Environment variables whose values must never be printed or recorded.
SECRET_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3", "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_CONNECTION_STRING", "HF_TOKEN",
)
REDACTED = "***"
#: Keys that exclude each other: giving one as a flag drops the other from the file.
EXCLUSIVE = {"manifest": "videos", "videos": "manifest", "checkpoint": "random_weights",
             "random_weights": "checkpoint"}


@dataclass
class JobConfig:
    """Everything a ``sam-batch run`` needs; each field is also a flag and a YAML key.

    >>> JobConfig(output="/tmp/out", videos=["a.mp4"], random_weights=True).validate()
    """

    output: str = ""
    manifest: str | None = None
    videos: list[str] = field(default_factory=list)
    # model
    model: str = DEFAULT_CONFIG
    checkpoint: str | None = None
    random_weights: bool = False
    seed: int = 0
    image_size: int | None = None
    precision: str = "auto"
    compile: bool = False
    device: str = "auto"
    # work plan
    chunk_frames: int = 64
    overlap: int = 8
    segments: int | str = 1
    #: Seeds for parallel segments of prompted videos: track every k-th frame first (0: off).
    sparse_step: int = 8
    stitch_iou: float = 0.5
    # automatic discovery: "every:K", "starts" or None; thresholds in sam_batch.plan.discovery
    discover: str | None = None
    discovery_options: dict = field(default_factory=dict)
    # cluster
    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float | None = None  # None: a fair share of the cluster's CPUs
    address: str | None = None
    max_active_videos: int | None = None
    max_retries: int = 2
    #: Consecutive chunks of a chain one actor call runs: one completion for the driver
    #: per this many chunks (the same output; a retry repeats at most this many).
    chunks_per_call: int = 1
    #: Split a video's objects into groups of at most this many, each on its own chain.
    objects_per_worker: int | None = None
    # storage: fsspec options for the output and (unless given) the inputs
    storage_options: dict = field(default_factory=dict)
    input_storage_options: dict | None = None
    #: Memory states kept once a video is done: "last", "every:N" (frames) or "all".
    keep_states: str = DEFAULT_KEEP_STATES
    # behaviour
    progress: str = "auto"
    overwrite: bool = False

    def model_spec(self) -> ModelSpec:
        return ModelSpec(
            config=self.model,
            checkpoint=self.checkpoint,
            random_weights=self.random_weights,
            seed=self.seed,
            image_size=self.image_size,
            device=self.device,
            precision=self.precision,
            compile=self.compile,
            storage_options=self.inputs_storage(),
        )

    def discovery(self) -> DiscoverySettings | None:
        """The discovery settings, or None when discovery is off."""
        return parse_discover(self.discover, self.discovery_options)

    def inputs_storage(self) -> dict:
        return dict(self.storage_options if self.input_storage_options is None
                    else self.input_storage_options)

    def validate(self) -> None:
        if not self.output:
            raise ConfigError("output is required: a local path or a URL such as s3://bucket/ds")
        if (self.manifest is None) == (not self.videos):
            raise ConfigError("give exactly one of manifest (a JSONL/CSV/Parquet file) and videos")
        if self.chunk_frames < 1:
            raise ConfigError(f"chunk_frames must be >= 1, got {self.chunk_frames}")
        if self.overlap < 0:
            raise ConfigError(f"overlap must be >= 0, got {self.overlap}")
        if not (self.segments == "auto" or (isinstance(self.segments, int) and self.segments >= 1)):
            raise ConfigError(
                f"segments must be a positive integer or 'auto', got {self.segments!r}"
            )
        if self.sparse_step < 0:
            raise ConfigError(f"sparse_step must be >= 0 (0: off), got {self.sparse_step}")
        if not 0.0 < self.stitch_iou <= 1.0:
            raise ConfigError(f"stitch_iou must be in (0, 1], got {self.stitch_iou}")
        self.discovery()
        KeepStates.parse(self.keep_states)
        check_objects_per_worker(self.objects_per_worker, self.segments, self.discover)
        if self.chunks_per_call < 1:
            raise ConfigError(f"chunks_per_call must be >= 1, got {self.chunks_per_call}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise ConfigError(f"gpus_per_worker must be >= 0, got {self.gpus_per_worker}")
        if self.cpus_per_worker is not None and self.cpus_per_worker <= 0:
            raise ConfigError(f"cpus_per_worker must be > 0, got {self.cpus_per_worker}")
        if self.progress not in ("auto", "bar", "log", "off"):
            raise ConfigError(f"progress must be auto, bar, log or off, not {self.progress!r}")
        self.model_spec().validate()

    # -- files and flags ----------------------------------------------------------

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> JobConfig:
        """Build from a mapping (YAML); unknown keys are errors with a suggestion."""
        names = cls.field_names()
        values = {}
        for key, value in d.items():
            name = str(key).replace("-", "_")
            if name not in names:
                hint = difflib.get_close_matches(name, names, n=1)
                extra = f"; did you mean {hint[0]!r}?" if hint else ""
                raise ConfigError(f"{where}: unknown key {key!r}{extra}")
            values[name] = value
        if isinstance(values.get("videos"), str):
            values["videos"] = [values["videos"]]
        try:
            return cls(**values)
        except TypeError as e:
            raise ConfigError(f"{where}: {e}") from e

    @classmethod
    def from_yaml(cls, path: str, overrides: dict[str, Any] | None = None,
                  ignore: tuple[str, ...] = ()) -> JobConfig:
        """``ignore``: top-level keys that belong to the caller (a job's own section)."""
        import fsspec

        try:
            with fsspec.open(path, "r") as f:
                data = yaml.safe_load(f) or {}
        except FileNotFoundError as e:
            raise ConfigError(f"config file {path} does not exist") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys to values")
        data = {k: v for k, v in data.items() if k not in ignore}
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        for given, replaced in EXCLUSIVE.items():  # a flag's source replaces the file's
            if given in overrides:
                data.pop(replaced, None)
        data.update(overrides)
        return cls.from_dict(data, where=path)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def redacted(self) -> dict[str, Any]:
        """The config as it may be recorded in ``_job.json`` and logs."""
        return redact(self.to_dict())

    def fingerprint(self) -> str:
        """What decides the numbers and the chunk layout: a resumed job must match it."""
        keys = ("model", "checkpoint", "random_weights", "seed", "image_size", "precision",
                "chunk_frames", "overlap", "segments", "sparse_step", "stitch_iou", "discover",
                "discovery_options")
        blob = json.dumps({k: getattr(self, k) for k in keys}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def secrets(self) -> list[str]:
        """Every secret string this job can see, for ``Redactor``."""
        found: list[str] = []
        for opts in (self.storage_options, self.input_storage_options or {}):
            _collect_secrets(opts, found)
        found += [os.environ[k] for k in SECRET_ENV if os.environ.get(k)]
        return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def redact(value: Any) -> Any:
    """Replace the values of secret-looking keys, recursively.

    >>> redact({"storage_options": {"key": "AKIA", "anon": False}})
    {'storage_options': {'key': '***', 'anon': False}}
    """
    if isinstance(value, dict):
        return {
            k: (REDACTED if isinstance(k, str) and SECRET_KEY.search(k)
                and v not in (None, "", False) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _collect_secrets(value: Any, out: list[str], secret: bool = False) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _collect_secrets(v, out, secret or bool(isinstance(k, str) and SECRET_KEY.search(k)))
    elif isinstance(value, list):
        for v in value:
            _collect_secrets(v, out, secret)
    elif secret and isinstance(value, str):
        out.append(value)


class Redactor:
    """Scrubs known secret strings out of any text before it is printed or stored.

    >>> Redactor(["s3cr3t"]).scrub("auth failed for s3cr3t@host")
    'auth failed for ***@host'
    """

    def __init__(self, secrets: list[str]):
        self._secrets = [s for s in secrets if s]

    def scrub(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, REDACTED)
        return text
