"""Seed statistics and the one verdict rule every notebook, table and figure uses.

A comparison of two arms (KD vs scratch, a method vs KD) is **paired**: both arms of a seed start
from the same initial weights and see the same batches, so the difference of a seed is the
method's effect plus run-to-run noise. Over ``n`` seeds we report the mean difference and its 95%
confidence interval from Student's t with ``n - 1`` degrees of freedom:

    mean(d) ± t_{0.975, n-1} · std(d) / sqrt(n)        (std: sample standard deviation)

**The verdict** is read off the interval and nothing else: ``"gain"`` when it lies above 0,
``"loss"`` when below, ``"no difference"`` when it contains 0 (with one seed there is no interval,
so no verdict but "no difference"). No notebook writes its own noise rule.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

GAIN, LOSS, NO_DIFFERENCE = "gain", "loss", "no difference"
VERDICTS = (GAIN, LOSS, NO_DIFFERENCE)


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (``n - 1`` in the denominator; 0 for one value)."""
    values = _floats("values", values)
    mean = math.fsum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def t_quantile(probability: float, df: int) -> float:
    """The ``probability`` quantile of Student's t with ``df`` degrees of freedom (0.5 < p < 1).

    Found by bisection on the t distribution's CDF, written with the regularised incomplete beta
    function (no SciPy needed): ``P(T <= t) = 1 - I_x(df/2, 1/2) / 2`` with ``x = df / (df + t^2)``.
    """
    if not 0.5 < probability < 1:
        raise ValueError(f"probability must be in (0.5, 1); got {probability}")
    if not isinstance(df, int) or df < 1:
        raise ValueError(f"df must be an integer >= 1; got {df!r}")
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < probability:
        high *= 2
    for _ in range(200):  # far more than float precision needs; each step halves the bracket
        middle = (low + high) / 2
        low, high = (middle, high) if _t_cdf(middle, df) < probability else (low, middle)
    return (low + high) / 2


def mean_interval(values, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` confidence interval of the mean of ``values`` (Student t); NaNs for one value."""
    values = _floats("values", values)
    return interval_from(*mean_std(values), len(values), level)


def interval_from(mean: float, std: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """The same interval as :func:`mean_interval`, from a mean, a sample std and a count."""
    if n < 2:
        return math.nan, math.nan
    half = t_quantile(0.5 + level / 2, n - 1) * std / math.sqrt(n)
    return mean - half, mean + half


def verdict(interval) -> str:
    """"gain" when the interval lies above 0, "loss" when below, else "no difference"."""
    low, high = interval
    if math.isnan(low) or math.isnan(high):
        return NO_DIFFERENCE
    if low > 0:
        return GAIN
    if high < 0:
        return LOSS
    return NO_DIFFERENCE


@dataclass
class Comparison:
    """The paired difference ``a - b`` over seeds: mean, std, 95% interval and verdict."""

    differences: list
    mean: float
    std: float
    ci95: tuple
    verdict: str
    seeds: list = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.differences)

    def text(self, scale: float = 100.0, unit: str = "points") -> str:
        """``+0.85 points (95% CI +0.31 to +1.39, 3 seeds): gain``; differences times ``scale``."""
        low, high = self.ci95
        interval = ("no interval from one seed" if math.isnan(low)
                    else f"95% CI {scale * low:+.2f} to {scale * high:+.2f}")
        seeds = f"{self.n} seed{'s' if self.n != 1 else ''}"
        return f"{scale * self.mean:+.2f} {unit} ({interval}, {seeds}): {self.verdict}"

    def to_dict(self) -> dict:
        return asdict(self)


def paired(a, b, seeds=None) -> Comparison:
    """Compare arm ``a`` with arm ``b``: ``a[i]`` and ``b[i]`` come from the same seed."""
    a, b = _floats("a", a), _floats("b", b)
    if len(a) != len(b):
        raise ValueError(f"a paired comparison needs one value of each arm per seed; got {len(a)} and {len(b)}")
    if seeds is not None and len(seeds) != len(a):
        raise ValueError(f"seeds must name one seed per pair; got {len(seeds)} seeds for {len(a)} pairs")
    differences = [x - y for x, y in zip(a, b)]
    mean, std = mean_std(differences)
    interval = interval_from(mean, std, len(differences))
    return Comparison(differences, mean, std, interval, verdict(interval), list(seeds or []))


def headline(claim: str, metric: str, comparison: Comparison) -> dict:
    """The ``headline`` entry of a notebook's ``metrics.json`` (differences as fractions)."""
    if not claim or not metric:
        raise ValueError(f"a headline needs a claim and a metric; got claim={claim!r}, metric={metric!r}")
    return {"claim": claim, "metric": metric, "n_seeds": comparison.n, "effect_mean": comparison.mean,
            "effect_ci95": list(comparison.ci95), "verdict": comparison.verdict,
            "per_seed": comparison.differences, "seeds": comparison.seeds}


# The line a notebook's first cell (and the README) quotes; the tests parse it back and compare it
# with a fresh run, so a quoted number cannot drift away from what the code produces.
HEADLINE_LINE = re.compile(
    r"\*\*Headline\*\* \((?P<where>.+?)\): (?P<claim>.+?): \*\*(?P<mean>[+-]\d+\.\d+) points \(95% CI "
    r"(?P<low>[+-]\d+\.\d+) to (?P<high>[+-]\d+\.\d+)\)\*\*, (?P<n>\d+) seeds: (?P<verdict>gain|loss|no difference)\.")


def measured_on(profile, threads, machine) -> str:
    """Where a number was measured, as every quote says it: ``quick profile, 2 torch threads, <machine>``."""
    return f"{profile} profile, {threads} torch threads, {machine}"


def headline_line(headline: dict, where: str) -> str:
    """``**Headline** (where): claim: **+1.67 points (95% CI +1.48 to +1.86)**, 3 seeds: gain.``"""
    low, high = headline["effect_ci95"]
    if low is None or (isinstance(low, float) and math.isnan(low)):
        raise ValueError("a quoted headline needs an interval: run it with at least two seeds")
    return (f"**Headline** ({where}): {headline['claim']}: **{100 * headline['effect_mean']:+.2f} points "
            f"(95% CI {100 * low:+.2f} to {100 * high:+.2f})**, {headline['n_seeds']} seeds: {headline['verdict']}.")


def parse_headline_line(text: str) -> dict | None:
    """The fields of the first headline line in ``text`` (numbers in points), or None."""
    found = HEADLINE_LINE.search(text)
    if found is None:
        return None
    fields = found.groupdict()
    return {**fields, "n": int(fields["n"]), **{k: float(fields[k]) for k in ("mean", "low", "high")}}


# --------------------------------------------------------------------------- the t distribution
def _t_cdf(t: float, df: int) -> float:
    x = df / (df + t * t)
    tail = 0.5 * _regularised_beta(x, df / 2, 0.5)
    return 1 - tail if t >= 0 else tail


def _regularised_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) by its continued fraction (Numerical Recipes, section 6.4)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(x, a, b) / a
    return 1 - front * _beta_fraction(1 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    return result


def _floats(name: str, values) -> list:
    values = [float(v) for v in values]
    if not values:
        raise ValueError(f"{name} must hold at least one value; got none")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} must be finite numbers; got {values}")
    return values
