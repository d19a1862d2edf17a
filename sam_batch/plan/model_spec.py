"""Which SAM 2 model a job runs, and who a built model is: plain values, no torch.

Two runs can only be compared, and a memory state can only be continued, on the
same model: same config, image size, weights, sam2 version, numeric precision
and hole filling (docs/sam2-notes.md: the CUDA-only hole filler changes tracking).
``ModelIdentity`` records exactly those; every memory state carries one.
``sam_batch.track.model`` builds the model; this module is what the driver, configs
and states need of it, so that a job's driver never imports torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

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
    #: sam2's own compiled predictor (``vos_optimized``): faster on a GPU after a
    #: warm-up of minutes; kernels are picked at run time, so its numbers may differ
    #: from an uncompiled run in the last bits (recorded in the identity).
    compile: bool = False
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
    compiled: bool = False

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
