"""The static side of the simulated marketplace: taxonomy, shops, listings and users.

:func:`build_world` draws everything that does not change during a simulation
(latent taste, quality, price sensitivity, prices, reviews, tags) as NumPy
arrays, plus the Arrow string columns the impression logs are taken from::

    world = build_world(SimulatorConfig().resolved(), np.random.default_rng(0))
    world.listing_category[:5], world.price[:5]

Listings are stored sorted by (category, subcategory), so every category and
subcategory is a contiguous index range and can be sampled in O(log n).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.data.simulator_config import SimulatorConfig

# Top-level category -> (median price in USD, subcategories). Etsy-like on purpose.
TAXONOMY: dict[str, tuple[float, tuple[str, ...]]] = {
    "jewelry": (28.0, ("necklaces", "earrings", "rings", "bracelets", "brooches")),
    "clothing": (35.0, ("dresses", "shirts", "kids_clothing", "sweaters", "costumes")),
    "home_decor": (30.0, ("wall_decor", "candles", "pillows", "vases", "clocks")),
    "art_collectibles": (45.0, ("prints", "paintings", "photography", "sculpture", "collectibles")),
    "craft_supplies": (9.0, ("beads", "yarn", "fabric", "stickers", "tools")),
    "toys_games": (25.0, ("plush", "puzzles", "wooden_toys", "board_games", "dolls")),
    "weddings": (40.0, ("invitations", "decorations", "bridal_accessories", "favors", "gifts")),
    "accessories": (22.0, ("hats", "scarves", "keychains", "sunglasses", "hair_accessories")),
    "bags_purses": (48.0, ("backpacks", "totes", "wallets", "clutches", "crossbody")),
    "bath_beauty": (16.0, ("soaps", "skincare", "bath_bombs", "perfume", "makeup")),
    "books_movies_music": (18.0, ("books", "vinyl", "sheet_music", "zines", "movies")),
    "electronics_accessories": (24.0, ("phone_cases", "chargers", "stands", "laptop_sleeves", "cables")),
    "paper_party": (8.0, ("greeting_cards", "stationery", "party_decor", "gift_wrap", "calendars")),
    "pet_supplies": (20.0, ("collars", "beds", "toys", "bowls", "clothing")),
    "shoes": (65.0, ("boots", "sandals", "sneakers", "slippers", "heels")),
    "vintage": (38.0, ("clothing", "jewelry", "home", "antiques", "toys")),
    "kitchen_dining": (26.0, ("mugs", "cutting_boards", "linens", "utensils", "bowls")),
    "furniture": (180.0, ("tables", "chairs", "shelves", "beds", "storage")),
    "baby": (24.0, ("nursery", "clothing", "teething", "blankets", "keepsakes")),
    "outdoor_garden": (30.0, ("planters", "garden_decor", "bird_feeders", "seeds", "lighting")),
    "holidays": (15.0, ("christmas", "halloween", "easter", "valentines", "ornaments")),
    "ceramics_pottery": (34.0, ("plates", "planters", "sculptures", "tiles", "teapots")),
    "sports_outdoors": (30.0, ("camping", "fitness", "cycling", "fishing", "team_sports")),
    "digital_downloads": (6.0, ("printables", "templates", "patterns", "fonts", "planners")),
}
CATEGORIES: tuple[str, ...] = tuple(TAXONOMY)
SUBCATEGORIES: tuple[str, ...] = tuple(f"{cat}/{sub}" for cat, (_, subs) in TAXONOMY.items() for sub in subs)
SUBCATEGORY_PARENT = np.array([CATEGORIES.index(name.split("/")[0]) for name in SUBCATEGORIES])

TAGS: tuple[str, ...] = (
    "handmade",
    "vintage",
    "personalized",
    "gift",
    "bestseller",
    "free_shipping",
    "on_sale",
    "eco_friendly",
    "custom",
    "minimalist",
    "boho",
    "rustic",
    "unique",
    "kids",
    "luxury",
    "digital",
)
MAX_TAGS = 4

# Country -> (share of users, price-sensitivity multiplier).
COUNTRIES: dict[str, tuple[float, float]] = {
    "US": (0.50, 1.0),
    "GB": (0.10, 1.0),
    "CA": (0.08, 1.05),
    "DE": (0.08, 1.1),
    "AU": (0.05, 1.0),
    "FR": (0.05, 1.1),
    "NL": (0.03, 1.1),
    "IT": (0.03, 1.2),
    "ES": (0.03, 1.2),
    "JP": (0.02, 0.9),
    "IN": (0.03, 1.5),
}
DEVICES: tuple[str, ...] = ("ios", "android", "web")
DEVICE_SHARES = (0.45, 0.30, 0.25)
# A user's requests come from their preferred device this often, else from any device.
DEVICE_LOYALTY = 0.85


@dataclasses.dataclass
class World:
    """Latent and observable attributes of users, shops and listings (index = entity)."""

    category_embedding: np.ndarray  # (C, d) unit vectors
    category_popularity: np.ndarray  # (C,) sums to 1
    user_taste: np.ndarray  # (U, d) unit vectors
    user_category_taste: np.ndarray  # (U, C) cosine of taste and category embedding
    user_price_sensitivity: np.ndarray  # (U,)
    user_activity: np.ndarray  # (U,) relative request rate, sums to 1
    user_country: np.ndarray  # (U,) index into COUNTRIES
    user_device: np.ndarray  # (U,) preferred device, index into DEVICES
    shop_quality: np.ndarray  # (S,)
    listing_category: np.ndarray  # (L,) sorted ascending
    listing_subcategory: np.ndarray  # (L,) sorted ascending within category
    listing_shop: np.ndarray  # (L,)
    listing_embedding: np.ndarray  # (L, d) unit vectors
    listing_quality: np.ndarray  # (L,)
    listing_base_popularity: np.ndarray  # (L,) exposure weight before any engagement
    log_relative_price: np.ndarray  # (L,) log(price / category median)
    price: np.ndarray  # (L,) USD
    age_at_start_days: np.ndarray  # (L,)
    num_reviews: np.ndarray  # (L,) int64
    rating: np.ndarray  # (L,) 1-5, NaN without reviews
    tag_matrix: np.ndarray  # (L, len(TAGS)) bool
    # Arrow columns the logs take rows from.
    user_ids: pa.Array
    listing_ids: pa.Array
    shop_ids: pa.Array
    tags: pa.Array  # list<string> per listing

    @property
    def n_users(self) -> int:
        return len(self.user_activity)

    @property
    def n_listings(self) -> int:
        return len(self.listing_quality)

    def has_tag(self, tag: str) -> np.ndarray:
        return self.tag_matrix[:, TAGS.index(tag)]


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def _ids(prefix: str, count: int, rng: np.random.Generator | None = None) -> pa.Array:
    """Zero-padded string ids, optionally shuffled so that an id says nothing about the entity."""
    numbers = np.arange(count) if rng is None else rng.permutation(count)
    width = len(str(max(count - 1, 1)))
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def build_world(config: SimulatorConfig, rng: np.random.Generator) -> World:
    """Draw users, shops and listings for a resolved config."""
    n_categories, dim = len(CATEGORIES), config.taste_dim
    category_embedding = _unit(rng.normal(size=(n_categories, dim)))
    # Zipf-like category popularity in a random order.
    category_popularity = 1.0 / (rng.permutation(n_categories) + 3.0)
    category_popularity /= category_popularity.sum()
    users = _build_users(config.n_users, category_embedding, category_popularity, rng)
    shops = _build_shops(config.n_shops, category_popularity, rng)
    listings = _build_listings(config.n_listings, category_embedding, category_popularity, shops, rng)
    return World(category_embedding=category_embedding, category_popularity=category_popularity, **users, **listings)


def _build_users(count: int, category_embedding: np.ndarray, category_popularity: np.ndarray, rng) -> dict:
    n_categories, dim = category_embedding.shape
    # Taste is a mix of 1-3 favourite categories plus personal noise.
    favourites = rng.choice(n_categories, size=(count, 3), p=category_popularity)
    mix = rng.dirichlet(np.ones(3), size=count) * (rng.random((count, 3)) < [1.0, 0.6, 0.3])
    taste = _unit(np.einsum("uk,ukd->ud", mix, category_embedding[favourites]) + 0.35 * rng.normal(size=(count, dim)))
    country_shares = np.array([share for share, _ in COUNTRIES.values()])
    country = rng.choice(len(COUNTRIES), size=count, p=country_shares / country_shares.sum())
    country_sensitivity = np.array([multiplier for _, multiplier in COUNTRIES.values()])
    activity = rng.lognormal(0.0, 1.0, size=count)
    return {
        "user_taste": taste,
        "user_category_taste": taste @ category_embedding.T,
        "user_price_sensitivity": rng.lognormal(0.0, 0.35, size=count) * country_sensitivity[country],
        "user_activity": activity / activity.sum(),
        "user_country": country,
        "user_device": rng.choice(len(DEVICES), size=count, p=DEVICE_SHARES),
        "user_ids": _ids("u", count, rng),
    }


def _build_shops(count: int, category_popularity: np.ndarray, rng) -> dict:
    home = np.sort(rng.choice(len(category_popularity), size=count, p=category_popularity))
    return {"shop_quality": rng.normal(size=count), "shop_home": home, "shop_ids": _ids("s", count, rng)}


def _build_listings(count: int, category_embedding, category_popularity, shops: dict, rng) -> dict:
    shop_home = shops.pop("shop_home")
    category_weight = category_popularity**0.7
    # Every category gets at least one listing, so every category can be searched and recommended.
    drawn = rng.choice(len(CATEGORIES), size=count - len(CATEGORIES), p=category_weight / category_weight.sum())
    category = np.sort(np.concatenate([np.arange(len(CATEGORIES)), drawn]))
    subcategory = _draw_subcategories(category, rng)
    order = np.lexsort((subcategory, category))
    category, subcategory = category[order], subcategory[order]
    shop = _draw_shops(category, shop_home, rng)
    quality = 0.5 * shops["shop_quality"][shop] + np.sqrt(0.75) * rng.normal(size=count)
    dim = category_embedding.shape[1]
    subcategory_embedding = _unit(
        category_embedding[SUBCATEGORY_PARENT] + 0.5 * rng.normal(size=(len(SUBCATEGORIES), dim))
    )
    embedding = _unit(subcategory_embedding[subcategory] + 0.45 * rng.normal(size=(count, dim)))
    subcategory_price_offset = 0.25 * rng.normal(size=len(SUBCATEGORIES))
    log_relative_price = subcategory_price_offset[subcategory] + 0.15 * quality + 0.6 * rng.normal(size=count)
    median_price = np.array([median for median, _ in TAXONOMY.values()])
    price = np.maximum(np.round(median_price[category] * np.exp(log_relative_price), 2), 0.5)
    popularity_noise = rng.normal(size=count)
    age = np.minimum(rng.lognormal(np.log(200.0), 1.0, size=count), 4_000.0) + 1.0
    reviews, rating = _draw_reviews(age, quality, popularity_noise, rng)
    tag_matrix = _draw_tags(category, quality, rng)
    return {
        **shops,
        "listing_category": category,
        "listing_subcategory": subcategory,
        "listing_shop": shop,
        "listing_embedding": embedding,
        "listing_quality": quality,
        "listing_base_popularity": np.exp(0.5 * quality + 0.7 * popularity_noise),
        "log_relative_price": np.log(price / median_price[category]),
        "price": price,
        "age_at_start_days": age,
        "num_reviews": reviews,
        "rating": rating,
        "tag_matrix": tag_matrix,
        "listing_ids": _ids("l", count, rng),
        "tags": _tag_lists(tag_matrix),
    }


def _draw_subcategories(category: np.ndarray, rng) -> np.ndarray:
    """A subcategory of each listing's category, with uneven subcategory sizes."""
    first_child = np.searchsorted(SUBCATEGORY_PARENT, np.arange(len(CATEGORIES)))
    children = np.bincount(SUBCATEGORY_PARENT, minlength=len(CATEGORIES))
    skew = rng.random(len(category)) ** 1.5  # favours the first subcategories
    return first_child[category] + (skew * children[category]).astype(np.int64)


def _draw_shops(category: np.ndarray, shop_home: np.ndarray, rng) -> np.ndarray:
    """Most listings come from a shop of their own category, the rest from any shop."""
    start = np.searchsorted(shop_home, category, side="left")
    end = np.searchsorted(shop_home, category, side="right")
    own = start + (rng.random(len(category)) * (end - start)).astype(np.int64)
    anywhere = rng.integers(0, len(shop_home), size=len(category))
    use_own = (end > start) & (rng.random(len(category)) < 0.85)
    return np.where(use_own, own, anywhere)


def _draw_reviews(age: np.ndarray, quality: np.ndarray, popularity_noise: np.ndarray, rng) -> tuple:
    """Review counts grow with age, quality and popularity; the mean rating is a noisy view of quality."""
    expected = 0.8 * (age / 30.0) ** 0.6 * np.exp(0.6 * quality + 0.4 * popularity_noise)
    reviews = rng.poisson(expected).astype(np.int64)
    noise = rng.normal(0.0, 0.8, size=len(age)) / np.sqrt(np.maximum(reviews, 1))
    rating = np.round(np.clip(4.4 + 0.3 * quality + noise, 1.0, 5.0), 1)
    return reviews, np.where(reviews > 0, rating, np.nan)


def _draw_tags(category: np.ndarray, quality: np.ndarray, rng) -> np.ndarray:
    """Independent tags (bestseller follows quality, vintage/digital follow category), at most MAX_TAGS."""
    probability = np.full((len(category), len(TAGS)), 0.1)
    probability[:, TAGS.index("bestseller")] = 0.02 + 0.3 / (1.0 + np.exp(-2.0 * (quality - 1.0)))
    probability[:, TAGS.index("free_shipping")] = 0.3
    probability[:, TAGS.index("on_sale")] = 0.2
    probability[:, TAGS.index("vintage")] = np.where(category == CATEGORIES.index("vintage"), 0.9, 0.03)
    probability[:, TAGS.index("digital")] = np.where(category == CATEGORIES.index("digital_downloads"), 0.9, 0.0)
    tags = rng.random(probability.shape) < probability
    # Keep a random MAX_TAGS of the drawn tags.
    priority = np.where(tags, rng.random(tags.shape), -1.0)
    keep_rank = np.argsort(np.argsort(-priority, axis=1), axis=1) < MAX_TAGS
    return tags & keep_rank


def _tag_lists(tag_matrix: np.ndarray) -> pa.Array:
    listing, tag = np.nonzero(tag_matrix)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(listing, minlength=len(tag_matrix)))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(TAGS).take(pa.array(tag)))
