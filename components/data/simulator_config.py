"""Configuration of the marketplace simulator: sizes, time, history and per-module behaviour.

Every knob of :func:`components.data.simulator.simulate` lives in
:class:`SimulatorConfig`; each surface's candidate mix, position bias and task
model lives in a :class:`ModuleBehavior`::

    config = SimulatorConfig(n_impressions=50_000, seed=7)
    config = config.with_module_mix({"search": 0.5, "home_feed": 0.5})   # only two surfaces
    config.resolved().n_users                                             # sizes filled in from n_impressions

The generative model these numbers parameterize is documented in
``docs/simulator.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

# The defaults of `ranker simulate` and `ranker run`: enough test requests that the default
# favorite lift is judged within about +-3 points (95% CI).
DEFAULT_N_IMPRESSIONS = 1_000_000
DEFAULT_SEED = 7

# The per-impression signals an engagement logit is a weighted sum of (see docs/simulator.md):
# taste          scaled cosine of the user's taste vector and the listing's embedding (latent)
# history        log1p of the user's decayed engagement with the listing's category (from earlier rows)
# quality        the listing's latent quality (observable through rating, reviews and past engagement)
# price          user price sensitivity x log(price / category median price); positive = expensive for them
# context        match with the request: query category (search), anchor similarity (item_page), page shop
# novelty        exp(-age / 30 days): how new the listing is
# free_shipping  the listing carries the free_shipping tag
# on_sale        the listing carries the on_sale tag
# mobile         the request came from ios or android
SIGNALS: tuple[str, ...] = (
    "taste",
    "history",
    "quality",
    "price",
    "context",
    "novelty",
    "free_shipping",
    "on_sale",
    "mobile",
)

# Funnel stages: click is marginal, favorite and add_to_cart are conditional on a
# click, purchase is conditional on add_to_cart (the oracle multiplies them out).
STAGES: tuple[str, ...] = ("click", "favorite", "add_to_cart", "purchase")


@dataclasses.dataclass(frozen=True)
class StageModel:
    """The logit of one funnel stage: ``bias + sum(weights[s] * signal_s)``; unnamed signals weigh 0."""

    bias: float
    weights: Mapping[str, float]

    def vector(self) -> list[float]:
        unknown = set(self.weights) - set(SIGNALS)
        if unknown:
            raise ValueError(f"unknown engagement signals {sorted(unknown)}; known: {', '.join(SIGNALS)}")
        return [float(self.weights.get(signal, 0.0)) for signal in SIGNALS]


@dataclasses.dataclass(frozen=True)
class ModuleBehavior:
    """How one surface generates candidates and how its users engage with them.

    ``share`` is the fraction of requests from this module, ``candidates`` its
    slate size, ``position_decay`` the examination curve ``(1 + position) ** -decay``.
    ``generator`` names how its slates are drawn (one of
    ``simulator_candidates.CANDIDATE_GENERATORS``; empty: the module's own name),
    so a new surface can draw like an existing one: a push notification is
    filled like an email digest, a category page like search.
    """

    share: float
    candidates: int
    position_decay: float
    click: StageModel
    favorite: StageModel
    add_to_cart: StageModel
    purchase: StageModel
    generator: str = ""

    def stage(self, name: str) -> StageModel:
        return getattr(self, name)

    def generator_of(self, module: str) -> str:
        """The candidate generator this module's slates come from."""
        return self.generator or module


def _stages(**stages: tuple[float, dict[str, float]]) -> dict[str, StageModel]:
    return {name: StageModel(bias, weights) for name, (bias, weights) in stages.items()}


# Shared structure (taste, history and quality help everywhere, so an unseen
# module can still be ranked) with module-specific twists that make pooling
# without module_name hurt: price is aspirational on home_feed and punished on
# search and cart; item_page lives on anchor similarity; email has few clicks
# but converts; favorites are nearly unrelated to purchases on the cart page.
DEFAULT_MODULES: dict[str, ModuleBehavior] = {
    "home_feed": ModuleBehavior(
        share=0.34,
        candidates=24,
        position_decay=0.5,
        **_stages(
            click=(-3.2, {"taste": 0.9, "history": 0.5, "quality": 0.5, "price": 0.3, "novelty": 0.6, "mobile": 0.2}),
            favorite=(-3.3, {"taste": 0.9, "history": 0.3, "quality": 0.6, "price": 0.4, "novelty": 0.3}),
            add_to_cart=(-3.7, {"taste": 0.5, "history": 0.4, "quality": 0.3, "price": -0.3, "free_shipping": 0.3}),
            purchase=(-1.7, {"taste": 0.3, "history": 0.3, "quality": 0.3, "price": -0.4, "mobile": -0.2}),
        ),
    ),
    "item_page": ModuleBehavior(
        share=0.2,
        candidates=12,
        position_decay=0.8,
        **_stages(
            click=(-3.4, {"taste": 0.5, "history": 0.3, "quality": 0.4, "context": 1.8}),
            favorite=(-2.8, {"taste": 0.6, "history": 0.2, "quality": 0.4, "context": 0.6}),
            add_to_cart=(-3.5, {"taste": 0.4, "history": 0.3, "quality": 0.4, "price": -0.4, "context": 0.8}),
            purchase=(-2.2, {"taste": 0.2, "history": 0.3, "quality": 0.3, "price": -0.5, "free_shipping": 0.3}),
        ),
    ),
    "search": ModuleBehavior(
        share=0.22,
        candidates=30,
        position_decay=1.0,
        **_stages(
            click=(-2.4, {"taste": 0.6, "history": 0.3, "quality": 0.6, "price": -0.8, "context": 1.6}),
            favorite=(-3.4, {"taste": 0.5, "history": 0.2, "quality": 0.4, "price": -0.2, "context": 0.3}),
            add_to_cart=(
                -4.4,
                {"taste": 0.4, "history": 0.3, "quality": 0.5, "price": -0.9, "context": 0.8, "free_shipping": 0.4},
            ),
            purchase=(-2.0, {"taste": 0.2, "quality": 0.4, "price": -0.8, "free_shipping": 0.4, "mobile": -0.2}),
        ),
    ),
    "cart": ModuleBehavior(
        share=0.1,
        candidates=8,
        position_decay=0.5,
        **_stages(
            click=(-3.1, {"taste": 0.4, "history": 0.9, "quality": 0.3, "price": -0.9, "on_sale": 0.3}),
            favorite=(-2.3, {"taste": 0.2, "quality": 0.2}),
            add_to_cart=(-3.3, {"taste": 0.3, "history": 0.6, "quality": 0.3, "price": -1.0, "free_shipping": 0.5}),
            purchase=(-2.1, {"history": 0.5, "quality": 0.3, "price": -0.8, "free_shipping": 0.4, "mobile": -0.2}),
        ),
    ),
    "email_digest": ModuleBehavior(
        share=0.08,
        candidates=6,
        position_decay=0.3,
        **_stages(
            click=(-4.9, {"taste": 0.7, "history": 0.7, "quality": 0.4, "price": -0.3, "on_sale": 0.6}),
            favorite=(-2.4, {"taste": 0.5, "history": 0.4, "quality": 0.4}),
            add_to_cart=(-3.4, {"taste": 0.5, "history": 0.5, "quality": 0.4, "price": -0.4, "on_sale": 0.5}),
            purchase=(-0.9, {"taste": 0.3, "history": 0.4, "quality": 0.3, "price": -0.3, "on_sale": 0.4}),
        ),
    ),
    "shop_page": ModuleBehavior(
        share=0.06,
        candidates=16,
        position_decay=0.7,
        **_stages(
            click=(-2.6, {"taste": 0.6, "history": 0.3, "quality": 0.5, "price": -0.2, "context": 0.3, "novelty": 0.2}),
            favorite=(-2.2, {"taste": 0.7, "history": 0.2, "quality": 0.5, "price": 0.1, "novelty": 0.2}),
            add_to_cart=(-3.5, {"taste": 0.4, "history": 0.3, "quality": 0.4, "price": -0.4, "free_shipping": 0.3}),
            purchase=(-1.4, {"taste": 0.2, "history": 0.3, "quality": 0.3, "price": -0.4, "mobile": -0.2}),
        ),
    ),
}


@dataclasses.dataclass
class SimulatorConfig:
    """Everything that determines a simulated marketplace; the same config and seed give the same logs.

    Sizes left as ``None`` scale with ``n_impressions`` (see :meth:`resolved`)
    so that users come back often enough for history to matter and listings
    are shown often enough for their engagement rates to be measurable.

    Example::

        summary = simulate(SimulatorConfig(n_impressions=100_000, seed=1), "work/sim")
    """

    n_impressions: int = DEFAULT_N_IMPRESSIONS
    seed: int = DEFAULT_SEED
    days: int = 30
    # 2024-01-01T00:00:00Z: timestamps are start_timestamp + [0, days) days.
    start_timestamp: int = 1_704_067_200
    n_users: int | None = None
    n_listings: int | None = None
    n_shops: int | None = None
    taste_dim: int = 8
    # History (user-category engagement and listing popularity) is refreshed every step_hours:
    # engagement in one step changes exposure and engagement in all later steps.
    step_hours: float = 6.0
    history_half_life_days: float = 14.0
    # Scales history's effect on exposure and engagement; 0 switches the feedback loop off.
    history_strength: float = 1.0
    # Noise of the logging policy that ordered each slate (0 = the policy knew the true click logit).
    policy_noise: float = 2.0
    rows_per_part: int = 250_000
    modules: dict[str, ModuleBehavior] = dataclasses.field(default_factory=lambda: dict(DEFAULT_MODULES))

    def resolved(self) -> SimulatorConfig:
        """A copy with the automatic sizes filled in and every field checked."""
        n_users = self.n_users or max(200, self.n_impressions // 100)
        n_listings = self.n_listings or max(1_000, self.n_impressions // 25)
        n_shops = self.n_shops or max(50, n_listings // 15)
        config = dataclasses.replace(self, n_users=n_users, n_listings=n_listings, n_shops=n_shops)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field that cannot be simulated."""
        positive = {"n_impressions": self.n_impressions, "days": self.days, "taste_dim": self.taste_dim}
        positive.update({"rows_per_part": self.rows_per_part, "step_hours": self.step_hours})
        positive["history_half_life_days"] = self.history_half_life_days
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"SimulatorConfig.{name} must be positive, got {value}")
        if self.seed < 0:
            raise ValueError(f"SimulatorConfig.seed must be >= 0 (NumPy seeds are non-negative), got {self.seed}")
        if self.history_strength < 0 or self.policy_noise < 0:
            raise ValueError("SimulatorConfig.history_strength and policy_noise must be >= 0")
        active = self.active_modules()
        if not active:
            raise ValueError("SimulatorConfig.modules: at least one module needs a positive share")
        largest_slate = max(behavior.candidates for behavior in active.values())
        if self.n_listings is not None and self.n_listings < 4 * largest_slate:
            raise ValueError(f"SimulatorConfig.n_listings={self.n_listings} is too small for slates of {largest_slate}")
        for name, behavior in active.items():
            if behavior.candidates < 1:
                raise ValueError(f"module {name!r}: candidates must be >= 1, got {behavior.candidates}")
            for stage in STAGES:
                behavior.stage(stage).vector()

    def active_modules(self) -> dict[str, ModuleBehavior]:
        """The modules that receive requests, in a fixed order."""
        return {name: behavior for name, behavior in self.modules.items() if behavior.share > 0}

    @classmethod
    def from_options(cls, module_mix: str = "", candidates: str = "", **fields) -> SimulatorConfig:
        """A config from flat options, as the CLI and the kfp component receive them.

        ``module_mix`` and ``candidates`` are ``NAME=VALUE`` lists (empty: the
        defaults); a field given as ``None`` or ``0`` where 0 is meaningless
        keeps its default.

        >>> SimulatorConfig.from_options(module_mix="search=1", n_impressions=1000, n_users=0).n_users is None
        True
        """
        automatic_when_zero = ("n_users", "n_listings", "n_shops")
        chosen = {
            name: value
            for name, value in fields.items()
            if value is not None and not (name in automatic_when_zero and value == 0)
        }
        config = cls(**chosen)
        if module_mix:
            config = config.with_module_mix(parse_mapping(module_mix, float))
        if candidates:
            config = config.with_candidates(parse_mapping(candidates, int))
        return config

    def with_module_mix(self, mix: Mapping[str, float]) -> SimulatorConfig:
        """A copy where only the modules in ``mix`` get requests, in the given proportions."""
        return dataclasses.replace(self, modules=_override(self.modules, mix, "share", float, absent=0.0))

    def with_candidates(self, candidates: Mapping[str, int]) -> SimulatorConfig:
        """A copy with new slate sizes for the named modules."""
        return dataclasses.replace(self, modules=_override(self.modules, candidates, "candidates", int))


def _override(
    modules: Mapping[str, ModuleBehavior], values: Mapping[str, float], field: str, cast: type, absent=None
) -> dict[str, ModuleBehavior]:
    unknown = set(values) - set(modules)
    if unknown:
        raise ValueError(f"unknown modules {sorted(unknown)}; the simulator has {', '.join(modules)}")
    updated = {}
    for name, behavior in modules.items():
        value = values.get(name, absent)
        updated[name] = behavior if value is None else dataclasses.replace(behavior, **{field: cast(value)})
    return updated


def parse_mapping(text: str, cast: type = float) -> dict[str, float]:
    """Parse ``"search=0.3,home_feed=0.7"`` (a CLI flag) into a dict.

    >>> parse_mapping("search=30,cart=8", int)
    {'search': 30, 'cart': 8}
    """
    mapping = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, separator, value = item.partition("=")
        if not separator:
            raise ValueError(f"expected NAME=VALUE in {text!r}, got {item!r}")
        try:
            mapping[name.strip()] = cast(value)
        except ValueError:
            raise ValueError(f"{name.strip()!r}: {value!r} is not a valid {cast.__name__}") from None
    return mapping
