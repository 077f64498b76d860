"""Tests for populace.simulator.population: distributions, ordering, files and OASIS formats."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pydantic
import pytest
import yaml

from populace.simulator.population import (
    PopulationConfig,
    PopulationFileError,
    build_population,
    resolve_order,
)

DATA = Path(__file__).parent / "data" / "population"
EXAMPLES = Path(__file__).resolve().parents[1] / "scenarios" / "social" / "examples" / "data"
N = 200_000


def cfg(**section: object) -> PopulationConfig:
    return PopulationConfig.model_validate(section)


def build(section: dict, seed: int = 0, base_dir: Path = DATA):
    return build_population(cfg(**section), np.random.default_rng(seed), base_dir)


def draw(spec: dict, n: int = N, seed: int = 0) -> pd.Series:
    return build({"size": n, "attributes": {"x": spec}}, seed).attributes["x"]


ALL_KINDS = {
    "size": 5_000,
    "attributes": {
        "occupation": {"dist": "categorical", "values": {"student": 2, "engineer": 1}},
        "age": {"dist": "truncnormal", "mean": 40, "sd": 15, "low": 18, "high": 90},
        "height": {"dist": "normal", "mean": 170, "sd": 10, "round": 1},
        "wealth": {"dist": "lognormal", "mean": 10, "sigma": 1},
        "trust": {"dist": "uniform", "low": 0, "high": 1},
        "followers": {"dist": "integer", "low": 0, "high": 1000},
        "lang": {"dist": "constant", "value": "en"},
        "opinion": {"dist": "beta", "a": 2, "b": 5, "low": -1, "high": 1},
        "income": {
            "dist": "conditional",
            "by": "occupation",
            "cases": {"student": {"dist": "normal", "mean": 1, "sd": 1}},
            "default": {"dist": "normal", "mean": 5, "sd": 1},
        },
    },
}


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_identical_frame_and_different_seed_differs() -> None:
    a = build(ALL_KINDS, seed=11).attributes
    b = build(ALL_KINDS, seed=11).attributes
    c = build(ALL_KINDS, seed=12).attributes
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == list(ALL_KINDS["attributes"])
    assert isinstance(a.index, pd.RangeIndex) and a.index[-1] == 4_999
    for column in ("occupation", "age", "height", "wealth", "trust", "followers", "opinion"):
        assert not a[column].equals(c[column]), column
    assert (a["lang"] == "en").all()


def test_attribute_values_do_not_depend_on_other_attributes_or_their_order() -> None:
    base = build(ALL_KINDS, seed=3).attributes
    reordered = dict(reversed(list(ALL_KINDS["attributes"].items())))
    reordered["extra"] = {"dist": "uniform", "low": 0, "high": 2}
    other = build({"size": 5_000, "attributes": reordered}, seed=3).attributes
    pd.testing.assert_frame_equal(base, other[base.columns])


# ---------------------------------------------------------------- distributions


def test_normal_lognormal_uniform_beta_moments() -> None:
    x = draw({"dist": "normal", "mean": 3.0, "sd": 2.0})
    assert x.mean() == pytest.approx(3.0, abs=0.02)
    assert x.std() == pytest.approx(2.0, rel=0.01)

    y = draw({"dist": "lognormal", "mean": 1.0, "sigma": 0.5})
    assert (y > 0).all()
    assert np.log(y).mean() == pytest.approx(1.0, abs=0.01)
    assert np.log(y).std() == pytest.approx(0.5, rel=0.01)

    u = draw({"dist": "uniform", "low": -2, "high": 4})
    assert u.min() >= -2 and u.max() < 4
    assert u.mean() == pytest.approx(1.0, abs=0.02)
    assert u.var() == pytest.approx(36 / 12, rel=0.02)

    b = draw({"dist": "beta", "a": 2, "b": 6, "low": -1, "high": 1})
    assert b.min() >= -1 and b.max() <= 1
    assert b.mean() == pytest.approx(-1 + 2 * 2 / 8, abs=0.005)


def test_integer_is_inclusive_int64() -> None:
    x = draw({"dist": "integer", "low": 1, "high": 6})
    assert x.dtype == np.int64
    assert set(x.unique()) == {1, 2, 3, 4, 5, 6}
    assert x.mean() == pytest.approx(3.5, abs=0.02)


def _truncnormal_mean(mu: float, sd: float, low: float, high: float) -> float:
    a, b = (low - mu) / sd, (high - mu) / sd
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda z: 0.5 * math.erfc(-z / math.sqrt(2))  # noqa: E731
    return mu + sd * (pdf(a) - pdf(b)) / (cdf(b) - cdf(a))


@pytest.mark.parametrize(
    ("mu", "sd", "low", "high"),
    [
        (40, 15, 18, 90),  # wide, around the mode: plain normal proposal
        (0, 1, -0.5, 0.5),  # narrow, around the mode: uniform proposal
        (0, 1, 3.0, 4.0),  # right tail
        (0, 1, 6.0, 100.0),  # far right tail: exponential proposal
        (0, 1, -5.5, -5.0),  # far left tail, narrow
        (0.5, 0.2, 0.0, 1.0),  # opinion-style
    ],
)
def test_truncnormal_stays_in_bounds_and_has_right_mean(
    mu: float, sd: float, low: float, high: float
) -> None:
    x = draw({"dist": "truncnormal", "mean": mu, "sd": sd, "low": low, "high": high}).to_numpy()
    assert x.size == N
    assert x.min() >= low and x.max() <= high
    expected = _truncnormal_mean(mu, sd, low, high)
    assert x.mean() == pytest.approx(expected, abs=0.01 * sd)


def test_truncnormal_one_sided_and_rounding_keeps_bounds() -> None:
    x = draw({"dist": "truncnormal", "mean": 30, "sd": 20, "low": 18.3, "round": 0})
    assert x.min() >= 18.3
    assert (x == np.round(x)).all() or x.min() == 18.3


def test_categorical_frequencies_and_types() -> None:
    x = draw({"dist": "categorical", "values": {"a": 1, "b": 3, "c": 0}})
    freq = x.value_counts(normalize=True)
    assert freq["a"] == pytest.approx(0.25, abs=0.005)
    assert freq["b"] == pytest.approx(0.75, abs=0.005)
    assert "c" not in freq.index

    y = draw({"dist": "categorical", "values": [1, 2, 3], "weights": [0.2, 0.3, 0.5]})
    assert y.dtype == np.int64
    assert y.value_counts(normalize=True)[3] == pytest.approx(0.5, abs=0.005)

    z = draw({"dist": "categorical", "values": [True, False]})
    assert z.dtype == bool
    assert z.mean() == pytest.approx(0.5, abs=0.005)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"dist": "normal", "mean": 0, "sd": 0}, "greater than 0"),
        ({"dist": "truncnormal", "mean": 0, "sd": 1, "low": 2, "high": 1}, "low must be < high"),
        ({"dist": "uniform", "low": 1, "high": 1}, "low must be < high"),
        ({"dist": "integer", "low": 5, "high": 1}, "low must be <= high"),
        ({"dist": "categorical", "values": ["a", "b"], "weights": [1]}, "one weight per value"),
        ({"dist": "categorical", "values": {"a": -1, "b": 2}}, "non-negative"),
        ({"dist": "categorical", "values": {"a": 0}}, "at least one weight must be positive"),
        ({"dist": "beta", "a": 0, "b": 1}, "greater than 0"),
        ({"dist": "normal", "mean": 0, "sd": 1, "sigma": 2}, "Extra inputs are not permitted"),
        ({"dist": "gaussian", "mean": 0}, "'categorical', 'normal'"),
    ],
)
def test_invalid_specs_are_rejected_with_clear_messages(spec: dict, needle: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        cfg(size=10, attributes={"x": spec})
    assert needle in str(info.value)


def test_size_is_required_without_a_file() -> None:
    with pytest.raises(pydantic.ValidationError, match="population.size is required"):
        cfg(attributes={"x": {"dist": "constant", "value": 1}})
    with pytest.raises(pydantic.ValidationError):
        cfg(size=0)


# ---------------------------------------------------------------- conditional and order

INCOME_BY_OCCUPATION = {
    "income": {
        "dist": "conditional",
        "by": "occupation",
        "cases": {
            "student": {"dist": "normal", "mean": 10_000, "sd": 1_000},
            "engineer": {"dist": "normal", "mean": 80_000, "sd": 5_000},
        },
        "default": {"dist": "constant", "value": 30_000},
    },
    "occupation": {
        "dist": "categorical",
        "values": {"student": 0.5, "engineer": 0.3, "retired": 0.2},
    },
}


def test_conditional_income_by_occupation_group_means() -> None:
    pop = build({"size": N, "attributes": INCOME_BY_OCCUPATION})
    frame = pop.attributes
    assert list(frame.columns) == ["income", "occupation"]  # declaration order kept
    means = frame.groupby("occupation")["income"].mean()
    assert means["student"] == pytest.approx(10_000, rel=0.01)
    assert means["engineer"] == pytest.approx(80_000, rel=0.01)
    assert (frame.loc[frame.occupation == "retired", "income"] == 30_000).all()
    assert frame.loc[frame.occupation == "student", "income"].std() == pytest.approx(
        1_000, rel=0.03
    )


def test_conditional_branches_support_and_possible_values() -> None:
    from populace.simulator.population.distributions import (
        ConditionalDist,
        possible_values,
        support,
    )

    attrs = cfg(size=10, attributes={
        **INCOME_BY_OCCUPATION,
        "tier": {"dist": "conditional", "by": "occupation", "cases": {
            "student": {"dist": "integer", "low": 1, "high": 2},
            "engineer": {"dist": "constant", "value": 5},
            "retired": {"dist": "constant", "value": 1}}},
        "bounded": {"dist": "conditional", "by": "occupation", "cases": {
            "student": {"dist": "truncnormal", "mean": 0, "sd": 1, "low": -2, "high": 2}},
            "default": {"dist": "constant", "value": 7}},
    }).attributes
    income, tier, bounded = attrs["income"], attrs["tier"], attrs["bounded"]
    assert isinstance(income, ConditionalDist) and isinstance(tier, ConditionalDist)
    assert [b.dist if b else None for b in income.branches()] == ["normal", "normal", "constant"]
    assert tier.branches()[-1] is None  # no default: every case is given
    assert support(income) == (-math.inf, math.inf) and support(bounded) == (-2.0, 7.0)
    assert possible_values(tier) == [1, 2, 5] and possible_values(income) is None


def test_conditional_keys_from_yaml_match_bools_and_ints() -> None:
    section = yaml.safe_load(
        """
        size: 20000
        attributes:
          verified: {dist: categorical, values: [true, false]}
          tier: {dist: integer, low: 1, high: 2}
          reach:
            dist: conditional
            by: verified
            cases:
              true: {dist: constant, value: 100}
              "false": {dist: constant, value: 1}
          badge:
            dist: conditional
            by: tier
            cases: {"1": {dist: constant, value: bronze}, 2: {dist: constant, value: gold}}
        """
    )
    frame = build(section).attributes
    assert (frame.loc[frame.verified, "reach"] == 100).all()
    assert (frame.loc[~frame.verified, "reach"] == 1).all()
    assert set(frame.loc[frame.tier == 2, "badge"]) == {"gold"}
    assert set(frame.loc[frame.tier == 1, "badge"]) == {"bronze"}


def test_conditional_without_default_names_unmatched_value() -> None:
    attrs = {
        "occupation": {"dist": "categorical", "values": ["student", "pilot"]},
        "income": {
            "dist": "conditional",
            "by": "occupation",
            "cases": {"student": {"dist": "constant", "value": 1}},
        },
    }
    # The parent's values are known from its spec: refused when the config is validated.
    with pytest.raises(ValueError, match=r"attribute 'income' has no case for 'pilot' of "
                       r"'occupation' and no 'default'"):
        build({"size": 100, "attributes": attrs})


def test_conditional_cases_cannot_be_conditional() -> None:
    nested = {"dist": "conditional", "by": "a", "cases": {"x": {"dist": "constant", "value": 1}}}
    with pytest.raises(pydantic.ValidationError):
        cfg(
            size=5,
            attributes={
                "a": {"dist": "constant", "value": "x"},
                "b": {"dist": "conditional", "by": "a", "cases": {"x": nested}},
            },
        )


def test_resolve_order_puts_parents_first_and_keeps_declaration_ties() -> None:
    attrs = cfg(
        size=1,
        attributes={
            "c": {
                "dist": "conditional",
                "by": "b",
                "cases": {},
                "default": {"dist": "constant", "value": 0},
            },
            "z": {"dist": "constant", "value": 1},
            "b": {
                "dist": "conditional",
                "by": "a",
                "cases": {},
                "default": {"dist": "constant", "value": 0},
            },
            "a": {"dist": "constant", "value": 2},
        },
    ).attributes
    assert resolve_order(attrs) == ["z", "a", "b", "c"]


def test_unknown_parent_and_cycle_errors() -> None:
    with pytest.raises(ValueError) as info:
        cfg(
            size=3,
            attributes={
                "age": {"dist": "integer", "low": 1, "high": 2},
                "occupation": {"dist": "constant", "value": "x"},
                "income": {
                    "dist": "conditional",
                    "by": "occupaton",
                    "cases": {"x": {"dist": "constant", "value": 1}},
                },
            },
        )
    assert (
        "attribute 'income' is conditioned on 'occupaton', which is not defined; "
        "known: age, income, occupation" in str(info.value)
    )

    default = {"dist": "constant", "value": 0}
    with pytest.raises(ValueError, match="dependency cycle: a -> b -> a"):
        cfg(
            size=3,
            attributes={
                "a": {"dist": "conditional", "by": "b", "cases": {}, "default": default},
                "b": {"dist": "conditional", "by": "a", "cases": {}, "default": default},
            },
        )


# ---------------------------------------------------------------- files

MAPPING = {"user_name": "username", "years": "age"}


def test_csv_with_mapping_and_generated_attribute_for_all_rows() -> None:
    pop = build(
        {
            "file": {"path": "users.csv", "mapping": MAPPING},
            "attributes": {"opinion": {"dist": "uniform", "low": -1, "high": 1}},
        }
    )
    frame = pop.attributes
    assert pop.size == 4
    assert list(frame.columns) == ["username", "age", "occupation", "city", "opinion"]
    assert frame["username"].tolist() == ["alice", "bob", "carla", "dan"]
    assert frame["age"].tolist() == [34, 27, 45, 61]
    assert frame["opinion"].between(-1, 1).all() and frame["opinion"].notna().all()
    assert pop.follow_edges is None and pop.seed_posts is None


def test_json_and_parquet_files(tmp_path: Path) -> None:
    pop = build({"file": {"path": "users.json", "mapping": MAPPING}})
    assert pop.attributes["username"].tolist() == ["erin", "farid", "gwen"]
    assert pop.attributes["age"].tolist() == [22, 39, 50]

    pd.read_csv(DATA / "users.csv").to_parquet(tmp_path / "users.parquet")
    pop = build({"file": {"path": "users.parquet", "mapping": MAPPING}}, base_dir=tmp_path)
    assert pop.attributes["city"].tolist() == ["Lyon", "Porto", "Ghent", "Graz"]


def test_file_first_generated_rest() -> None:
    pop = build(
        {
            "size": 10,
            "file": {"path": "users.csv", "mapping": MAPPING},
            "attributes": {
                "age": {"dist": "integer", "low": 18, "high": 99},
                "occupation": {
                    "dist": "categorical",
                    "values": ["student", "engineer", "teacher", "retired"],
                },
                "income": {
                    "dist": "conditional",
                    "by": "occupation",
                    "cases": {"student": {"dist": "constant", "value": 1.0}},
                    "default": {"dist": "constant", "value": 2.0},
                },
            },
        }
    )
    f = pop.attributes
    assert pop.size == 10
    assert f["age"].dtype == np.int64
    assert f["age"].iloc[:4].tolist() == [34, 27, 45, 61]  # file values kept
    assert f["age"].iloc[4:].between(18, 99).all()  # generated for the rest
    assert f["occupation"].iloc[:4].tolist() == ["engineer", "student", "teacher", "retired"]
    assert f["occupation"].notna().all()
    # Declared but absent from the file: generated for every agent, file rows included.
    assert f["income"].iloc[:4].tolist() == [2.0, 1.0, 2.0, 2.0]
    # Undeclared file columns are missing for generated agents.
    assert f["city"].iloc[:4].notna().all() and f["city"].iloc[4:].isna().all()


def test_empty_cells_in_declared_columns_are_generated(tmp_path: Path) -> None:
    (tmp_path / "u.csv").write_text("name,age\na,30\nb,\nc,41\n")
    frame = build(
        {"file": "u.csv", "attributes": {"age": {"dist": "integer", "low": 20, "high": 50}}},
        base_dir=tmp_path,
    ).attributes
    assert frame["age"].dtype == np.int64
    assert frame["age"].iloc[[0, 2]].tolist() == [30, 41]
    assert 20 <= frame["age"].iloc[1] <= 50
    # File values outside the declared range are reported, not silently accepted.
    with pytest.raises(
        PopulationFileError, match="data row 1.*expected an integer in \\[70, 80\\]"
    ):
        build(
            {"file": "u.csv", "attributes": {"age": {"dist": "integer", "low": 70, "high": 80}}},
            base_dir=tmp_path,
        )


def test_large_integer_ids_survive_padding(tmp_path: Path) -> None:
    (tmp_path / "u.csv").write_text("user_id\n1234567890123456789\n")
    frame = build({"size": 3, "file": "u.csv"}, base_dir=tmp_path).attributes
    assert frame["user_id"].iloc[0] == 1234567890123456789
    assert frame["user_id"].isna().tolist() == [False, True, True]


def test_size_smaller_than_file_is_an_error() -> None:
    with pytest.raises(PopulationFileError, match="population.size is 2 but the file has 4"):
        build({"size": 2, "file": {"path": "users.csv"}})


def test_missing_required_columns_lists_missing_and_available() -> None:
    with pytest.raises(PopulationFileError) as info:
        build({"file": {"path": "users.csv", "columns": ["user_name", "email", "gender"]}})
    msg = str(info.value)
    assert "missing required column(s) email, gender" in msg
    assert "available: city, occupation, user_name, years" in msg
    # Required columns may be named by their mapped attribute name too.
    build({"file": {"path": "users.csv", "mapping": MAPPING, "columns": ["age", "user_name"]}})


def test_bad_value_in_declared_column_names_file_row_and_column(tmp_path: Path) -> None:
    (tmp_path / "u.csv").write_text("user_name,years\na,30\nb,31\nc,thirty\n")
    with pytest.raises(PopulationFileError) as info:
        build(
            {
                "file": {"path": "u.csv", "mapping": {"years": "age"}},
                "attributes": {"age": {"dist": "integer", "low": 0, "high": 120}},
            },
            base_dir=tmp_path,
        )
    msg = str(info.value)
    assert str(tmp_path / "u.csv") in msg
    assert "data row 3" in msg and "column 'years'" in msg and "'thirty'" in msg
    assert info.value.row == "data row 3" and info.value.column == "years"

    (tmp_path / "c.json").write_text(json.dumps([{"g": "f"}, {"g": "m"}, {"g": "q"}]))
    with pytest.raises(PopulationFileError, match=r"entry \[2\].*column 'g'.*one of 'f', 'm'"):
        build(
            {"file": "c.json", "attributes": {"g": {"dist": "categorical", "values": ["f", "m"]}}},
            base_dir=tmp_path,
        )


def test_empty_value_in_required_column(tmp_path: Path) -> None:
    (tmp_path / "u.csv").write_text("name,bio\na,x\n,y\n")
    with pytest.raises(PopulationFileError, match="data row 2, column 'name': empty value"):
        build({"file": {"path": "u.csv", "columns": ["name"]}}, base_dir=tmp_path)


def test_missing_file_message(tmp_path: Path) -> None:
    with pytest.raises(PopulationFileError) as info:
        build({"file": {"path": "nope/users.csv"}}, base_dir=tmp_path)
    msg = str(info.value)
    assert str((tmp_path / "nope" / "users.csv").resolve()) in msg
    assert "check population.file.path" in msg


def test_garbled_files(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text('a,b\n1,2\n3,4,5,6\n"unterminated\n')
    with pytest.raises(
        PopulationFileError, match=r"malformed CSV.*data row 2|data row 2.*malformed"
    ):
        build({"file": "bad.csv"}, base_dir=tmp_path)

    (tmp_path / "bin.csv").write_bytes(b"a,b\n\xff\xfe\x00\x81,2\n")
    with pytest.raises(PopulationFileError, match="not UTF-8"):
        build({"file": "bin.csv"}, base_dir=tmp_path)

    (tmp_path / "obj.json").write_text('{"users": []}')
    with pytest.raises(PopulationFileError, match="expected a JSON list of objects"):
        build({"file": "obj.json"}, base_dir=tmp_path)

    (tmp_path / "mixed.json").write_text('[{"a": 1}, 5]')
    with pytest.raises(PopulationFileError, match=r"entry \[1\]"):
        build({"file": "mixed.json"}, base_dir=tmp_path)

    (tmp_path / "broken.json").write_text('[{"a": 1},')
    with pytest.raises(PopulationFileError, match="invalid JSON at line 1"):
        build({"file": "broken.json"}, base_dir=tmp_path)

    (tmp_path / "fake.parquet").write_text("not parquet")
    with pytest.raises(PopulationFileError, match="cannot read as Parquet"):
        build({"file": "fake.parquet"}, base_dir=tmp_path)

    (tmp_path / "users.txt").write_text("a\n1\n")
    with pytest.raises(PopulationFileError, match="set population.file.format"):
        build({"file": "users.txt"}, base_dir=tmp_path)


def test_mapping_of_unknown_column_is_reported() -> None:
    with pytest.raises(PopulationFileError, match="mapping names column.*email; available"):
        build({"file": {"path": "users.csv", "mapping": {"email": "mail"}}})


def test_conditional_on_file_only_column_explains_generated_rows() -> None:
    section = {
        "size": 6,
        "file": {"path": "users.csv"},
        "attributes": {
            "income": {
                "dist": "conditional",
                "by": "occupation",
                "cases": {
                    k: {"dist": "constant", "value": 1}
                    for k in ("student", "engineer", "teacher", "retired")
                },
            }
        },
    }
    with pytest.raises(ValueError, match="agents 4..5 are generated and have no 'occupation'"):
        build(section)
    section["size"] = 4
    assert build(section).attributes["income"].tolist() == [1, 1, 1, 1]


# ---------------------------------------------------------------- OASIS


def test_oasis_twitter_users_edges_posts_and_attributes() -> None:
    pop = build(
        {
            "size": 10,
            "file": {"path": "oasis_twitter_users.csv", "format": "oasis_twitter"},
            "attributes": {"opinion": {"dist": "beta", "a": 2, "b": 2}},
        }
    )
    f = pop.attributes
    assert pop.size == 10
    for column in (
        "user_id",
        "name",
        "username",
        "bio",
        "persona",
        "followers_count",
        "created_at",
        "opinion",
    ):
        assert column in f.columns, column
    for gone in ("description", "user_char", "following_agentid_list", "previous_tweets"):
        assert gone not in f.columns
    assert f.loc[0, "username"] == "maraquill"
    assert f.loc[0, "bio"] == "Physio. Runner. Bike lanes enthusiast."
    assert f.loc[3, "persona"].startswith("Sam is a 23-year-old")
    assert f.loc[7, "user_id"] == 1482008
    assert f["username"].iloc[8:].isna().all()

    src, dst = pop.follow_edges
    assert src.dtype == np.int64 and dst.dtype == np.int64
    edges = set(zip(src.tolist(), dst.tolist(), strict=True))
    assert len(edges) == src.size == 18
    assert {(0, 1), (0, 2), (0, 5), (3, 2), (7, 6), (7, 0), (7, 2)} <= edges
    assert not any(s == 4 for s, _ in edges)  # "[]" -> follows nobody

    posts = pop.seed_posts
    assert list(posts.columns) == ["author_id", "content"]
    assert posts["author_id"].dtype == np.int64
    assert len(posts) == 12
    assert posts.groupby("author_id").size().to_dict() == {0: 2, 1: 1, 2: 3, 4: 1, 5: 2, 6: 1, 7: 2}
    assert posts.iloc[0]["content"] == "Morning run done, 8k along the canal. Coffee next."


def test_oasis_twitter_drops_bad_follows_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "t.csv").write_text(
        "user_id,name,username,description,user_char,following_agentid_list,previous_tweets\n"
        '1,A,a,d,c,"[1, 2, 9, 0, 1]",[]\n'
        '2,B,b,d,c,"[0, -1]","[\'hi\']"\n'
        "3,C,c,d,c,[],\n"
    )
    with caplog.at_level(logging.WARNING, logger="populace.simulator.population.oasis"):
        pop = build({"file": {"path": "t.csv", "format": "oasis_twitter"}}, base_dir=tmp_path)
    src, dst = pop.follow_edges
    assert list(zip(src.tolist(), dst.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 0)]
    assert "2 follow(s) of agent ids outside 0..2, 1 self-follow(s), 1 repeated" in caplog.text
    assert pop.seed_posts.to_dict("list") == {"author_id": [1], "content": ["hi"]}


def test_oasis_twitter_malformed_list_literal_names_row(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(
        "user_id,name,username,description,user_char,following_agentid_list,previous_tweets\n"
        "1,A,a,d,c,[1],[]\n"
        '2,B,b,d,c,"[0, 1",[]\n'
    )
    with pytest.raises(PopulationFileError) as info:
        build({"file": {"path": "t.csv", "format": "oasis_twitter"}}, base_dir=tmp_path)
    msg = str(info.value)
    assert "data row 2" in msg and "column 'following_agentid_list'" in msg
    assert "malformed list literal '[0, 1'" in msg


def test_oasis_twitter_missing_columns(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("name,username\nA,a\n")
    with pytest.raises(PopulationFileError, match="missing column.*description, user_char"):
        build({"file": {"path": "t.csv", "format": "oasis_twitter"}}, base_dir=tmp_path)


def test_oasis_reddit_users() -> None:
    pop = build({"file": {"path": "oasis_reddit_users.json", "format": "oasis_reddit"}})
    f = pop.attributes
    assert pop.size == 8
    assert list(f.columns) == [
        "name",
        "username",
        "bio",
        "persona",
        "age",
        "gender",
        "mbti",
        "country",
    ]
    assert f["age"].dtype == np.int64
    assert f.loc[0, "name"] == "Nadia Petrova" and f.loc[0, "age"] == 37
    assert pop.follow_edges is None and pop.seed_posts is None

    pop = build(
        {
            "file": {
                "path": "oasis_reddit_users.json",
                "format": "oasis_reddit",
                "mapping": {"persona": "profile"},
            },
            "attributes": {"age": {"dist": "integer", "low": 18, "high": 99}},
        }
    )
    assert "profile" in pop.attributes.columns and "persona" not in pop.attributes.columns


def test_oasis_reddit_missing_keys_and_bad_age(tmp_path: Path) -> None:
    users = json.loads((DATA / "oasis_reddit_users.json").read_text())
    broken = [dict(u) for u in users[:3]]
    del broken[2]["mbti"], broken[2]["country"]
    (tmp_path / "r.json").write_text(json.dumps(broken))
    with pytest.raises(PopulationFileError) as info:
        build({"file": {"path": "r.json", "format": "oasis_reddit"}}, base_dir=tmp_path)
    assert "entry [2]" in str(info.value) and "missing required key(s) mbti, country" in str(
        info.value
    )

    broken = [dict(u) for u in users[:2]]
    broken[1]["age"] = "about forty"
    (tmp_path / "r.json").write_text(json.dumps(broken))
    with pytest.raises(PopulationFileError, match=r"entry \[1\].*column 'age'"):
        build({"file": {"path": "r.json", "format": "oasis_reddit"}}, base_dir=tmp_path)


@pytest.mark.parametrize(
    ("name", "fmt", "rows"),
    [
        ("oasis_twitter_users.csv", "oasis_twitter", 8),
        ("oasis_reddit_users.json", "oasis_reddit", 8),
    ],
)
def test_example_copies_load(name: str, fmt: str, rows: int) -> None:
    pop = build({"file": {"path": name, "format": fmt}}, base_dir=EXAMPLES)
    assert pop.size == rows


def test_missing_case_of_a_conditional_parent_is_found_at_validation() -> None:
    attrs = {
        "role": {"dist": "categorical", "values": ["business", "customer"]},
        "speed": {"dist": "conditional", "by": "role",
                  "cases": {"business": {"dist": "categorical", "values": ["fast", "slow"]}},
                  "default": {"dist": "constant", "value": "none"}},
        "activity": {"dist": "conditional", "by": "speed",
                     "cases": {"fast": {"dist": "constant", "value": 1.0},
                               "slow": {"dist": "constant", "value": 0.2}}},
    }
    with pytest.raises(pydantic.ValidationError, match="no case for 'none' of 'speed'"):
        cfg(size=10, attributes=attrs)
    attrs["activity"]["default"] = {"dist": "constant", "value": 1.0}
    assert cfg(size=10, attributes=attrs).attributes["activity"].default is not None
