"""Attribute distributions for generated populations.

Core objects:

* :data:`AttributeSpec` - a pydantic discriminated union (on the key ``dist``) of the
  distribution models below; this is what one entry of ``population.attributes`` parses to.
* :data:`BaseAttributeSpec` - the same union without :class:`ConditionalDist` (the cases of a
  conditional attribute may not themselves be conditional).
* :class:`CategoricalDist`, :class:`NormalDist`, :class:`TruncNormalDist`,
  :class:`LogNormalDist`, :class:`UniformDist`, :class:`IntegerDist`, :class:`ConstantDist`,
  :class:`BetaDist` and :class:`ConditionalDist` - one model per ``dist`` value.

Every model draws all of its values in one vectorised numpy call (``sample``) and can check
values supplied by a population file (``coerce``). :func:`canonical_key` is the single rule
used to match values of a parent attribute against the case keys of a conditional attribute.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    StrictBool,
    model_serializer,
    model_validator,
)

# Scalar values allowed in categorical values, constants and case keys. StrictBool first so that
# YAML ``true`` stays a bool instead of being coerced to 1 by the int branch.
Scalar = StrictBool | int | float | str

_SQRT2 = math.sqrt(2.0)
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_MAX_REJECTION_ROUNDS = 10_000


def canonical_key(value: Any) -> str | None:
    """Return the string used to match a value against conditional case keys.

    YAML mapping keys may arrive as strings (``"true"``, ``"3"``) while the parent column holds
    bools, ints or floats, so both sides are reduced to one canonical text: bools become
    ``"true"``/``"false"``, integral floats lose their ``.0`` and strings spelling a bool are
    lower-cased.

    Args:
        value: A scalar (Python, numpy or pandas).

    Returns:
        The canonical text, or ``None`` for missing values (None/NaN/NA).
    """
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.lower() in ("true", "false"):
            return stripped.lower()
        return stripped
    return str(value)


def _values_array(values: list[Any]) -> np.ndarray:
    """Pack scalars into the narrowest numpy array that keeps their Python types.

    ``np.asarray`` would turn ``[1, "a"]`` into strings and ``[True, 2]`` into ints, so the
    dtype is chosen explicitly; strings stay ``object`` because pandas converts object arrays
    to its string dtype faster than fixed-width unicode arrays.
    """
    if values and all(isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=bool)
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int64)
    if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.float64)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def missing_mask(values: pd.Series) -> np.ndarray:
    """True where a file cell is missing: NaN/None or a blank string."""
    missing = values.isna().to_numpy(copy=True)  # pandas 3 hands out read-only views
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        text = values.astype("string").str.strip()
        missing |= (text == "").fillna(False).to_numpy(dtype=bool)
    return missing


class _Dist(BaseModel):
    """Shared behaviour of all distribution models."""

    # No .inf/.nan parameters: numpy refuses or overflows on them ("range exceeds bounds").
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:  # pragma: no cover
        """Draw ``n`` values.

        Args:
            n: Number of values.
            rng: Source of randomness.

        Returns:
            A numpy array of length ``n``.
        """
        raise NotImplementedError

    def coerce(self, values: pd.Series) -> tuple[pd.Series, np.ndarray, str]:
        """Check values read from a population file against this distribution.

        Args:
            values: The file column (missing cells may be NaN/None/blank).

        Returns:
            ``(coerced, bad, expectation)``: the values converted to this distribution's type
            (missing cells NaN/None), a boolean mask of present-but-invalid cells and a short
            description of what was expected, for error messages.
        """
        out = values.where(~missing_mask(values))
        return out, np.zeros(len(values), dtype=bool), "a value"


class _NumericDist(_Dist):
    """Base for continuous distributions: optional rounding and bound checks."""

    round: int | None = Field(default=None, ge=0, description="decimals to round draws to")

    def bounds(self) -> tuple[float, float]:
        """The hard range of the draws, ``(low, high)``; infinite ends where unbounded."""
        return -math.inf, math.inf

    def _finish(self, x: np.ndarray) -> np.ndarray:
        if self.round is not None:
            x = np.round(x, self.round)
            lo, hi = self.bounds()
            # Rounding can push a value just outside a hard bound (e.g. 0.05 -> 0.0 with low=0.05).
            if math.isfinite(lo) or math.isfinite(hi):
                x = np.clip(x, lo, hi)
        return x

    def coerce(self, values: pd.Series) -> tuple[pd.Series, np.ndarray, str]:
        missing = missing_mask(values)
        numbers = pd.to_numeric(values.where(~missing), errors="coerce").astype(np.float64)
        lo, hi = self.bounds()
        arr = numbers.to_numpy()
        bad = ~missing & (np.isnan(arr) | (arr < lo) | (arr > hi))
        if math.isfinite(lo) or math.isfinite(hi):
            expectation = f"a number in [{lo:g}, {hi:g}]"
        else:
            expectation = "a number"
        return numbers, bad, expectation


class CategoricalDist(_Dist):
    """Draw from a finite set of values with given (or uniform) weights.

    ``values`` is either a list (weights in ``weights``, uniform if omitted) or a mapping
    ``{value: weight}``. Weights are normalised to probabilities.
    """

    dist: Literal["categorical"]
    values: list[Scalar] | dict[Scalar, float] = Field(
        description="the possible values (a list), or a mapping of value to weight")
    weights: list[float] | None = Field(
        None, description="one weight per entry of a `values` list (uniform if omitted); weights "
        "are normalised")

    @model_validator(mode="after")
    def _check(self) -> CategoricalDist:
        if isinstance(self.values, dict):
            if self.weights is not None:
                raise ValueError(
                    "give weights either as a {value: weight} mapping in 'values' or as a "
                    "'weights' list, not both"
                )
            vals, weights = list(self.values.keys()), list(self.values.values())
        else:
            vals = list(self.values)
            weights = list(self.weights) if self.weights is not None else [1.0] * len(vals)
            if len(weights) != len(vals):
                raise ValueError(
                    f"'weights' has {len(weights)} entries but 'values' has {len(vals)}; "
                    "give one weight per value"
                )
        if not vals:
            raise ValueError("'values' must contain at least one value")
        keys = [canonical_key(v) for v in vals]
        if len(set(keys)) != len(keys):
            raise ValueError(f"'values' contains duplicates: {vals}")
        if any((not math.isfinite(w)) or w < 0 for w in weights):
            raise ValueError(f"weights must be finite and non-negative, got {weights}")
        if sum(weights) <= 0:
            raise ValueError("at least one weight must be positive")
        if not math.isfinite(sum(weights)):
            raise ValueError("the weights add up to more than a float holds; they are relative: "
                             "divide them all by the same number")
        return self

    @model_serializer(mode="wrap")
    def _typed_values(self, handler: SerializerFunctionWrapHandler,
                      info: SerializationInfo) -> Any:
        # JSON has text keys only: a mapping {0: 0.2, 1: 0.8} would come back as {"0", "1"}
        # (a Ray shard, a resume); as a list with its weights the values keep their type
        data = handler(self)
        if (info.mode_is_json() and isinstance(self.values, dict)
                and any(not isinstance(k, str) for k in self.values)):
            data["values"] = list(self.values)
            data["weights"] = list(self.values.values())
        return data

    @property
    def choices(self) -> list[Any]:
        """The possible values, in the order given."""
        return list(self.values.keys()) if isinstance(self.values, dict) else list(self.values)

    @property
    def probabilities(self) -> np.ndarray:
        """Normalised probabilities aligned with :attr:`choices`."""
        if isinstance(self.values, dict):
            w = np.asarray(list(self.values.values()), dtype=np.float64)
        elif self.weights is not None:
            w = np.asarray(self.weights, dtype=np.float64)
        else:
            w = np.ones(len(self.values), dtype=np.float64)
        return w / w.sum()

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        idx = rng.choice(len(self.choices), size=n, p=self.probabilities)
        return _values_array(self.choices)[idx]

    def coerce(self, values: pd.Series) -> tuple[pd.Series, np.ndarray, str]:
        missing = missing_mask(values)
        lookup = {canonical_key(v): v for v in self.choices}
        codes, uniques = pd.factorize(values.where(~missing), use_na_sentinel=True)
        mapped = [lookup.get(canonical_key(u), _NO_MATCH) for u in uniques]
        matched = np.asarray([m is not _NO_MATCH for m in mapped] + [False], dtype=bool)
        bad = ~missing & ~matched[codes]
        table = np.empty(len(mapped) + 1, dtype=object)
        table[:-1] = [None if m is _NO_MATCH else m for m in mapped]
        table[-1] = None  # code -1 (missing) indexes the last slot
        out = pd.Series(table[codes], index=values.index)
        return out, bad, "one of " + ", ".join(repr(v) for v in self.choices)


_NO_MATCH = object()


def _check_scale(spec: BaseModel, low: float, high: float) -> None:
    """Refuse parameters whose draws or width overflow a float (numpy: inf or OverflowError)."""
    if not math.isfinite(high - low) or max(abs(low), abs(high)) > 1e300:
        raise ValueError(f"the {getattr(spec, 'dist', '')} distribution spans [{low:g}, {high:g}]:"
                         " too wide for 64-bit floats; use numbers below 1e300")


class NormalDist(_NumericDist):
    """Normal distribution with ``mean`` and standard deviation ``sd`` (> 0)."""

    dist: Literal["normal"]
    mean: float = Field(description="mean")
    sd: float = Field(gt=0, description="standard deviation")

    @model_validator(mode="after")
    def _check(self) -> NormalDist:
        _check_scale(self, self.mean - 40 * self.sd, self.mean + 40 * self.sd)
        return self

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self._finish(rng.normal(self.mean, self.sd, size=n))


class TruncNormalDist(_NumericDist):
    """Normal distribution truncated to ``[low, high]``; draws never leave the interval.

    ``low`` / ``high`` may be omitted for a one-sided truncation.

    ``low`` must be below ``high``.
    """

    dist: Literal["truncnormal"]
    mean: float = Field(description="mean of the normal before truncation")
    sd: float = Field(gt=0, description="standard deviation of the normal before truncation")
    low: float | None = Field(None, description="lower bound (unset: none)")
    high: float | None = Field(None, description="upper bound (unset: none)")

    @model_validator(mode="after")
    def _check(self) -> TruncNormalDist:
        lo, hi = self.bounds()
        if not lo < hi:
            raise ValueError(f"low must be < high, got low={lo:g}, high={hi:g}")
        _check_scale(self, self.mean - 40 * self.sd, self.mean + 40 * self.sd)
        return self

    def bounds(self) -> tuple[float, float]:
        lo = -math.inf if self.low is None else float(self.low)
        hi = math.inf if self.high is None else float(self.high)
        return lo, hi

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        lo, hi = self.bounds()
        a, b = (lo - self.mean) / self.sd, (hi - self.mean) / self.sd
        z = _std_truncnormal(a, b, n, rng)
        # Clip guards against the last-ulp error of the affine map back to the user's scale.
        return self._finish(np.clip(self.mean + self.sd * z, lo, hi))


def _std_truncnormal(a: float, b: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` standard normals conditioned on ``[a, b]`` by vectorised rejection.

    The proposal follows Robert (1995): plain normals when the interval holds most of the
    mass, a uniform proposal for narrow intervals and a translated exponential for tails, so
    the acceptance rate stays reasonable even for ``[8, inf)``.
    """
    if b <= 0:  # Mirror the left tail onto the right one.
        return -_std_truncnormal(-b, -a, n, rng)
    out = np.empty(n, dtype=np.float64)
    filled = 0
    proposed = accepted = 0
    for _ in range(_MAX_REJECTION_ROUNDS):
        remaining = n - filled
        if remaining == 0:
            return out
        # Oversample by the observed acceptance rate so most calls finish in one or two rounds.
        rate = max(accepted / proposed, 1e-3) if proposed else 0.5
        m = int(remaining / rate * 1.1) + 16
        z = _propose(a, b, m, rng)
        proposed += m
        accepted += z.size
        take = min(z.size, remaining)
        out[filled : filled + take] = z[:take]
        filled += take
    raise RuntimeError(f"truncated normal sampling on [{a}, {b}] did not converge")


def _propose(a: float, b: float, m: int, rng: np.random.Generator) -> np.ndarray:
    """One vectorised rejection round on ``[a, b]`` with ``b > 0``; returns accepted draws."""
    if a <= 0:
        if b - a >= _SQRT_2PI:
            z = rng.standard_normal(m)
            return z[(z >= a) & (z <= b)]
        z = rng.uniform(a, b, m)
        return z[rng.random(m) <= np.exp(-0.5 * z * z)]
    alpha = 0.5 * (a + math.sqrt(a * a + 4.0))
    # Robert's threshold: above it the exponential envelope beats the uniform one.
    threshold = (2.0 * math.sqrt(math.e) / (a + math.sqrt(a * a + 4.0))) * math.exp(
        0.25 * (a * a - a * math.sqrt(a * a + 4.0))
    )
    if b - a > threshold:
        z = a + rng.exponential(1.0 / alpha, m)
        keep = (z <= b) & (rng.random(m) <= np.exp(-0.5 * (z - alpha) ** 2))
        return z[keep]
    z = rng.uniform(a, b, m)
    # exp((a^2 - z^2) / 2) written as a product to avoid cancellation in the far tail.
    return z[rng.random(m) <= np.exp(0.5 * (a - z) * (a + z))]


class LogNormalDist(_NumericDist):
    """Log-normal: ``exp(X)`` with ``X ~ Normal(mean, sigma)`` (parameters of the log)."""

    dist: Literal["lognormal"]
    mean: float = Field(description="mean of the logarithm")
    sigma: float = Field(gt=0, description="standard deviation of the logarithm")

    @model_validator(mode="after")
    def _finite(self) -> LogNormalDist:
        # exp(x) overflows to inf above x = 709: keep 10 sigmas of draws below that.
        if self.mean + 10 * self.sigma > 700:
            raise ValueError(f"mean + 10 x sigma is {self.mean + 10 * self.sigma:g}: draws would "
                             "overflow (exp(700) is already 1e304); mean and sigma are of the log")
        return self

    def bounds(self) -> tuple[float, float]:
        return 0.0, math.inf

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self._finish(rng.lognormal(self.mean, self.sigma, size=n))


class UniformDist(_NumericDist):
    """Continuous uniform on ``[low, high)``.

    ``low`` must be below ``high``.
    """

    dist: Literal["uniform"]
    low: float = Field(description="lower bound (inclusive)")
    high: float = Field(description="upper bound (exclusive)")

    @model_validator(mode="after")
    def _check(self) -> UniformDist:
        if not self.low < self.high:
            raise ValueError(f"low must be < high, got low={self.low:g}, high={self.high:g}")
        _check_scale(self, self.low, self.high)
        return self

    def bounds(self) -> tuple[float, float]:
        return self.low, self.high

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self._finish(rng.uniform(self.low, self.high, size=n))


class IntegerDist(_Dist):
    """Uniform integers in ``[low, high]``, both inclusive; the column is int64.

    ``low`` must not exceed ``high``.
    """

    dist: Literal["integer"]
    low: int = Field(description="smallest value (inclusive)")
    high: int = Field(description="largest value (inclusive)")

    @model_validator(mode="after")
    def _check(self) -> IntegerDist:
        if self.low > self.high:
            raise ValueError(f"low must be <= high, got low={self.low}, high={self.high}")
        return self

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(self.low, self.high, size=n, endpoint=True, dtype=np.int64)

    def coerce(self, values: pd.Series) -> tuple[pd.Series, np.ndarray, str]:
        missing = missing_mask(values)
        numbers = pd.to_numeric(values.where(~missing), errors="coerce").astype(np.float64)
        arr = numbers.to_numpy()
        with np.errstate(invalid="ignore"):
            bad = ~missing & (
                np.isnan(arr) | (arr != np.floor(arr)) | (arr < self.low) | (arr > self.high)
            )
        return numbers, bad, f"an integer in [{self.low}, {self.high}]"


class ConstantDist(_Dist):
    """The same ``value`` for every agent."""

    dist: Literal["constant"]
    value: Scalar = Field(description="the value every agent gets")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.repeat(_values_array([self.value]), n)


class BetaDist(_NumericDist):
    """Beta(a, b), optionally rescaled from [0, 1] to ``[low, high]`` (e.g. -1..1 opinions).

    ``low`` must be below ``high``.
    """

    dist: Literal["beta"]
    a: float = Field(gt=0, description="first shape parameter (alpha)")
    b: float = Field(gt=0, description="second shape parameter (beta)")
    low: float = Field(0.0, description="value that 0 maps to")
    high: float = Field(1.0, description="value that 1 maps to")

    @model_validator(mode="after")
    def _check(self) -> BetaDist:
        if not self.low < self.high:
            raise ValueError(f"low must be < high, got low={self.low:g}, high={self.high:g}")
        _check_scale(self, self.low, self.high)
        return self

    def bounds(self) -> tuple[float, float]:
        return self.low, self.high

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        x = rng.beta(self.a, self.b, size=n)
        if (self.low, self.high) != (0.0, 1.0):
            x = self.low + (self.high - self.low) * x
        return self._finish(x)


BaseAttributeSpec = Annotated[
    CategoricalDist
    | NormalDist
    | TruncNormalDist
    | LogNormalDist
    | UniformDist
    | IntegerDist
    | ConstantDist
    | BetaDist,
    Field(discriminator="dist"),
]


class ConditionalDist(_Dist):
    """An attribute whose distribution depends on the value of another attribute.

    Example (income by occupation)::

        income:
          dist: conditional
          by: occupation
          cases:
            student: {dist: lognormal, mean: 9.0, sigma: 0.4}
            engineer: {dist: lognormal, mean: 11.2, sigma: 0.3}
          default: {dist: lognormal, mean: 10.3, sigma: 0.5}

    Case keys are matched with :func:`canonical_key`, so YAML ``true``/``"true"`` and ``3`` /
    ``"3"`` select the same agents.
    """

    dist: Literal["conditional"]
    by: str = Field(min_length=1, description="the attribute whose value picks the case")
    cases: dict[Scalar, BaseAttributeSpec] = Field(
        description="a distribution per value of `by`")
    default: BaseAttributeSpec | None = Field(
        None, description="distribution for values without a case (unset: such a value is an "
        "error)")

    @model_validator(mode="after")
    def _check(self) -> ConditionalDist:
        if not self.cases and self.default is None:
            raise ValueError("a conditional attribute needs at least one case or a default")
        keys = [canonical_key(k) for k in self.cases]
        dupes = sorted({k for k in keys if keys.count(k) > 1 and k is not None})
        if dupes:
            raise ValueError(f"case keys {dupes} appear more than once (after normalisation)")
        return self

    def _row_groups(self, parent: pd.Series | np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Split row positions by case (in case order, then default).

        Returns:
            ``(groups, unmatched)``: one array of row positions per case plus one for the
            default (empty if none), and the positions matched by nothing.
        """
        codes, uniques = pd.factorize(pd.Series(parent), use_na_sentinel=True)
        case_of_key = {canonical_key(k): i for i, k in enumerate(self.cases)}
        n_cases = len(self.cases)
        default_slot = n_cases if self.default is not None else -1
        # Slot per unique value; the extra last entry is for missing values (code -1).
        slot = np.asarray(
            [case_of_key.get(canonical_key(u), default_slot) for u in uniques] + [default_slot],
            dtype=np.int64,
        )
        row_slot = slot[codes]
        order = np.argsort(row_slot, kind="stable")
        sorted_slots = row_slot[order]
        bounds = np.searchsorted(sorted_slots, np.arange(-1, n_cases + 2))
        groups = [order[bounds[s + 1] : bounds[s + 2]] for s in range(n_cases + 1)]
        unmatched = order[bounds[0] : bounds[1]]
        return groups, unmatched

    def branches(self) -> list[_Dist | None]:
        """The distribution of each case, in declared order, then the default (``None`` when
        there is none): every way a row can be drawn."""
        return [*self.cases.values(), self.default]

    def sample_given(self, parent: pd.Series | np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draw one value per row given the parent attribute's value on that row.

        Args:
            parent: Values of the ``by`` attribute, one per row to draw.
            rng: Source of randomness; cases are drawn in the order they are declared, then
                the default, so results are reproducible.

        Returns:
            An array aligned with ``parent``.

        Raises:
            ValueError: If some parent value matches no case and there is no default.
        """
        groups, unmatched = self._row_groups(parent)
        if unmatched.size:
            shown = pd.Series(parent).iloc[unmatched]
            values = list(pd.unique(shown))[:10]
            raise ValueError(
                f"no case for value(s) {', '.join(repr(_plain(v)) for v in values)} of "
                f"'{self.by}' and no 'default' is given; known cases: "
                f"{', '.join(repr(k) for k in self.cases)}"
            )
        pieces = [
            (rows, spec.sample(rows.size, rng))
            for rows, spec in zip(groups, self.branches(), strict=True)
            if spec is not None and rows.size
        ]
        return scatter_pieces(len(parent), pieces)

    def coerce_given(
        self, values: pd.Series, parent: pd.Series
    ) -> tuple[pd.Series, np.ndarray, list[str]]:
        """Check file values row by row against the case each row falls in.

        Args:
            values: The file column.
            parent: The ``by`` attribute on the same rows.

        Returns:
            ``(coerced, bad, expectations)`` like :meth:`_Dist.coerce`, with one expectation
            text per row (empty for good rows) since different cases expect different things.
        """
        groups, unmatched = self._row_groups(parent)
        n = len(values)
        bad = np.zeros(n, dtype=bool)
        expectations = [""] * n
        pieces: list[tuple[np.ndarray, np.ndarray]] = []
        missing = missing_mask(values)
        for rows, spec in zip(groups, self.branches(), strict=True):
            if spec is None or not rows.size:
                continue
            coerced, group_bad, expect = spec.coerce(values.iloc[rows].reset_index(drop=True))
            pieces.append((rows, coerced.to_numpy()))
            bad[rows[group_bad]] = True
            for r in rows[group_bad]:
                expectations[r] = expect
        if unmatched.size:
            # No case applies, so any present value is accepted as given.
            kept = values.iloc[unmatched].to_numpy(dtype=object).copy()
            kept[missing[unmatched]] = None
            pieces.append((unmatched, kept))
        out = pd.Series(scatter_pieces(n, pieces), index=values.index)
        return out, bad, expectations


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def scatter_pieces(n: int, pieces: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Assemble an array of length ``n`` from ``(rows, values)`` pieces of possibly mixed dtype."""
    if not pieces:
        return np.empty(n, dtype=object)
    kinds = {p[1].dtype.kind for p in pieces}
    if kinds <= set("biuf") and (len(kinds) == 1 or "b" not in kinds):
        dtype = np.result_type(*(p[1].dtype for p in pieces))
    else:
        dtype = np.dtype(object)
    if sum(p[0].size for p in pieces) < n:
        # Uncovered rows stay missing: NaN for numbers, None otherwise.
        if dtype.kind in "iuf":
            dtype = np.dtype(np.float64)
        elif dtype.kind == "b":
            dtype = np.dtype(object)
        out = np.full(n, np.nan if dtype.kind == "f" else None, dtype=dtype)
    else:
        out = np.empty(n, dtype=dtype)
    for rows, vals in pieces:
        out[rows] = vals
    return out


def support(spec: _Dist) -> tuple[float, float] | None:
    """The smallest and largest number ``spec`` can draw (infinite when unbounded).

    Returns:
        ``(low, high)``, or ``None`` when the distribution draws values that are not numbers
        (strings, booleans) so that no numeric range applies.
    """
    if isinstance(spec, ConditionalDist):
        ranges = [support(s) for s in spec.branches() if s is not None]
        if not ranges or any(r is None for r in ranges):
            return None
        return (min(r[0] for r in ranges if r is not None),
                max(r[1] for r in ranges if r is not None))
    if isinstance(spec, CategoricalDist | ConstantDist):
        values = spec.choices if isinstance(spec, CategoricalDist) else [spec.value]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return None
        return float(min(values)), float(max(values))
    if isinstance(spec, IntegerDist):
        return float(spec.low), float(spec.high)
    if isinstance(spec, _NumericDist):
        return spec.bounds()
    return None


def possible_values(spec: _Dist, limit: int = 1000) -> list[Any] | None:
    """Every value ``spec`` can draw, when they are few (at most ``limit``); else ``None``."""
    if isinstance(spec, ConditionalDist):
        values: list[Any] = []
        for part in spec.branches():
            if part is None:
                continue
            more = possible_values(part, limit)
            if more is None:
                return None
            values += [v for v in more if v not in values]
        return values if len(values) <= limit else None
    if isinstance(spec, CategoricalDist):
        probs = spec.probabilities
        return [v for v, p in zip(spec.choices, probs, strict=True) if p > 0]
    if isinstance(spec, ConstantDist):
        return [spec.value]
    if isinstance(spec, IntegerDist) and spec.high - spec.low < limit:
        return list(range(spec.low, spec.high + 1))
    return None


AttributeSpec = Annotated[
    CategoricalDist
    | NormalDist
    | TruncNormalDist
    | LogNormalDist
    | UniformDist
    | IntegerDist
    | ConstantDist
    | BetaDist
    | ConditionalDist,
    Field(discriminator="dist"),
]
"""One entry of ``population.attributes``: any distribution model, selected by ``dist``."""

AnyDist = _Dist
"""Common base class of all distribution models (for isinstance checks and typing)."""
