"""The marketplace simulator: Etsy-like impression logs with known ground truth.

Users with latent taste, price sensitivity and activity visit six surfaces
(``home_feed``, ``item_page``, ``search``, ``cart``, ``email_digest``,
``shop_page``) over ``days`` days. Each request gets a slate of distinct
listings from its module's candidate generator, ordered by a noisy logging
policy, and the user clicks, favorites, adds to cart and purchases through a
funnel whose logits depend on the module. Time advances in steps: engagement
in one step changes the user's category history and the listings'
popularity, which shift both exposure and engagement in later steps.

The logs follow the project's data contract; the true probability of every
task for every impression goes to a separate oracle table (never a feature),
both as logged (``p_<task>``, with the examination effect of the position) and
position-free (``p_<task>_position_free``: what a ranker that cannot see the
position can at best rank by)::

    summary = simulate(SimulatorConfig(n_impressions=100_000, seed=3), "work/sim")
    summary.rows                          # 100000
    summary.per_module["search"].rates    # {"click": 0.07..., ...}
    # work/sim/impressions/part-00000.parquet, work/sim/oracle/part-00000.parquet, work/sim/summary.json

The generative model is written out in ``docs/simulator.md``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.data.simulator_candidates import CANDIDATE_GENERATORS, NONE, Market, Slate
from components.data.simulator_config import SIGNALS, STAGES, ModuleBehavior, SimulatorConfig
from components.data.simulator_world import (
    CATEGORIES,
    COUNTRIES,
    DEVICE_LOYALTY,
    DEVICE_SHARES,
    DEVICES,
    SUBCATEGORIES,
    World,
    build_world,
)
from ranker_core.schema import DEFAULT_TASKS

__all__ = ["IMPRESSION_SCHEMA", "ORACLE_SCHEMA", "SimulationSummary", "SimulatorConfig", "oracle_column", "simulate"]

logger = logging.getLogger(__name__)

IMPRESSIONS_DIR = "impressions"
ORACLE_DIR = "oracle"
SUMMARY_FILE = "summary.json"
PART_PATTERN = "part-*.parquet"

IMPRESSION_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("timestamp", pa.int64()),
        ("user_id", pa.string()),
        ("listing_id", pa.string()),
        ("module_name", pa.string()),
        ("position", pa.int32()),
        ("clicked", pa.int8()),
        ("favorited", pa.int8()),
        ("added_to_cart", pa.int8()),
        ("purchased", pa.int8()),
        ("user_country", pa.string()),
        ("device", pa.string()),
        ("category", pa.string()),
        ("subcategory", pa.string()),
        ("shop_id", pa.string()),
        ("price", pa.float64()),
        ("listing_age_days", pa.float64()),
        ("rating", pa.float64()),
        ("num_reviews", pa.int64()),
        ("tags", pa.list_(pa.string())),
        ("query_category", pa.string()),
        ("anchor_listing_id", pa.string()),
        ("anchor_category", pa.string()),
    ]
)
POSITION_FREE_SUFFIX = "_position_free"


def oracle_column(task: str, position_free: bool = False) -> str:
    """The oracle table's probability column of ``task``.

    >>> oracle_column("click"), oracle_column("click", position_free=True)
    ('p_click', 'p_click_position_free')
    """
    return f"p_{task}{POSITION_FREE_SUFFIX if position_free else ''}"


ORACLE_SCHEMA = pa.schema(
    [("request_id", pa.string()), ("listing_id", pa.string())]
    + [(oracle_column(stage, free), pa.float64()) for free in (False, True) for stage in STAGES]
)
TASK_NAMES = tuple(task.name for task in DEFAULT_TASKS)
LABEL_COLUMNS = tuple(task.label_column for task in DEFAULT_TASKS)
assert TASK_NAMES == STAGES, "the simulator's funnel stages must be the default tasks"

SECONDS_PER_DAY = 86_400
# Relative request rate by hour of day (UTC): an evening peak.
HOURLY_TRAFFIC = 1.0 + 0.8 * np.cos(2 * np.pi * (np.arange(24) - 20) / 24)
# How much each event adds to a user's history with the listing's category.
HISTORY_EVENT_WEIGHTS = np.array([1.0, 1.0, 2.0, 3.0])  # click, favorite, add_to_cart, purchase
TASTE_SCALE = 2.5
NOVELTY_DAYS = 30.0


@dataclasses.dataclass
class ModuleRates:
    """Rows, requests and the positive rate of every task in one module."""

    rows: int
    requests: int
    rates: dict[str, float]


@dataclasses.dataclass
class SimulationSummary:
    """What a simulation wrote and its base rates, overall and per module."""

    impressions_dir: str
    oracle_dir: str
    rows: int
    requests: int
    users: int
    listings: int
    parts: int
    seed: int
    rates: dict[str, float]
    per_module: dict[str, ModuleRates]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def rates_table(self) -> str:
        """A plain-text table of rows, requests and task rates per module (Markdown-compatible)."""
        header = ["module", "rows", "requests", *(f"{task} %" for task in TASK_NAMES)]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        entries = [*self.per_module.items(), ("all", ModuleRates(self.rows, self.requests, self.rates))]
        for name, stats in entries:
            cells = [name, f"{stats.rows:,}", f"{stats.requests:,}"]
            cells += [f"{100 * stats.rates[task]:.3f}" for task in TASK_NAMES]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


@dataclasses.dataclass
class Requests:
    """Every request of a simulation, sorted by time."""

    timestamp: np.ndarray  # (N,) int64
    module: np.ndarray  # (N,) index into the active modules
    user: np.ndarray  # (N,)
    device: np.ndarray  # (N,) index into DEVICES
    slate_size: np.ndarray  # (N,) the last request may be cut short to hit n_impressions exactly

    def __len__(self) -> int:
        return len(self.timestamp)


def plan_requests(config: SimulatorConfig, world: World, rng: np.random.Generator) -> Requests:
    """Draw module, time, user and device of every request; slates add up to ``n_impressions`` rows."""
    modules = list(config.active_modules().values())
    shares = np.array([module.share for module in modules])
    sizes = np.array([module.candidates for module in modules])
    upper_bound = config.n_impressions // sizes.min() + 1
    module = rng.choice(len(modules), size=upper_bound, p=shares / shares.sum())
    total = np.cumsum(sizes[module])
    count = int(np.searchsorted(total, config.n_impressions)) + 1
    module = module[:count]
    slate_size = sizes[module]
    slate_size[-1] -= total[count - 1] - config.n_impressions
    day = rng.integers(0, config.days, size=count)
    hour = rng.choice(24, size=count, p=HOURLY_TRAFFIC / HOURLY_TRAFFIC.sum())
    seconds = day * SECONDS_PER_DAY + hour * 3600 + rng.integers(0, 3600, size=count)
    user = np.minimum(np.searchsorted(np.cumsum(world.user_activity), rng.random(count)), world.n_users - 1)
    loyal = rng.random(count) < DEVICE_LOYALTY
    device = np.where(loyal, world.user_device[user], rng.choice(len(DEVICES), size=count, p=DEVICE_SHARES))
    timestamp = config.start_timestamp + np.sort(seconds).astype(np.int64)
    return Requests(timestamp, module, user, device, slate_size)


@dataclasses.dataclass
class Impressions:
    """One time step's impressions, one entry per row, sorted by (request, position)."""

    request: np.ndarray
    listing: np.ndarray
    position: np.ndarray
    labels: np.ndarray  # (N, 4) bool, in STAGES order
    probabilities: np.ndarray  # (N, 4) true marginal probabilities (examination x relevance)
    relevance: np.ndarray  # (N, 4) the same without the examination (position) factor
    query_category: np.ndarray
    anchor: np.ndarray


def simulate(
    config: SimulatorConfig,
    out_dir: str | Path | None = None,
    *,
    impressions_dir: str | Path | None = None,
    oracle_dir: str | Path | None = None,
) -> SimulationSummary:
    """Simulate ``config.n_impressions`` impressions; write logs, oracle and ``<out_dir>/summary.json``.

    Parts go to ``<out_dir>/impressions`` and ``<out_dir>/oracle`` unless other
    folders are given (a kfp component writes into its two output artifacts
    and passes no ``out_dir``: then no summary file is written, the returned
    summary is all). Part files already in the folders are replaced. Memory
    stays bounded by ``config.rows_per_part``; the rows do not depend on it.
    """
    if out_dir is None and (impressions_dir is None or oracle_dir is None):
        raise ValueError("simulate needs out_dir, or both impressions_dir and oracle_dir")
    config = config.resolved()
    impressions_dir = Path(impressions_dir or Path(out_dir) / IMPRESSIONS_DIR)
    writer = PartWriter(impressions_dir, Path(oracle_dir or Path(out_dir) / ORACLE_DIR), config.rows_per_part)
    world = build_world(config, np.random.default_rng([config.seed, 0]))
    requests = plan_requests(config, world, np.random.default_rng([config.seed, 1]))
    engine = Engine(config, world)
    tables = TableBuilder(world, list(config.active_modules()), requests, config.start_timestamp)
    step_of_request = (requests.timestamp - config.start_timestamp) // int(config.step_hours * 3600)
    boundaries = np.flatnonzero(np.diff(step_of_request)) + 1
    for start, end in zip(np.r_[0, boundaries], np.r_[boundaries, len(requests)], strict=True):
        step = int(step_of_request[start])
        impressions = engine.run_step(requests, start, end, step, np.random.default_rng([config.seed, 2, step]))
        writer.add(*tables.tables(impressions))
    writer.close()
    summary = engine.summary(writer, requests, config)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        summary.save(Path(out_dir) / SUMMARY_FILE)
    logger.info("simulated %d impressions in %d requests into %s", summary.rows, summary.requests, impressions_dir)
    return summary


class Engine:
    """Runs time steps: candidates, logging-policy order, engagement, then the history update."""

    def __init__(self, config: SimulatorConfig, world: World):
        generators = {name: behavior.generator_of(name) for name, behavior in config.active_modules().items()}
        unknown = sorted(name for name, generator in generators.items() if generator not in CANDIDATE_GENERATORS)
        if unknown:
            known = ", ".join(CANDIDATE_GENERATORS)
            raise ValueError(
                f"no candidate generator for modules {unknown}: set ModuleBehavior.generator to one of {known}"
            )
        self.config, self.world = config, world
        self.market = Market.open(world, config.history_strength)
        self.modules: list[tuple[str, ModuleBehavior]] = list(config.active_modules().items())
        self.weights = np.array([[behavior.stage(s).vector() for s in STAGES] for _, behavior in self.modules])
        self.biases = np.array([[behavior.stage(s).bias for s in STAGES] for _, behavior in self.modules])
        self.last_step = 0
        self.positives = np.zeros((len(self.modules), len(STAGES)), dtype=np.int64)
        self.rows = np.zeros(len(self.modules), dtype=np.int64)

    def run_step(self, requests: Requests, start: int, end: int, step: int, rng: np.random.Generator) -> Impressions:
        """Simulate requests ``[start, end)`` (one time step) and fold their engagement into history."""
        self._decay_history(step)
        parts = []
        for module_index, (name, behavior) in enumerate(self.modules):
            rows = start + np.flatnonzero(requests.module[start:end] == module_index)
            if len(rows):
                draw = CANDIDATE_GENERATORS[behavior.generator_of(name)]
                slate = draw(self.market, requests.user[rows], behavior.candidates, rng)
                parts.append(self._engage(module_index, rows, slate, requests, rng))
        impressions = _concatenate(parts)
        self._remember(impressions, requests)
        return impressions

    def _decay_history(self, step: int) -> None:
        steps_per_half_life = self.config.history_half_life_days * 24 / self.config.step_hours
        factor = 0.5 ** ((step - self.last_step) / steps_per_half_life)
        self.market.user_category_history *= factor
        self.market.listing_recent_engagement *= factor
        self.last_step = step

    def signals(self, rows: np.ndarray, slate: Slate, requests: Requests) -> np.ndarray:
        """(R, K, len(SIGNALS)) engagement signals of each candidate (see SIGNALS)."""
        world, listings = self.world, slate.listings
        users = requests.user[rows]
        category = world.listing_category[listings]
        taste = TASTE_SCALE * np.einsum("rd,rkd->rk", world.user_taste[users], world.listing_embedding[listings])
        history = self.market.habit(users[:, None], category)
        price = world.user_price_sensitivity[users][:, None] * world.log_relative_price[listings]
        days = (requests.timestamp[rows] - self.config.start_timestamp) / SECONDS_PER_DAY
        novelty = np.exp(-(world.age_at_start_days[listings] + days[:, None]) / NOVELTY_DAYS)
        mobile = np.broadcast_to((requests.device[rows] != DEVICES.index("web"))[:, None], listings.shape)
        by_name = {
            "taste": taste,
            "history": history,
            "quality": world.listing_quality[listings],
            "price": price,
            "context": self._context(slate),
            "novelty": novelty,
            "free_shipping": world.has_tag("free_shipping")[listings],
            "on_sale": world.has_tag("on_sale")[listings],
            "mobile": mobile,
        }
        return np.stack([by_name[signal] for signal in SIGNALS], axis=-1).astype(np.float64)

    def _context(self, slate: Slate) -> np.ndarray:
        """How well each candidate matches its request: query category, anchor similarity, page shop."""
        world, listings = self.world, slate.listings
        context = np.zeros(listings.shape)
        has_query = (slate.query_category != NONE)[:, None]
        context += has_query * (world.listing_category[listings] == slate.query_category[:, None])
        has_anchor = (slate.anchor != NONE)[:, None]
        anchor_embedding = world.listing_embedding[np.maximum(slate.anchor, 0)]
        similarity = np.einsum("rd,rkd->rk", anchor_embedding, world.listing_embedding[listings])
        context += has_anchor * similarity
        has_shop = (slate.page_shop != NONE)[:, None]
        context += has_shop * (world.listing_shop[listings] == slate.page_shop[:, None])
        return context

    def _engage(self, module: int, rows: np.ndarray, slate: Slate, requests: Requests, rng) -> Impressions:
        logits = self.signals(rows, slate, requests) @ self.weights[module].T + self.biases[module]
        # The logging policy: a ranker that knew the click logit up to Gumbel noise ordered the slate.
        policy = logits[..., 0] + self.config.policy_noise * rng.gumbel(size=logits.shape[:2])
        order = np.argsort(-policy, axis=1, kind="stable")
        listings = np.take_along_axis(slate.listings, order, axis=1)
        logits = np.take_along_axis(logits, order[..., None], axis=1)
        position = np.broadcast_to(np.arange(listings.shape[1]), listings.shape)
        examination = (1.0 + position) ** -self.modules[module][1].position_decay
        conditional = 1.0 / (1.0 + np.exp(-logits))  # click | examined, favorite | click, cart | click, buy | cart
        probabilities = _funnel(examination * conditional[..., 0], conditional)
        relevance = _funnel(conditional[..., 0], conditional)  # the same once the listing is examined
        draws = rng.random(logits.shape)
        clicked = draws[..., 0] < probabilities[..., 0]
        carted = clicked & (draws[..., 2] < conditional[..., 2])
        labels = np.stack(
            [
                clicked,
                clicked & (draws[..., 1] < conditional[..., 1]),
                carted,
                carted & (draws[..., 3] < conditional[..., 3]),
            ],
            axis=-1,
        )
        shown = position < requests.slate_size[rows][:, None]
        self.rows[module] += int(shown.sum())
        self.positives[module] += labels[shown].sum(axis=0)
        request = np.broadcast_to(rows[:, None], listings.shape)
        return Impressions(
            request=request[shown],
            listing=listings[shown],
            position=position[shown],
            labels=labels[shown],
            probabilities=probabilities[shown],
            relevance=relevance[shown],
            query_category=np.broadcast_to(slate.query_category[:, None], listings.shape)[shown],
            anchor=np.broadcast_to(slate.anchor[:, None], listings.shape)[shown],
        )

    def _remember(self, impressions: Impressions, requests: Requests) -> None:
        """Fold a step's engagement into user-category history and listing popularity."""
        weight = impressions.labels @ HISTORY_EVENT_WEIGHTS
        engaged = weight > 0
        users = requests.user[impressions.request[engaged]]
        categories = self.world.listing_category[impressions.listing[engaged]]
        np.add.at(self.market.user_category_history, (users, categories), weight[engaged])
        np.add.at(self.market.listing_recent_engagement, impressions.listing, impressions.labels[:, 0])
        self.market.refresh_samplers()

    def summary(self, writer: PartWriter, requests: Requests, config: SimulatorConfig) -> SimulationSummary:
        per_module = {}
        for index, (name, _) in enumerate(self.modules):
            rows = int(self.rows[index])
            per_module[name] = ModuleRates(
                rows=rows,
                requests=int((requests.module == index).sum()),
                rates=_rates(self.positives[index], rows),
            )
        rows = int(self.rows.sum())
        return SimulationSummary(
            impressions_dir=str(writer.impressions_dir),
            oracle_dir=str(writer.oracle_dir),
            rows=rows,
            requests=len(requests),
            users=self.world.n_users,
            listings=self.world.n_listings,
            parts=writer.parts,
            seed=config.seed,
            rates=_rates(self.positives.sum(axis=0), rows),
            per_module=per_module,
        )


def _funnel(click: np.ndarray, conditional: np.ndarray) -> np.ndarray:
    """(..., 4) probability of each stage from the click probability and the later stages' conditionals."""
    return np.stack(
        [
            click,
            click * conditional[..., 1],
            click * conditional[..., 2],
            click * conditional[..., 2] * conditional[..., 3],
        ],
        axis=-1,
    )


def _rates(positives: np.ndarray, rows: int) -> dict[str, float]:
    return {task: float(count) / max(rows, 1) for task, count in zip(TASK_NAMES, positives, strict=True)}


def _concatenate(parts: list[Impressions]) -> Impressions:
    fields = {f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(Impressions)}
    order = np.lexsort((fields["position"], fields["request"]))
    return Impressions(**{name: values[order] for name, values in fields.items()})


class TableBuilder:
    """Turns a step's :class:`Impressions` into Arrow tables in the contract's schemas."""

    def __init__(self, world: World, modules: list[str], requests: Requests, start_timestamp: int):
        self.world, self.requests, self.start_timestamp = world, requests, start_timestamp
        self.categories = _with_empty(pa.array(CATEGORIES))
        self.subcategories = pa.array(SUBCATEGORIES)
        self.listing_ids = _with_empty(world.listing_ids)
        self.modules = pa.array(modules)
        self.countries = pa.array(list(COUNTRIES))
        self.devices = pa.array(DEVICES)
        self.request_id_width = len(str(max(len(requests) - 1, 1)))

    def tables(self, impressions: Impressions) -> tuple[pa.Table, pa.Table]:
        """(impressions, oracle) tables with one row per impression, in the same order."""
        world, requests = self.world, self.requests
        request, listing = impressions.request, impressions.listing
        user = requests.user[request]
        anchor = impressions.anchor
        request_ids = self.request_ids(request)
        listing_ids = self.listing_ids.take(listing)
        days_since_start = (requests.timestamp[request] - self.start_timestamp) / SECONDS_PER_DAY
        columns = {
            "request_id": request_ids,
            "timestamp": requests.timestamp[request],
            "user_id": world.user_ids.take(user),
            "listing_id": listing_ids,
            "module_name": self.modules.take(requests.module[request]),
            "position": impressions.position.astype(np.int32),
            **{column: impressions.labels[:, i].astype(np.int8) for i, column in enumerate(LABEL_COLUMNS)},
            "user_country": self.countries.take(world.user_country[user]),
            "device": self.devices.take(requests.device[request]),
            "category": self.categories.take(world.listing_category[listing]),
            "subcategory": self.subcategories.take(world.listing_subcategory[listing]),
            "shop_id": world.shop_ids.take(world.listing_shop[listing]),
            "price": world.price[listing],
            "listing_age_days": world.age_at_start_days[listing] + days_since_start,
            "rating": world.rating[listing],
            "num_reviews": world.num_reviews[listing],
            "tags": world.tags.take(listing),
            "query_category": self.categories.take(_empty_index(impressions.query_category, len(CATEGORIES))),
            "anchor_listing_id": self.listing_ids.take(_empty_index(anchor, world.n_listings)),
            "anchor_category": self.categories.take(
                np.where(anchor == NONE, len(CATEGORIES), world.listing_category[np.maximum(anchor, 0)])
            ),
        }
        oracle = {"request_id": request_ids, "listing_id": listing_ids}
        for i, stage in enumerate(STAGES):
            oracle[oracle_column(stage)] = impressions.probabilities[:, i]
            oracle[oracle_column(stage, position_free=True)] = impressions.relevance[:, i]
        return (
            pa.Table.from_pydict(columns, schema=IMPRESSION_SCHEMA),
            pa.Table.from_pydict(oracle, schema=ORACLE_SCHEMA),
        )

    def request_ids(self, request: np.ndarray) -> pa.Array:
        """``r`` + the zero-padded request index, for each row."""
        first, last = int(request.min()), int(request.max())
        numbers = pc.cast(pa.array(np.arange(first, last + 1)), pa.string())
        ids = pc.binary_join_element_wise("r", pc.utf8_lpad(numbers, self.request_id_width, padding="0"), "")
        return ids.take(request - first)


def _with_empty(values: pa.Array) -> pa.Array:
    """The values plus a trailing "" that ``NONE`` indices are mapped to."""
    return pa.concat_arrays([values, pa.array([""], values.type)])


def _empty_index(indices: np.ndarray, size: int) -> np.ndarray:
    return np.where(indices == NONE, size, indices)


class PartWriter:
    """Writes impression and oracle rows as parquet parts of exactly ``rows_per_part`` rows (the last: fewer).

    >>> writer = PartWriter(Path("out/impressions"), Path("out/oracle"), rows_per_part=100_000)  # doctest: +SKIP
    >>> writer.add(impressions_table, oracle_table); writer.close()                             # doctest: +SKIP
    """

    def __init__(self, impressions_dir: Path, oracle_dir: Path, rows_per_part: int):
        self.impressions_dir, self.oracle_dir, self.rows_per_part = impressions_dir, oracle_dir, rows_per_part
        for folder in (impressions_dir, oracle_dir):
            folder.mkdir(parents=True, exist_ok=True)
            stale = sorted(folder.glob(PART_PATTERN))
            if stale:
                logger.info("replacing %d existing parts in %s", len(stale), folder)
            for path in stale:
                path.unlink()
        self.parts = 0
        self.pending: list[tuple[pa.Table, pa.Table]] = []
        self.pending_rows = 0

    def add(self, impressions: pa.Table, oracle: pa.Table) -> None:
        self.pending.append((impressions, oracle))
        self.pending_rows += impressions.num_rows
        if self.pending_rows >= self.rows_per_part:
            self._flush(final=False)

    def close(self) -> None:
        self._flush(final=True)

    def _flush(self, final: bool) -> None:
        if not self.pending:
            return
        impressions = pa.concat_tables([pair[0] for pair in self.pending])
        oracle = pa.concat_tables([pair[1] for pair in self.pending])
        offset = 0
        while impressions.num_rows - offset >= self.rows_per_part or (final and offset < impressions.num_rows):
            length = min(self.rows_per_part, impressions.num_rows - offset)
            name = f"part-{self.parts:05d}.parquet"
            pq.write_table(impressions.slice(offset, length), self.impressions_dir / name)
            pq.write_table(oracle.slice(offset, length), self.oracle_dir / name)
            self.parts += 1
            offset += length
        rest = impressions.num_rows - offset
        self.pending = [(impressions.slice(offset), oracle.slice(offset))] if rest else []
        self.pending_rows = rest
