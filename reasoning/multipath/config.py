"""Settings of the multi-path modes (vote, short-m@k, prune, confidence)."""
from __future__ import annotations

from dataclasses import dataclass, field

from configs.typed import bounds, require


@dataclass
class MultiPathConfig:
    """k sampled paths per problem, grown in chunks so that paths can be cut early.

    The defaults of temperature and the prune judge were chosen on validation problems
    500-559 of countdown-3 with the committed SoS+ model; `treadle bench prune` measures
    them on problems 0-199.
    """

    k: int = field(default=8, metadata=bounds(ge=1, le=1024))
    """Paths sampled per problem."""
    temperature: float = field(default=0.5, metadata=bounds(gt=0.0, le=10.0))
    """Sampling temperature of every path."""
    chunk_tokens: int = field(default=16, metadata=bounds(ge=1, le=100_000))
    """Paths grow this many tokens per round; pruning decisions happen between rounds."""
    short_m: int = field(default=3, metadata=bounds(ge=1, le=1024))
    """short-m@k: stop every path once the first m have finished, and vote among those m."""
    prune_ngram: int = field(default=4, metadata=bounds(ge=1, le=32))
    """prune: the judge compares sets of token n-grams of this size (Jaccard similarity)."""
    prune_threshold: float = field(default=0.4, metadata=bounds(ge=0.0, le=1.0))
    """prune: a path at least this similar to a kept path joins its cluster and stops."""
    prune_min_tokens: int = field(default=8, metadata=bounds(ge=1, le=100_000))
    """prune: paths are compared once both have generated this many tokens."""
    confidence_window: int = field(default=16, metadata=bounds(ge=1, le=100_000))
    """confidence: tokens in the sliding window of mean token logprob."""
    confidence_warmup: int = field(default=2, metadata=bounds(ge=1, le=1024))
    """confidence: the first paths to finish set the stopping threshold."""
    confidence_percentile: float = field(default=10.0, metadata=bounds(ge=0.0, le=100.0))
    """confidence: a path stops when its window falls below this percentile of the warmup
    paths' lowest windows (DeepConf-online's keep-90% setting)."""
    seed: int = field(default=0, metadata=bounds(ge=0, le=2**31 - 1))
    """Seed of path sampling; the same seed gives every mode the same paths."""

    def validate(self) -> None:
        require(self.short_m <= self.k, "short_m", f"must be <= k ({self.short_m} > {self.k})")
        require(self.confidence_warmup <= self.k, "confidence_warmup", f"must be <= k ({self.confidence_warmup} > {self.k})")
