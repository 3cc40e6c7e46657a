"""Dataset specs: the shipped ones load, and every kind of mistake is named with the spec file."""

import copy
import re

import numpy as np
import pytest
import yaml

from components.data.expressions import MAX_DEPTH, ExpressionError, LabelExpression
from components.data.spec import (
    SHIPPED_SPECS,
    SPECS_DIR,
    DatasetSpecError,
    file_splits,
    load_dataset_spec,
    parse_dataset_spec,
    spec_with_history,
)


@pytest.fixture
def simulator_yaml() -> dict:
    return yaml.safe_load((SPECS_DIR / "simulator.yaml").read_text())


def test_a_spec_variant_is_written_only_when_history_changes(tmp_path):
    assert spec_with_history({}, tmp_path / "same.yaml") == "simulator"
    assert not (tmp_path / "same.yaml").exists()
    variant = load_dataset_spec(
        spec_with_history({"sequences": [{"task": "click", "column": "category"}]}, tmp_path / "v.yaml")
    )
    assert [sequence.feature for sequence in variant.history.sequences] == ["hist_user_recent_click_category"]
    assert variant.history.entity_keys(variant.columns.user_id) == load_dataset_spec("simulator").history.entity_keys(
        variant.columns.user_id
    )
    declared = {"search": {"layout": "grid"}}
    traits = load_dataset_spec(spec_with_history({}, tmp_path / "t.yaml", module_traits=declared))
    assert traits.module_traits == declared and traits.history == load_dataset_spec("simulator").history


def test_shipped_specs_load_with_their_tasks_in_order():
    assert set(SHIPPED_SPECS) == {"simulator", "ali_ccp", "kuairand", "uci_adult"}
    simulator = load_dataset_spec("simulator")
    assert simulator.task_names == ("click", "favorite", "add_to_cart", "purchase")
    assert simulator.has_groups and simulator.history_enabled
    assert "tags" in simulator.required_columns and "request_id" in simulator.required_columns
    ali_ccp = load_dataset_spec("ali_ccp")
    assert ali_ccp.task_names == ("click", "purchase") and not ali_ccp.has_groups and not ali_ccp.history_enabled
    kuairand = load_dataset_spec(str(SPECS_DIR / "kuairand.yaml"))
    assert kuairand.task_names == ("click", "long_view") and kuairand.split.by == "hash"
    assert {"play_time_ms", "duration_ms"} <= set(kuairand.required_columns)
    adult = load_dataset_spec("uci_adult")
    assert adult.task_names == ("income", "never_married") and len(adult.source.column_names) == 15
    assert {task.name: task.text_columns for task in adult.tasks} == {
        "income": ("income_bracket",),
        "never_married": ("marital_status",),
    }
    assert file_splits(adult, ["d/adult.data", "d/adult.test"]) == {0: "train", 1: "test"}


def test_a_missing_spec_names_the_path_and_the_shipped_names(tmp_path):
    with pytest.raises(DatasetSpecError, match=r"no dataset spec at .*nope\.yaml.*simulator"):
        load_dataset_spec(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(DatasetSpecError, match=r"bad\.yaml: not valid YAML"):
        load_dataset_spec(tmp_path / "bad.yaml")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.update(weather="red"), r"spec: unknown key 'weather' \(known: columns, "),
        (lambda s: s.update(taks=[]), r"spec: unknown key 'taks' \(did you mean 'tasks'\?\)"),
        (lambda s: s["columns"].update(group="x"), r"columns: unknown key 'group'"),
        (lambda s: s["columns"].update(position="timestamp"), r"column 'timestamp' has two roles"),
        (lambda s: s["columns"].update(module="user_id"), r"'user_id' has two roles \(user_id and module\)"),
        (lambda s: s["columns"].pop("user_id"), r"history: user and user_by need columns.user_id"),
        (lambda s: s["source"].update(format="xml"), r"source.format: 'xml' is not one of"),
        (lambda s: s["features"]["numeric"]["price"].update(encoding="binned"), r"price.encoding: 'binned'"),
        (lambda s: s["features"]["numeric"]["price"].update(transform="sqrt"), r"price.transform: 'sqrt'"),
        (lambda s: s["features"]["hashed"].update(shop_id=0), r"hashed.shop_id: bucket count must be a positive"),
        (lambda s: s["features"]["categorical"].append("shop_id"), r"'shop_id' is both categorical and hashed"),
        (lambda s: s["features"]["categorical"].append("device"), r"column 'device' is listed twice"),
        (lambda s: s["features"]["categorical"].append("module_name"), r"'module_name' is a reserved example key"),
        (lambda s: s["features"]["categorical"].append("position"), r"'position' is a reserved example key"),
        (lambda s: s["features"]["numeric"].update(clicked={}), r"'clicked' defines the label of task 'click'"),
        (lambda s: s["tasks"].append({"name": "click", "column": "x"}), r"task 'click' is defined twice"),
        (lambda s: s["tasks"].append({"name": "view", "column": "a", "expression": "b > 1"}), r"exactly one of"),
        (lambda s: s["tasks"].append({"name": "view", "expression": "__import__('os')"}), r"uses Call"),
        (lambda s: s["columns"].pop("timestamp"), r"history: needs columns.timestamp"),
        (lambda s: s["split"].update(by="files"), r"split.files: needs a `train` file pattern"),
        (lambda s: s["split"].update(eval_fraction=0.6, test_fraction=0.5), r"must leave rows for train"),
        (lambda s: s.update(source={"format": "bigquery"}), r"exactly one of `table` or `query`"),
        (lambda s: s["source"].update(duplicates="merge"), r"source.duplicates: 'merge' is not one of drop, keep"),
        (lambda s: s["source"].update(column_names=["a", "b"]), r"source.column_names: only csv files may lack"),
        (lambda s: s["source"].update(format="csv", column_names="a,b"), r"column_names: expected a list of column"),
        (lambda s: s["source"].update(format="csv", column_names=["a", "b", "a"]), r"'a' named more than once"),
        (lambda s: s["source"].update(format="csv", null_values=""), r"source.null_values: expected a list of strings"),
        (lambda s: s["features"]["categorical"].append("category"), r"'category' is listed twice"),
        (lambda s: s["features"].update(hashed={"shop id": 8, "shop_id": 8}), r"'shop id' and 'shop_id' both become"),
        (lambda s: s["source"].update(null_values=[""]), r"source.null_values: only csv cells are read as text"),
        (lambda s: s["history"].update(sequences=[{"task": "like", "column": "listing_id"}]), r"task 'like' is not"),
        (lambda s: s["history"].update(sequences=[{"task": "click", "column": "price"}]), r"'price' is not the item"),
        (lambda s: s["history"].update(sequences=[{"task": "click"}]), r"sequences\[0\]: needs `task` and `column`"),
        (lambda s: s["history"].update(sequences=[{"task": "click", "column": "shop_id", "length": 0}]), r"at least 1"),
        (lambda s: s["history"].update(sequences=[{"task": "click", "column": "shop_id", "size": 3}]), r"unknown key"),
        (lambda s: s.update(module_traits=["search"]), r"module_traits: expected a mapping of module to its"),
        (lambda s: s.update(module_traits={"search": "list"}), r"module_traits.search: expected a mapping of trait"),
        (lambda s: s.update(module_traits={"search": {"tags": ["a"]}}), r"module_traits.search.tags: a trait value"),
        (lambda s: s.update(module_traits={"search": {"channel": None}}), r"module_traits.search.channel: a trait"),
        (
            lambda s: s["history"].update(
                user=False, user_features=[], sequences=[{"task": "click", "column": "shop_id"}]
            ),
            r"history.sequences: needs the user's history",
        ),
    ],
)
def test_every_spec_mistake_is_named_with_the_spec_file(simulator_yaml, edit, message):
    spec = copy.deepcopy(simulator_yaml)
    edit(spec)
    with pytest.raises(DatasetSpecError, match=message) as error:
        parse_dataset_spec(spec, origin="specs/mine.yaml")
    assert str(error.value).startswith("specs/mine.yaml: invalid dataset spec")


def test_module_traits_are_kept_as_strings_and_reach_the_feature_spec(simulator_yaml):
    simulator_yaml["module_traits"] = {"search": {"layout": "list", "has_query": True, "columns": 4}, 7: {"x": 1.5}}
    spec = parse_dataset_spec(simulator_yaml)
    expected = {"search": {"layout": "list", "has_query": "true", "columns": "4"}, "7": {"x": "1.5"}}
    assert spec.module_traits == expected and spec.outline().module_traits == expected
    assert load_dataset_spec("simulator").outline().module_traits == {}


def test_all_problems_are_reported_at_once(simulator_yaml):
    simulator_yaml["colour"] = "red"
    simulator_yaml["source"]["format"] = "xml"
    with pytest.raises(DatasetSpecError) as error:
        parse_dataset_spec(simulator_yaml)
    assert "colour" in str(error.value) and "xml" in str(error.value)


def test_a_minimal_spec_without_groups_modules_or_time():
    spec = parse_dataset_spec(
        {
            "name": "minimal",
            "source": {"format": "csv"},
            "columns": {"user_id": "u", "item_id": "i"},
            "tasks": [{"name": "click", "column": "y"}],
            "features": {"categorical": ["c"]},
            "split": {"by": "hash"},
        }
    )
    assert not spec.has_groups and not spec.history_enabled
    assert spec.required_columns == ("u", "i", "y", "c")
    assert spec.role_names() == {"user_id": "u", "item_id": "i"}


def test_csv_files_without_a_header_take_their_column_names_from_the_spec():
    source = {"format": "csv", "delimiter": "\t", "column_names": ["label", "i1", 3]}
    spec = parse_dataset_spec({"name": "criteo", "source": source, "tasks": [{"name": "click", "column": "label"}]})
    assert spec.source.column_names == ("label", "i1", "3") and spec.source.delimiter == "\t"
    assert parse_dataset_spec({"name": "t", "tasks": [{"name": "c", "column": "y"}]}).source.column_names == ()


def test_tabular_data_needs_no_role_and_splits_by_hash_without_time():
    spec = parse_dataset_spec({"name": "tabular", "tasks": [{"name": "click", "column": "y"}], "features": {}})
    assert spec.role_names() == {} and spec.required_columns == ("y",) and spec.split.by == "hash"
    outline = spec.outline()
    assert (outline.task_names, outline.has_groups, outline.dataset) == (("click",), False, "tabular")
    timed = parse_dataset_spec(
        {"name": "timed", "columns": {"timestamp": "t"}, "tasks": [{"name": "c", "column": "y"}]}
    )
    assert timed.split.by == "time"


def test_one_column_can_hold_several_id_roles_and_be_a_feature():
    spec = parse_dataset_spec(
        {
            "name": "sessions",
            "columns": {"request_id": "session", "user_id": "session", "item_id": "item"},
            "tasks": [{"name": "click", "column": "y"}],
            "features": {"categorical": ["item"]},
        }
    )
    assert spec.role_names() == {"user_id": "session", "item_id": "item", "request_id": "session"}
    assert spec.has_groups and spec.required_columns == ("session", "item", "y")


def test_file_splits_match_patterns_and_name_unmatched_files():
    spec = load_dataset_spec("ali_ccp")
    assert file_splits(spec, ["d/a_train.csv", "d/a_val.csv", "d/a_test.csv"]) == {0: "train", 1: "eval", 2: "test"}
    with pytest.raises(ValueError, match=r"d/other\.csv matches no split.files pattern"):
        file_splits(spec, ["d/other.csv"])
    with pytest.raises(ValueError, match=r"d/a_train_val\.csv matches the patterns of train and eval \(train: "):
        file_splits(spec, ["d/a_train_val.csv", "d/a_test.csv"])  # it would go to train silently
    with pytest.raises(ValueError, match=r"split.files.test: '\*test\*' matches none of the files \(a_train.csv, "):
        file_splits(spec, ["d/a_train.csv", "d/a_val.csv"])  # an empty test split: evaluation would fail at the end
    assert file_splits(load_dataset_spec("simulator"), ["x.parquet"]) == {}


def test_label_expressions_are_vectorized_and_safe():
    rule = LabelExpression("play_time_ms >= 0.5 * duration_ms and not (duration_ms == 0)")
    assert rule.columns == ("duration_ms", "play_time_ms")
    values = rule.evaluate({"play_time_ms": np.array([5.0, 4.0, 1.0]), "duration_ms": np.array([10.0, 10.0, 0.0])})
    assert values.tolist() == [True, False, False]
    assert LabelExpression("1 < x < 3").evaluate({"x": np.array([0, 2, 3])}).tolist() == [False, True, False]
    for text in ("x.__class__", "open('f')", "x if y else z", "'a' == x", "x +"):
        with pytest.raises(ExpressionError):
            LabelExpression(text)


def test_a_label_expression_compares_a_text_column_with_text_and_nothing_else():
    rule = LabelExpression("event not in ('view', 'click') and dwell >= 2 or kind != 'bot'")
    assert (rule.columns, rule.text_columns) == (("dwell", "event", "kind"), ("event", "kind"))
    columns = {"event": np.array(["cart", " view", "cart"], object), "dwell": np.array([3.0, 9.0, 1.0])}
    columns["kind"] = np.array(["bot", "bot", "human"], object)
    assert rule.evaluate(columns).tolist() == [True, False, True]
    for text, message in [
        ("x < 'a'", "text is compared as column == 'a'"),
        ("x == 'a' == y", "text is compared as column == 'a'"),
        ("x == ('a', 'b')", "text is compared as column == 'a'"),
        ("x in ('a', 1)", "uses Compare"),
        ("x + 'a'", "uses Constant"),
        ("x == 'a' and x > 1", "uses x both as text and as a number"),
    ]:
        with pytest.raises(ExpressionError, match=re.escape(message)):
            LabelExpression(text)


def test_history_entity_names_must_not_collide(simulator_yaml):
    simulator_yaml["history"]["entities"].append("user")  # a column named "user" would shadow the user's history
    with pytest.raises(DatasetSpecError, match=r"two entities are named 'user'"):
        parse_dataset_spec(simulator_yaml)


def test_a_huge_label_expression_names_the_task_and_the_limit_instead_of_overflowing(simulator_yaml):
    simulator_yaml["tasks"].append({"name": "busy", "expression": " + ".join(["a"] * 50_000) + " > 0"})
    with pytest.raises(DatasetSpecError) as error:
        parse_dataset_spec(simulator_yaml, origin="specs/mine.yaml")
    message = str(error.value)
    assert "tasks[4] (busy): expression 'a + a + a" in message and f"the limit is {MAX_DEPTH} levels" in message
    assert len(message) < 500  # the expression is cut short, not printed whole
    with pytest.raises(ExpressionError, match=f"nests {MAX_DEPTH + 1} levels deep"):
        LabelExpression(" + ".join(["a"] * (MAX_DEPTH + 1)))
    with pytest.raises(ExpressionError, match="nests too deeply to parse"):
        LabelExpression("not " * 50_000 + "a")
    assert LabelExpression(" + ".join(["a"] * MAX_DEPTH)).columns == ("a",)
    flat = LabelExpression(" or ".join(f"x == {value}" for value in range(5_000)))  # long but shallow: fine
    assert flat.evaluate({"x": np.array([3.0, -1.0])}).tolist() == [True, False]


def test_sequences_are_list_features_of_the_users_history(simulator_yaml):
    simulator_yaml["history"]["sequences"] = [
        {"task": "favorite", "column": "listing_id", "length": 5},
        {"task": "click", "column": "category", "max_size": 50},
    ]
    spec = parse_dataset_spec(simulator_yaml)
    assert [sequence.feature for sequence in spec.history.sequences] == [
        "hist_user_recent_favorite_listing_id",
        "hist_user_recent_click_category",
    ]
    assert spec.history.sequences[0].length == 5 and spec.history.sequences[1].max_size == 50
    simulator_yaml["history"]["sequences"] = [{"task": "click", "column": "listing_id"}] * 2
    with pytest.raises(DatasetSpecError, match=r"two sequences are 'hist_user_recent_click_listing_id'"):
        parse_dataset_spec(simulator_yaml)
