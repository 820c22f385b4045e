"""Event templates: learn with Drain3, then freeze.

``TemplateLearner`` feeds training content to Drain3 and returns a :class:`TemplateSet`: plain data (ids, template
text, counts, the masking and Drain parameters) that is saved as JSON. ``FrozenMatcher`` rebuilds a Drain prefix tree
from a ``TemplateSet`` and matches new content without ever changing the learned templates. Content that matches no
learned template is ``unseen``; it gets a provisional template from a separate Drain instance so identical new
messages group together.

Drain3's own snapshots are jsonpickle, which runs code on load: they are never written or read here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from drain3.drain import Drain, LogCluster
from drain3.masking import LogMasker, MaskingInstruction

FORMAT_NAME = "famelog-templates"
FORMAT_VERSION = 1
PARAM = "<*>"

# Order matters: the most specific patterns first, so that a node id is not eaten by the number rule.
DEFAULT_MASKING: tuple[tuple[str, str], ...] = (
    # BlueGene/L locations: R02-M1-N0-C:J12-U11, R23-M0-NC-I:J18-U01, R63-M0-L1-U19-A, R73-M0
    (r"\bR\d{2}-M\d(?:-[NL][0-9A-Fa-f])?(?:-[A-Z]:J\d{2}-U\d{2}|-U\d{2}-[A-Z])?(?![\w-])", "NODE"),
    (r"(?:(?<=[^A-Za-z0-9])|^)(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?=[^A-Za-z0-9]|$)", "IP"),
    (r"(?:(?<=[^A-Za-z0-9])|^)0[xX][0-9a-fA-F]+(?=[^A-Za-z0-9]|$)", "HEX"),
    # Bare hex words of 8+ characters (with a digit, so "deadface" stays a word) are numbers too: a counter printed
    # as 00000010 on one line and 003f0000 on the next must not split one message into two templates.
    (r"(?:(?<=[^A-Za-z0-9])|^)(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}(?=[^A-Za-z0-9]|$)", "NUM"),
    (r"(?:(?<=\s)|^)(?:/[\w.\-]+){2,}/?", "PATH"),
    (r"(?:(?<=[^A-Za-z0-9])|^)[\-+]?\d+(?:\.\d+)?(?=[^A-Za-z0-9]|$)", "NUM"),
)


@dataclass(frozen=True)
class MatcherConfig:
    """Drain parameters and masking rules; everything a matcher needs besides the templates."""

    depth: int = 4
    sim_th: float = 0.4
    max_children: int = 100
    extra_delimiters: tuple[str, ...] = ()
    masking: tuple[tuple[str, str], ...] = DEFAULT_MASKING

    def __post_init__(self):
        if self.depth < 3:
            raise ValueError(f"depth must be at least 3, got {self.depth}")
        if not 0.0 < self.sim_th <= 1.0:
            raise ValueError(f"sim_th must be in (0, 1], got {self.sim_th}")
        if self.max_children < 2:
            raise ValueError(f"max_children must be at least 2, got {self.max_children}")

    def new_drain(self) -> Drain:
        return Drain(
            depth=self.depth,
            sim_th=self.sim_th,
            max_children=self.max_children,
            extra_delimiters=self.extra_delimiters,
            param_str=PARAM,
        )

    def new_masker(self) -> LogMasker:
        return LogMasker([MaskingInstruction(regex, name) for regex, name in self.masking], "<", ">")

    def drain3_miner_config(self):
        """The same parameters and masking for Drain3's own ``TemplateMiner`` (benchmarks compare against it)."""
        from drain3.template_miner_config import TemplateMinerConfig

        miner_config = TemplateMinerConfig()
        miner_config.drain_sim_th, miner_config.drain_depth = self.sim_th, self.depth
        miner_config.drain_max_children = self.max_children
        miner_config.drain_extra_delimiters = list(self.extra_delimiters)
        miner_config.masking_instructions = list(self.new_masker().masking_instructions)
        return miner_config


@dataclass(frozen=True)
class Template:
    id: str
    text: str
    count: int


@dataclass
class TemplateSet:
    """The learned templates: plain data, saved and loaded as JSON."""

    config: MatcherConfig
    templates: list[Template] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "config": {**asdict(self.config), "masking": [list(m) for m in self.config.masking]},
            "templates": [asdict(t) for t in self.templates],
        }

    @classmethod
    def from_json(cls, data: dict) -> TemplateSet:
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise ValueError("not a famelog template file (missing \"format\": \"famelog-templates\")")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"template file version {data.get('version')!r} is not supported (expected {FORMAT_VERSION})")
        try:
            raw = dict(data["config"])
            raw["masking"] = tuple((str(regex), str(name)) for regex, name in raw["masking"])
            raw["extra_delimiters"] = tuple(raw.get("extra_delimiters", ()))
            config = MatcherConfig(**raw)
            templates = [Template(str(t["id"]), str(t["text"]), int(t["count"])) for t in data["templates"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed template file ({type(exc).__name__}: {exc})") from None
        return cls(config, templates)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> TemplateSet:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read template file ({exc})") from None
        return cls.from_json(data)


class TemplateLearner:
    """Learn templates from training content with Drain3 (sklearn-style: ``fit`` returns self)."""

    def __init__(self, config: MatcherConfig | None = None):
        self.config = config or MatcherConfig()

    def fit(self, contents: Iterable[str]) -> TemplateLearner:
        masker = self.config.new_masker()
        drain = self.config.new_drain()
        assignments: list[int] = []
        for content in contents:
            cluster, _ = drain.add_log_message(masker.mask(content))
            assignments.append(cluster.cluster_id)
        self.template_set_ = TemplateSet(
            self.config,
            [
                Template(_learned_id(c.cluster_id), " ".join(c.log_template_tokens), c.size)
                for c in sorted(drain.clusters, key=lambda c: c.cluster_id)
            ],
        )
        # The cluster each training line was assigned to while learning (templates may generalise afterwards).
        self.assignments_ = [_learned_id(i) for i in assignments]
        return self


def _learned_id(cluster_id: int) -> str:
    return f"T{cluster_id}"


def _new_id(cluster_id: int) -> str:
    return f"N{cluster_id}"


@dataclass(frozen=True, slots=True)
class Match:
    """``template_id`` starts with T for a learned template and N for a provisional one; ``unseen`` is True for N."""

    template_id: str
    template: str
    unseen: bool


class FrozenMatcher:
    """Match content against a frozen ``TemplateSet``; the learned templates never change.

    Two caches, both sound because a template depends on the content alone: by exact content (repeated lines skip the
    masking regexes) and by masked content (lines that differ only in masked values skip the tree search). Each
    holds at most ``cache_size`` entries and is emptied when full; ``cache_size=0`` turns caching off.
    """

    max_cached_length = 4096  # longer lines are rare and would make the cache's memory unpredictable

    def __init__(self, template_set: TemplateSet, cache_size: int = 500_000):
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.template_set = template_set
        config = template_set.config
        self._masker = config.new_masker()
        self._frozen = config.new_drain()
        for template in template_set.templates:
            cluster = LogCluster(template.text.split(), int(template.id[1:]))
            cluster.size = template.count
            self._frozen.id_to_cluster[cluster.cluster_id] = cluster
            self._frozen.add_seq_to_prefix_tree(self._frozen.root_node, cluster)
        self._texts = {int(t.id[1:]): t.text for t in template_set.templates}
        self._provisional = config.new_drain()
        self._by_content: dict[str, Match] = {}
        self._by_masked: dict[str, Match] = {}
        self._cache_size = cache_size

    def mask(self, content: str) -> str:
        """The content with its variable parts masked (``<NUM>``, ``<IP>``, …), as matching sees it."""
        return self._masker.mask(content)

    def match(self, content: str) -> Match:
        cached = self._by_content.get(content)
        if cached is not None:
            return cached
        masked = self._masker.mask(content)
        result = self._by_masked.get(masked)
        if result is None:
            tokens = self._frozen.get_content_as_tokens(masked)
            cluster = self._frozen.tree_search(self._frozen.root_node, tokens, self._frozen.sim_th, False)
            if cluster is None:
                # A provisional template's text can still generalise as more new lines arrive: never cached.
                new_cluster, _ = self._provisional.add_log_message(masked)
                return Match(_new_id(new_cluster.cluster_id), new_cluster.get_template(), True)
            result = Match(_learned_id(cluster.cluster_id), self._texts[cluster.cluster_id], False)
            self._remember(self._by_masked, masked, result)
        self._remember(self._by_content, content, result)
        return result

    def _remember(self, cache: dict[str, Match], key: str, result: Match) -> None:
        if self._cache_size == 0 or len(key) > self.max_cached_length:
            return
        if len(cache) >= self._cache_size:
            cache.clear()
        cache[key] = result
