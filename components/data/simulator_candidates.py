"""Candidate generation: which listings each module's requests are shown, before ranking.

Every module draws a slate of distinct listings from a mixture of sources:
the user's *exposure distribution* over categories (taste plus past
engagement, so history shifts what a user sees), global popularity (which
follows recent engagement), the query category, the anchor listing's
subcategory and category, or the page's shop. All draws are vectorized over
the requests of one time step::

    draw = CANDIDATE_GENERATORS["search"]
    slate = draw(market, users, k=30, rng=rng)
    slate.listings.shape      # (len(users), 30), distinct within each row
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from components.data.simulator_world import CATEGORIES, SUBCATEGORIES, World

NONE = -1  # "no query category / anchor / shop page" in Slate's per-request columns
MAX_FILL_ROUNDS = 20
# Engagement weight (click 1 ... purchase 3, decayed) at which a habit reaches 63% of its strength.
HABIT_SCALE = 3.0
# Exposure distribution: softmax(TASTE_TEMPERATURE x taste + log popularity + HISTORY_WEIGHT x boost x habit),
# mixed with category popularity in EXPLORATION_SHARE of draws.
TASTE_TEMPERATURE = 3.0
HISTORY_WEIGHT = 1.5
EXPLORATION_SHARE = 0.2
# A listing's exposure weight grows by this much per (decayed) recent click.
CLICK_POPULARITY_BOOST = 0.3


class GroupSampler:
    """Draws items from contiguous groups of an ordering, proportional to per-item weights.

    ``order`` lists item indices so that each group is the slice
    ``order[start[g]:end[g]]``; a draw costs one binary search.

    >>> sampler = GroupSampler(np.ones(4), np.array([0, 2]), np.array([2, 4]))
    >>> sorted(set(sampler.draw(np.ones(100, dtype=int), np.random.default_rng(0)).tolist()))
    [2, 3]
    """

    def __init__(self, weights: np.ndarray, start: np.ndarray, end: np.ndarray, order: np.ndarray | None = None):
        self.order = order
        ordered = weights if order is None else weights[order]
        self.cumulative = np.concatenate([[0.0], np.cumsum(ordered)])
        self.start, self.end = start, end

    def draw(self, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One item per entry of ``groups`` (any shape); ``NONE`` where the group is empty."""
        start, end = self.start[groups], self.end[groups]
        low, high = self.cumulative[start], self.cumulative[end]
        target = low + rng.random(groups.shape) * (high - low)
        position = np.clip(np.searchsorted(self.cumulative, target, side="right") - 1, start, end - 1)
        items = position if self.order is None else self.order[np.maximum(position, 0)]
        return np.where(end > start, items, NONE)


@dataclasses.dataclass
class Market:
    """The world plus the state that history changes; candidate generators read it."""

    world: World
    user_category_history: np.ndarray  # (U, C) decayed engagement counts
    listing_recent_engagement: np.ndarray  # (L,) decayed clicks
    history_strength: float
    category: GroupSampler = dataclasses.field(init=False)
    subcategory: GroupSampler = dataclasses.field(init=False)
    shop: GroupSampler = dataclasses.field(init=False)
    everywhere: GroupSampler = dataclasses.field(init=False)
    # Listings grouped by shop never change: computed once in open().
    _by_shop: np.ndarray = dataclasses.field(init=False, repr=False)
    _shop_bounds: tuple[np.ndarray, np.ndarray] = dataclasses.field(init=False, repr=False)

    @classmethod
    def open(cls, world: World, history_strength: float) -> Market:
        """A market before any request: no history yet."""
        history = np.zeros((world.n_users, len(CATEGORIES)), dtype=np.float64)
        market = cls(world, history, np.zeros(world.n_listings), history_strength)
        market._by_shop = np.argsort(world.listing_shop, kind="stable")
        market._shop_bounds = _bounds(world.listing_shop[market._by_shop], np.arange(len(world.shop_quality)))
        market.refresh_samplers()
        return market

    def listing_weights(self) -> np.ndarray:
        """Exposure weight of each listing: base popularity, boosted by recent clicks."""
        boost = CLICK_POPULARITY_BOOST * self.history_strength * self.listing_recent_engagement
        return self.world.listing_base_popularity * (1.0 + boost)

    def refresh_samplers(self) -> None:
        world, weights = self.world, self.listing_weights()
        groups = np.arange(len(SUBCATEGORIES))
        self.subcategory = GroupSampler(weights, *_bounds(world.listing_subcategory, groups))
        self.category = GroupSampler(weights, *_bounds(world.listing_category, np.arange(len(CATEGORIES))))
        self.shop = GroupSampler(weights, *self._shop_bounds, order=self._by_shop)
        self.everywhere = GroupSampler(weights, np.array([0]), np.array([world.n_listings]))

    def habit(self, users: np.ndarray, categories: np.ndarray) -> np.ndarray:
        """Saturating habit strength in [0, history_strength): ``1 - exp(-history / HABIT_SCALE)``."""
        history = self.user_category_history[users, categories]
        return self.history_strength * -np.expm1(-history / HABIT_SCALE)

    def exposure(self, users: np.ndarray, history_boost: float = 1.0) -> np.ndarray:
        """(R, C) probability of showing each category to each user: taste, history and popularity."""
        world = self.world
        logits = TASTE_TEMPERATURE * world.user_category_taste[users] + np.log(world.category_popularity)
        logits += HISTORY_WEIGHT * history_boost * self.habit(users[:, None], np.arange(len(CATEGORIES)))
        logits -= logits.max(axis=1, keepdims=True)
        personal = np.exp(logits)
        personal /= personal.sum(axis=1, keepdims=True)
        return (1 - EXPLORATION_SHARE) * personal + EXPLORATION_SHARE * world.category_popularity

    def personal_categories(self, users: np.ndarray, width: int, rng, history_boost: float = 1.0) -> np.ndarray:
        """(R, width) categories drawn from each user's exposure distribution."""
        cumulative = np.cumsum(self.exposure(users, history_boost), axis=1)
        target = rng.random((len(users), width)) * cumulative[:, -1:]
        categories = (cumulative[:, None, :] < target[:, :, None]).sum(axis=2)
        return np.minimum(categories, len(CATEGORIES) - 1)

    def personal_draws(self, users: np.ndarray, width: int, rng, history_boost: float = 1.0) -> np.ndarray:
        """(R, width) listings: a category from the exposure distribution, then a listing in it."""
        return self.category.draw(self.personal_categories(users, width, rng, history_boost), rng)

    def popular_draws(self, count: int, width: int, rng) -> np.ndarray:
        return self.everywhere.draw(np.zeros((count, width), dtype=np.int64), rng)


def _bounds(sorted_groups: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.searchsorted(sorted_groups, groups, side="left"), np.searchsorted(sorted_groups, groups, side="right")


@dataclasses.dataclass
class Slate:
    """The candidates of R requests and each request's context (``NONE`` where a module has none)."""

    listings: np.ndarray  # (R, K) distinct per row
    query_category: np.ndarray  # (R,)
    anchor: np.ndarray  # (R,) anchor listing
    page_shop: np.ndarray  # (R,)

    @classmethod
    def plain(cls, listings: np.ndarray) -> Slate:
        none = np.full(len(listings), NONE)
        return cls(listings, none, none.copy(), none.copy())


def first_unique(draws: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` distinct non-negative entries of each row, in draw order, and which were found.

    >>> first_unique(np.array([[3, 3, 1, 2]]), 2)
    (array([[3, 1]]), array([[ True,  True]]))
    """
    width = draws.shape[1]
    order = np.argsort(draws, axis=1, kind="stable")
    ordered = np.take_along_axis(draws, order, axis=1)
    repeated = np.zeros_like(ordered, dtype=bool)
    repeated[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    invalid = np.empty_like(repeated)
    np.put_along_axis(invalid, order, repeated, axis=1)
    invalid |= draws < 0
    columns = np.arange(width)
    pick = np.argsort(np.where(invalid, width + columns, columns), axis=1, kind="stable")[:, :k]
    return np.take_along_axis(draws, pick, axis=1), ~np.take_along_axis(invalid, pick, axis=1)


def distinct_slate(draws: np.ndarray, k: int, market: Market, rng) -> np.ndarray:
    """``k`` distinct listings per row: the first unique draws, topped up from global popularity."""
    chosen, found = first_unique(draws, k)
    for _ in range(MAX_FILL_ROUNDS):
        short = ~found.all(axis=1)
        if not short.any():
            return chosen
        refill = np.where(found[short], chosen[short], NONE)
        refill = np.concatenate([refill, market.popular_draws(int(short.sum()), 2 * k, rng)], axis=1)
        chosen[short], found[short] = first_unique(refill, k)
    raise RuntimeError(f"could not draw {k} distinct listings per request from {market.world.n_listings} listings")


def _mix(first: np.ndarray, second: np.ndarray, first_share: float, rng) -> np.ndarray:
    return np.where(rng.random(first.shape) < first_share, first, second)


def home_feed(market: Market, users: np.ndarray, k: int, rng) -> Slate:
    """Personalized categories with some popular listings mixed in."""
    width = 2 * k
    draws = _mix(market.personal_draws(users, width, rng), market.popular_draws(len(users), width, rng), 0.75, rng)
    return Slate.plain(distinct_slate(draws, k, market, rng))


def item_page(market: Market, users: np.ndarray, k: int, rng) -> Slate:
    """Listings like the anchor (same subcategory, same category) and some personalized ones."""
    anchor = market.personal_draws(users, 1, rng)[:, 0]
    width = 2 * k
    world = market.world
    same_subcategory = market.subcategory.draw(np.repeat(world.listing_subcategory[anchor, None], width, 1), rng)
    same_category = market.category.draw(np.repeat(world.listing_category[anchor, None], width, 1), rng)
    related = _mix(same_subcategory, same_category, 0.6, rng)
    draws = _mix(related, market.personal_draws(users, width, rng), 0.8, rng)
    # The anchor goes first so that it is never its own candidate.
    slate = distinct_slate(np.concatenate([anchor[:, None], draws], axis=1), k + 1, market, rng)[:, 1:]
    none = np.full(len(users), NONE)
    return Slate(slate, none, anchor, none.copy())


def search(market: Market, users: np.ndarray, k: int, rng) -> Slate:
    """A query category from the user's intent; most results match it, some do not."""
    query = market.personal_categories(users, 1, rng)[:, 0]
    width = 2 * k
    matching = market.category.draw(np.repeat(query[:, None], width, 1), rng)
    draws = _mix(matching, market.popular_draws(len(users), width, rng), 0.75, rng)
    none = np.full(len(users), NONE)
    return Slate(distinct_slate(draws, k, market, rng), query, none, none.copy())


def cart(market: Market, users: np.ndarray, k: int, rng) -> Slate:
    """Recommendations next to the cart: categories the user engaged with, and popular add-ons."""
    width = 2 * k
    history_heavy = market.personal_draws(users, width, rng, history_boost=3.0)
    draws = _mix(history_heavy, market.popular_draws(len(users), width, rng), 0.6, rng)
    return Slate.plain(distinct_slate(draws, k, market, rng))


def email_digest(market: Market, users: np.ndarray, k: int, rng) -> Slate:
    """A digest: half from the user's engaged categories, half trending."""
    width = 2 * k
    history_heavy = market.personal_draws(users, width, rng, history_boost=3.0)
    draws = _mix(history_heavy, market.popular_draws(len(users), width, rng), 0.5, rng)
    return Slate.plain(distinct_slate(draws, k, market, rng))


def shop_page(market: Market, users: np.ndarray, k: int, rng) -> Slate:
    """A shop the user reached through a listing: its listings first, then its category."""
    world = market.world
    page_shop = world.listing_shop[market.personal_draws(users, 1, rng)[:, 0]]
    from_shop = market.shop.draw(np.repeat(page_shop[:, None], 2 * k, 1), rng)
    home = _shop_home_category(market, page_shop)
    from_category = market.category.draw(np.repeat(home[:, None], k, 1), rng)
    none = np.full(len(users), NONE)
    slate = distinct_slate(np.concatenate([from_shop, from_category], axis=1), k, market, rng)
    return Slate(slate, none, none.copy(), page_shop)


def _shop_home_category(market: Market, shops: np.ndarray) -> np.ndarray:
    """The category of a shop's first listing (shops are drawn through a listing, so never empty)."""
    first = market.shop.order[market.shop.start[shops]]
    return market.world.listing_category[first]


CandidateGenerator = Callable[[Market, np.ndarray, int, np.random.Generator], Slate]
CANDIDATE_GENERATORS: dict[str, CandidateGenerator] = {
    "home_feed": home_feed,
    "item_page": item_page,
    "search": search,
    "cart": cart,
    "email_digest": email_digest,
    "shop_page": shop_page,
}
