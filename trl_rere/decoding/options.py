"""`DecodingOptions`: every knob of one decoding call, in one object that callers hand on whole."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field


SAMPLING_STRATEGIES = ("beam", "sample", "dynamic")


@dataclass(frozen=True)
class DecodingOptions:
    """How to draw completions from the catalog trie. The fields carry `ReReConfig`'s names, so that
    `DecodingOptions.from_args(args)` takes them from a config.

    Example:
    ```python
    >>> from trl_rere.decoding import DecodingOptions
    >>> DecodingOptions(beam_width=8).num_beams(group_size=4), DecodingOptions().num_beams(group_size=4)
    (8, 4)
    >>> DecodingOptions(sampling_strategy="dynamic", dynamic_sampling_factor=1.5).num_samples(group_size=4)
    6
    ```
    """

    sampling_strategy: str = field(
        default="beam",
        metadata={"help": "'beam' (one beam search, the best G distinct items), 'sample' (temperature sampling, "
                  "duplicates possible) or 'dynamic' (dynamic_sampling_factor*G samples, target and frequent items "
                  "first)."},
    )
    beam_width: int | None = field(
        default=None, metadata={"help": "Beams searched per prompt (at least G; None: G)."}
    )
    dynamic_sampling_factor: float = field(
        default=1.5,
        metadata={"help": "With sampling_strategy='dynamic': samples drawn per prompt, as a multiple of G."},
    )
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (sampling strategies only)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold (sampling strategies only)."})
    top_k: int | None = field(default=None, metadata={"help": "Top-k sampling (sampling strategies only; None: off)."})
    pad_token_id: int | None = field(
        default=None, metadata={"help": "Padding for prompts and finished rows (None: the trie's EOS)."}
    )
    shared_prompt_cache: bool = field(
        default=False,
        metadata={"help": "Beam search: KV cache layers that reorder only the generated positions (a CPU-side "
                  "speed-up; holds two copies of the cache)."},
    )

    def __post_init__(self):
        if self.sampling_strategy not in SAMPLING_STRATEGIES:
            raise ValueError(f"sampling_strategy must be one of {SAMPLING_STRATEGIES}, got {self.sampling_strategy!r}")

    @classmethod
    def from_args(cls, args, **overrides) -> DecodingOptions:
        """The options from any object with these fields by name (a `ReReConfig`), then `overrides`."""
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
        return cls(**{**values, **overrides})

    def num_beams(self, group_size: int) -> int:
        """Beams searched for a group of `group_size` distinct items."""
        return max(self.beam_width or group_size, group_size)

    def num_samples(self, group_size: int) -> int:
        """Samples drawn for a group of `group_size` items."""
        if self.sampling_strategy == "dynamic":
            return math.ceil(self.dynamic_sampling_factor * group_size)
        return group_size
