"""Build a SAM 2 video model from a config name and weights, and say who it is.

Two runs can only be compared, and a memory state can only be continued, on the
same model: same config, image size, weights, sam2 version, numeric precision
and hole filling (SAM2_NOTES.md: the CUDA-only hole filler changes tracking).
``ModelIdentity`` records exactly those; every memory state carries one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from sam_batch.errors import ModelError, StateMismatchError

#: Short names users type, mapped to the config files inside the sam2 package.
SAM2_CONFIGS = {
    f"{family}_hiera_{size}": f"configs/{family}/{family}_hiera_{size}.yaml"
    for family in ("sam2", "sam2.1")
    for size in ("t", "s", "b+", "l")
}
_SIZE_WORDS = {"tiny": "t", "small": "s", "base_plus": "b+", "base-plus": "b+", "large": "l"}
#: Hugging Face model ids of the official checkpoints, mapped to (config, file name).
HF_CHECKPOINTS = {
    f"facebook/{family}-hiera-{word}": (
        f"{family.replace('-', '_')}_hiera_{_SIZE_WORDS[word]}",
        f"{family}_hiera_{word.replace('-', '_')}.pt",
    )
    for family in ("sam2", "sam2.1")
    for word in ("tiny", "small", "base-plus", "large")
}
DEFAULT_CONFIG = "sam2.1_hiera_t"


@dataclass(frozen=True)
class ModelSpec:
    """What to build. Exactly one of ``checkpoint`` and ``random_weights``, except for a
    shipped model (``config="sam-batch-tiny"``), whose weights come with the package.

    ``checkpoint`` is a local path, any fsspec URL (``s3://``, ``gs://``,
    ``https://``) or ``hf://facebook/sam2.1-hiera-tiny`` (only where the network
    allows; nothing is downloaded unless asked for here).

    >>> ModelSpec(config="sam2.1_hiera_t", random_weights=True, image_size=256).config_path()
    'configs/sam2.1/sam2.1_hiera_t.yaml'
    """

    config: str = DEFAULT_CONFIG
    checkpoint: str | None = None
    random_weights: bool = False
    seed: int = 0
    image_size: int | None = None
    device: str = "auto"
    #: "auto" = bfloat16 autocast on CUDA (as SAM 2's own demos run), float32 on CPU.
    precision: str = "auto"
    storage_options: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def shipped(self) -> bool:
        """A model that ships with sam_batch (``sam-batch-tiny``): weights included."""
        from sam_batch.models import SHIPPED

        return self.config in SHIPPED

    def weights(self) -> str | None:
        """The checkpoint to load: the given one, or a shipped model's own.

        >>> Path(ModelSpec(config="sam-batch-tiny").weights()).name
        'sam-batch-tiny.pt'
        """
        from sam_batch.models import shipped_checkpoint

        if self.checkpoint is None and self.shipped and not self.random_weights:
            return shipped_checkpoint(self.config)
        return self.checkpoint

    def input_size(self) -> int | None:
        """The image size asked for, or a shipped model's trained size (its card)."""
        from sam_batch.models import shipped

        if self.image_size is None and self.shipped:
            return shipped(self.config).image_size
        return self.image_size

    def config_path(self) -> str:
        """The sam2 config file (package-relative) or a YAML path of a custom model."""
        from sam_batch.models import SHIPPED, shipped_config

        name = self.config
        if name in SAM2_CONFIGS:
            return SAM2_CONFIGS[name]
        if name in SHIPPED:
            return shipped_config(name)
        if name in SAM2_CONFIGS.values():
            return name
        if name.endswith((".yaml", ".yml")) and Path(name).is_file():
            return str(Path(name).resolve())
        known = ", ".join([*sorted(SAM2_CONFIGS), *SHIPPED])
        raise ModelError(
            f"unknown model config {name!r}: use one of {known}, or the path of a "
            "complete SAM 2 video-predictor YAML file"
        )

    def validate(self) -> None:
        if self.random_weights == (self.weights() is not None):
            raise ModelError(
                "give exactly one of a checkpoint (path, URL or hf://model-id) and "
                "random weights (random_weights=True / --random-weights, for tests "
                "and smoke runs only), or use the shipped model: --model sam-batch-tiny"
            )
        if self.image_size is not None and (self.image_size < 64 or self.image_size % 32):
            raise ModelError(
                f"image_size must be a multiple of 32 and at least 64, got {self.image_size}"
            )
        if self.precision not in ("auto", "bfloat16", "float32"):
            raise ModelError(f"precision must be auto, bfloat16 or float32, not {self.precision!r}")
        self.config_path()


@dataclass(frozen=True)
class ModelIdentity:
    """Everything that decides a model's numbers. Stored in states and ``_job.json``."""

    config: str
    image_size: int
    weights: str  # "sha256:<hex>" of the checkpoint file, or "random:seed=<n>"
    sam2_version: str
    precision: str  # "bfloat16" or "float32"
    hole_filling: bool

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelIdentity:
        return cls(**d)

    def require_same(self, other: ModelIdentity, what: str = "memory state") -> None:
        """Refuse to mix models: a state from another model would track garbage."""
        diffs = [
            f"{k}: {v!r} here, {getattr(other, k)!r} in the {what}"
            for k, v in asdict(self).items()
            if getattr(other, k) != v
        ]
        if diffs:
            raise StateMismatchError(
                f"the {what} was made by another model and cannot be continued on this one ("
                + "; ".join(diffs)
                + "). Run it with the same model settings, or start the video again."
            )


@dataclass
class LoadedModel:
    """A built predictor with its identity and the numeric context to run it in."""

    predictor: torch.nn.Module  # sam2.sam2_video_predictor.SAM2VideoPredictor
    identity: ModelIdentity
    device: torch.device

    @property
    def image_size(self) -> int:
        return int(self.predictor.image_size)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The precision context every forward pass of this model runs in."""
        enabled = self.identity.precision == "bfloat16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} asked for, but no CUDA device is available here")
    return dev


def load_model(spec: ModelSpec) -> LoadedModel:
    """Build the predictor, load weights, and decide precision and hole filling.

    >>> m = load_model(ModelSpec(random_weights=True, image_size=256, device="cpu"))
    >>> (m.image_size, m.identity.precision, m.identity.weights)
    (256, 'float32', 'random:seed=0')
    """
    spec.validate()
    device = resolve_device(spec.device)
    config_path = spec.config_path()
    if spec.random_weights:
        weights_id, state_dict = f"random:seed={spec.seed}", None
    else:
        weights_id, state_dict = _read_checkpoint(spec.weights(), spec.storage_options)

    torch.manual_seed(spec.seed)
    predictor = _build_predictor(config_path, spec.input_size())
    if state_dict is not None:
        _load_state_dict(predictor, state_dict, spec.weights())
    predictor = predictor.to(device).eval()

    precision = spec.precision
    if precision == "auto":
        precision = "bfloat16" if device.type == "cuda" else "float32"
    hole_filling = _hole_filling_works(device) and predictor.fill_hole_area > 0
    if not hole_filling:
        # sam2 would try, fail and warn on every frame, then use the unfilled mask;
        # switching it off gives the same numbers without the noise.
        predictor.fill_hole_area = 0
    identity = ModelIdentity(
        # Names, not paths, where a name says it: install paths differ between nodes.
        config=spec.config if spec.config in SAM2_CONFIGS or spec.shipped else config_path,
        image_size=int(predictor.image_size),
        weights=weights_id,
        sam2_version=metadata.version("sam2"),
        precision=precision,
        hole_filling=hole_filling,
    )
    return LoadedModel(predictor=predictor, identity=identity, device=device)


def quiet_sam2_progress() -> None:
    """sam2 draws a progress bar per ``propagate_in_video``: one per chunk, thousands in
    a job (all forwarded to the driver's log) or in a training run's evaluations. For
    processes that are ours alone (tracker actors, training), sam2 draws none. (A Ray
    ``runtime_env`` with ``TQDM_DISABLE`` did this too, but Ray cannot give such an
    actor a prestarted worker: 1-2 s more start-up per job.)"""
    import sam2.sam2_video_predictor as video_predictor

    video_predictor.tqdm = lambda iterable, *args, **kwargs: iterable


def _build_predictor(config_path: str, image_size: int | None) -> torch.nn.Module:
    if not os.path.isabs(config_path):
        from sam2.build_sam import build_sam2_video_predictor

        extra = [] if image_size is None else [f"++model.image_size={image_size}"]
        return build_sam2_video_predictor(
            config_path, ckpt_path=None, device="cpu", hydra_overrides_extra=extra
        )
    # A project config (e.g. a shipped small model): a complete video-predictor YAML.
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(config_path)
    if image_size is not None:
        cfg.model.image_size = image_size
    OmegaConf.resolve(cfg)
    return instantiate(cfg.model, _recursive_=True)


def _read_checkpoint(url: str, storage_options: dict) -> tuple[str, dict]:
    data = _fetch_checkpoint_bytes(url, storage_options)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(f"checkpoint {url} is not a readable PyTorch file: {e}") from e
    state_dict = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state_dict, dict):
        raise ModelError(f"checkpoint {url} holds no state dict (expected {{'model': ...}})")
    return digest, state_dict


def _fetch_checkpoint_bytes(url: str, storage_options: dict) -> bytes:
    if url.startswith("hf://"):
        return _fetch_hf(url[len("hf://") :])
    import fsspec

    try:
        with fsspec.open(url, "rb", **storage_options) as f:
            return f.read()
    except FileNotFoundError as e:
        raise ModelError(f"checkpoint {url} does not exist") from e
    except Exception as e:
        raise ModelError(f"checkpoint {url} cannot be read: {e}") from e


def _fetch_hf(model_id: str) -> bytes:
    if model_id not in HF_CHECKPOINTS:
        raise ModelError(
            f"unknown Hugging Face model id {model_id!r}; known: {', '.join(HF_CHECKPOINTS)}"
        )
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise ModelError(
            "hf:// checkpoints need `pip install huggingface_hub` and network access; "
            "or download the .pt file yourself and pass its path"
        ) from e
    path = hf_hub_download(repo_id=model_id, filename=HF_CHECKPOINTS[model_id][1])
    return Path(path).read_bytes()


def _load_state_dict(predictor: torch.nn.Module, state_dict: dict, url: str | None) -> None:
    missing, unexpected = predictor.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise ModelError(
            f"checkpoint {url} does not fit the model config: {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:3]}). "
            "Pass the config the checkpoint was trained with (--model)."
        )


def _hole_filling_works(device: torch.device) -> bool:
    """Whether sam2's CUDA connected-components kernel runs here (SAM2_NOTES.md)."""
    if device.type != "cuda":
        return False
    try:
        from sam2.utils.misc import get_connected_components

        get_connected_components(torch.zeros(1, 1, 4, 4, dtype=torch.bool, device=device))
        return True
    except Exception:
        return False


@contextlib.contextmanager
def inference(model: LoadedModel) -> Iterator[None]:
    """No-grad inference under the model's precision: how every tracker call runs."""
    with torch.inference_mode(), model.autocast():
        yield
