"""Build a SAM 2 video model from a config name and weights, and say who it is.

What to build (``ModelSpec``) and who a built model is (``ModelIdentity``) are
plain values in ``sam_batch.plan.model_spec``, importable without torch; they are
re-exported here.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch

from sam_batch.errors import ModelError
from sam_batch.plan.model_spec import (
    DEFAULT_CONFIG,
    HF_CHECKPOINTS,
    SAM2_CONFIGS,
    ModelIdentity,
    ModelSpec,
)

__all__ = ["DEFAULT_CONFIG", "HF_CHECKPOINTS", "SAM2_CONFIGS", "LoadedModel", "ModelIdentity",
           "ModelSpec", "inference", "load_model", "quiet_sam2_progress", "resolve_device"]


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
    predictor = _build_predictor(config_path, spec.input_size(), spec.compile)
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
        compiled=spec.compile,
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


#: What sam2's ``build_sam2_video_predictor(vos_optimized=True)`` sets: its predictor
#: subclass that compiles the image encoder, memory encoder, memory attention and heads.
_COMPILED = {"_target_": "sam2.sam2_video_predictor.SAM2VideoPredictorVOS",
             "compile_image_encoder": True}


def _build_predictor(config_path: str, image_size: int | None,
                     compile: bool = False) -> torch.nn.Module:
    if not os.path.isabs(config_path):
        from sam2.build_sam import build_sam2_video_predictor

        extra = [] if image_size is None else [f"++model.image_size={image_size}"]
        return build_sam2_video_predictor(
            config_path, ckpt_path=None, device="cpu", hydra_overrides_extra=extra,
            vos_optimized=compile,
        )
    # A project config (e.g. a shipped small model): a complete video-predictor YAML.
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(config_path)
    if image_size is not None:
        cfg.model.image_size = image_size
    if compile:
        cfg.model.update(_COMPILED)
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
    """Whether sam2's CUDA connected-components kernel runs in this process (docs/sam2-notes.md)."""
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
