"""Seed statistics and the one verdict rule every notebook, table and figure uses.

A comparison of two arms (KD vs scratch, a method vs KD) is **paired**: both arms of a seed start
from the same initial weights and see the same batches, so the difference of a seed is the
method's effect plus run-to-run noise. Over ``n`` seeds we report the mean difference and its 95%
confidence interval from Student's t with ``n - 1`` degrees of freedom:

    mean(d) ± t_{0.975, n-1} · std(d) / sqrt(n)        (std: sample standard deviation)

A comparison with a number measured once (a teacher scored once against students over seeds) is
**one-sample**: the same formula on ``value_i - reference``; it says nothing about how the
reference itself would vary, and :func:`versus_fixed` labels it so.

**The verdict** is read off the interval and a **margin**, the smallest effect that matters
(:data:`MARGINS`: for accuracy 0.5 points, 10 images of the 2,000-image mini test set):

- ``"negligible"``: the interval lies wholly inside ``±margin``: shown too small to matter;
- ``"gain"``: the interval lies above 0 (and not wholly inside the margin);
- ``"loss"``: the mirror, below 0;
- ``"inconclusive"``: the interval crosses 0 and reaches past the margin: more seeds needed
  (also with one seed, where there is no interval).

No notebook writes its own noise rule.
"""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import asdict, dataclass, field

GAIN, LOSS, NEGLIGIBLE, INCONCLUSIVE = "gain", "loss", "negligible", "inconclusive"
VERDICTS = (GAIN, LOSS, NEGLIGIBLE, INCONCLUSIVE)
PAIRED, ONE_SAMPLE = "paired", "one-sample"

# The smallest effect that matters, per metric (values as fractions, like the metrics themselves).
# Accuracy: 0.5 points = 10 of the 2,000 mini test images. Two students of the same recipe and
# seed differ by a few borderline images from the last bits of the arithmetic alone (AVX2 vs
# AVX-512 CPUs, 1 vs 2 threads), so an effect below 10 images is no effect a learner could rely
# on; and 0.5 points is also where published comparisons of distillation methods stop
# distinguishing (README "The verdict rule").
MARGINS = {
    "accuracy": 0.005,
    "agreement": 0.005,   # the share of test images on which student and teacher agree: as accuracy
    "recall": 0.05,       # one class's recall on its ~200 mini test images: the same 10 images
    "ece": 0.01,          # expected calibration error: one point of confidence-accuracy gap
    "nll": 0.02,          # test negative log-likelihood, nats per image
}
DEFAULT_MARGIN = MARGINS["accuracy"]


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


def verdict(interval, margin: float = DEFAULT_MARGIN) -> str:
    """The one rule: "negligible" when the interval lies wholly inside ``±margin``, else "gain"
    when it lies above 0, "loss" when below, else "inconclusive" (no interval: inconclusive)."""
    margin = check_margin(margin)
    low, high = interval
    if math.isnan(low) or math.isnan(high):
        return INCONCLUSIVE
    if -margin <= low and high <= margin:
        return NEGLIGIBLE
    if low > 0:
        return GAIN
    if high < 0:
        return LOSS
    return INCONCLUSIVE


def check_margin(margin) -> float:
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or not 0 <= margin < math.inf:
        raise ValueError(f"margin must be a finite number >= 0 (the smallest effect that matters, in the "
                         f"metric's own units, e.g. 0.005 for half a point of accuracy); got {margin!r}")
    return float(margin)


@dataclass
class Comparison:
    """``a - b`` over seeds: mean, std, 95% interval, the margin and the verdict.

    ``kind`` is "paired" (two arms, one value of each per seed) or "one-sample" (arm ``a`` over
    seeds against a number measured once)."""

    differences: list
    mean: float
    std: float
    ci95: tuple
    verdict: str
    seeds: list = field(default_factory=list)
    margin: float = DEFAULT_MARGIN
    kind: str = PAIRED

    @property
    def n(self) -> int:
        return len(self.differences)

    def text(self, scale: float = 100.0, unit: str = "points") -> str:
        """``+0.85 points (95% CI +0.31 to +1.39, 3 seeds, margin ±0.50): gain``; values times ``scale``."""
        low, high = self.ci95
        interval = ("no interval from one seed" if math.isnan(low)
                    else f"95% CI {scale * low:+.2f} to {scale * high:+.2f}")
        seeds = f"{self.n} seed{'s' if self.n != 1 else ''}" + (", one-sample" if self.kind == ONE_SAMPLE else "")
        return f"{scale * self.mean:+.2f} {unit} ({interval}, {seeds}, margin ±{scale * self.margin:.2f}): {self.verdict}"

    def negated(self) -> "Comparison":
        """The same comparison read the other way round (``b - a``, or reference - values)."""
        low, high = self.ci95
        return Comparison([-d for d in self.differences], -self.mean, self.std, (-high, -low),
                          verdict((-high, -low), self.margin), list(self.seeds), self.margin, self.kind)

    def images(self, test_images: int) -> str:
        """The mean effect as test images: ``+33 of 2,000 test images``."""
        return f"{self.mean * test_images:+.0f} of {test_images:,} test images"

    def to_dict(self) -> dict:
        return asdict(self)


def paired(a, b, *, seeds=None, margin=DEFAULT_MARGIN) -> Comparison:
    """Compare arm ``a`` with arm ``b``: ``a[i]`` and ``b[i]`` come from the same seed."""
    a, b = _floats("a", a), _floats("b", b)
    if len(a) != len(b):
        raise ValueError(f"a paired comparison needs one value of each arm per seed; got {len(a)} and {len(b)}")
    return _compare([x - y for x, y in zip(a, b)], _seed_list(seeds, len(a)), margin, PAIRED)


def versus_fixed(values, reference, *, seeds=None, margin=DEFAULT_MARGIN) -> Comparison:
    """``values`` (one per seed) minus a ``reference`` measured once (a teacher scored once): the
    one-sample interval, which covers the seeds' spread and nothing of the reference's."""
    values = _floats("values", values)
    reference = _floats("reference", [reference])[0]
    return _compare([v - reference for v in values], _seed_list(seeds, len(values)), margin, ONE_SAMPLE)


def _compare(differences: list, seeds: list, margin, kind: str) -> Comparison:
    margin = check_margin(margin)
    if not all(math.isfinite(d) for d in differences):
        raise ValueError("the differences between the two arms overflow a float (each value's magnitude must "
                         "stay below about 8.9e307); the inputs themselves are finite")
    mean, std = mean_std(differences)
    if not math.isfinite(std):
        raise ValueError("the spread of the differences overflows a float (values of magnitude near 1e308); "
                         "rescale the values (e.g. accuracies as fractions)")
    interval = interval_from(mean, std, len(differences))
    return Comparison(differences, mean, std, interval, verdict(interval, margin), seeds, margin, kind)


def headline(claim: str, metric: str, comparison: Comparison) -> dict:
    """The ``headline`` entry of a notebook's ``metrics.json`` (differences and margin as fractions)."""
    if not claim or not metric:
        raise ValueError(f"a headline needs a claim and a metric; got claim={claim!r}, metric={metric!r}")
    return {"claim": claim, "metric": metric, "kind": comparison.kind, "n_seeds": comparison.n,
            "effect_mean": comparison.mean, "effect_ci95": list(comparison.ci95), "margin": comparison.margin,
            "verdict": comparison.verdict, "per_seed": comparison.differences, "seeds": comparison.seeds}


# The line a notebook's first cell (and the README) quotes; the tests parse it back and compare it
# with a fresh run, so a quoted number cannot drift away from what the code produces.
HEADLINE_LINE = re.compile(
    r"\*\*Headline\*\* \((?P<where>.+?)\): (?P<claim>.+?): \*\*(?P<mean>[+-]\d+\.\d+) points \(95% CI "
    r"(?P<low>[+-]\d+\.\d+) to (?P<high>[+-]\d+\.\d+)\)\*\*, (?P<n>\d+) seeds, (?P<kind>paired|one-sample), "
    r"margin ±(?P<margin>\d+\.\d+) points: (?P<verdict>gain|loss|negligible|inconclusive)\.")


def measured_on(profile, threads, machine) -> str:
    """Where a number was measured, as every quote says it: ``quick profile, 2 torch threads, <machine>``."""
    return f"{profile} profile, {threads} torch thread{'' if threads == 1 else 's'}, {machine}"


def headline_line(headline: dict, where: str) -> str:
    """``**Headline** (where): claim: **+1.67 points (95% CI +1.48 to +1.86)**, 3 seeds, paired,
    margin ±0.50 points: gain.``"""
    low, high = _quoted_interval(headline)
    return (f"**Headline** ({where}): {headline['claim']}: **{100 * headline['effect_mean']:+.2f} points "
            f"(95% CI {100 * low:+.2f} to {100 * high:+.2f})**, {headline['n_seeds']} seeds, "
            f"{headline.get('kind', PAIRED)}, margin ±{100 * headline['margin']:.2f} points: {headline['verdict']}.")


def parse_headline_line(text: str) -> dict | None:
    """The fields of the first headline line in ``text`` (numbers in points), or None."""
    return _fields(HEADLINE_LINE.search(text))


def _quoted_interval(headline: dict) -> tuple:
    low, high = headline["effect_ci95"]
    if low is None or (isinstance(low, float) and math.isnan(low)):
        raise ValueError("a quoted headline needs an interval: run it with at least two seeds")
    return low, high


def _fields(found, names: dict | None = None) -> dict | None:
    """A headline line's fields from its match (numbers in points; verdict and kind by their
    English names, ``names`` mapping the written ones back), or None without a match."""
    if found is None:
        return None
    fields = found.groupdict()
    fields.update({key: (names or {}).get(fields[key], fields[key]) for key in ("verdict", "kind")})
    return {**fields, "n": int(fields["n"]), **{k: float(fields[k]) for k in ("mean", "low", "high", "margin")}}


# The same line in the Chinese edition (notebooks/zh, README.zh-CN.md): the same numbers from the
# same metrics.json, a Chinese frame, the verdict and kind by the names below; the claim is written
# by the notebook's code and stays as the code wrote it, in 「」.
VERDICTS_ZH = {GAIN: "提升", LOSS: "下降", NEGLIGIBLE: "可忽略", INCONCLUSIVE: "尚无定论"}
KINDS_ZH = {PAIRED: "配对", ONE_SAMPLE: "单样本"}
HEADLINE_LINE_ZH = re.compile(
    r"\*\*核心结论\*\*（(?P<where>.+?)）：「(?P<claim>.+?)」：\*\*(?P<mean>[+-]\d+\.\d+) 个百分点（95% 置信区间 "
    r"(?P<low>[+-]\d+\.\d+) 至 (?P<high>[+-]\d+\.\d+)）\*\*，(?P<n>\d+) 个种子，(?P<kind>配对|单样本)比较，"
    r"边际 ±(?P<margin>\d+\.\d+) 个百分点：(?P<verdict>提升|下降|可忽略|尚无定论)。")


def measured_on_zh(profile, threads, machine) -> str:
    """:func:`measured_on` in Chinese: ``quick 配置，2 个 torch 线程，<machine>``."""
    return f"{profile} 配置，{threads} 个 torch 线程，{machine}"


def headline_line_zh(headline: dict, where: str) -> str:
    """:func:`headline_line` in Chinese (``where`` from :func:`measured_on_zh`): ``**核心结论**（where）：
    「claim」：**+1.67 个百分点（95% 置信区间 +1.48 至 +1.86）**，3 个种子，配对比较，边际 ±0.50 个百分点：提升。``"""
    low, high = _quoted_interval(headline)
    return (f"**核心结论**（{where}）：「{headline['claim']}」：**{100 * headline['effect_mean']:+.2f} 个百分点"
            f"（95% 置信区间 {100 * low:+.2f} 至 {100 * high:+.2f}）**，{headline['n_seeds']} 个种子，"
            f"{KINDS_ZH[headline.get('kind', PAIRED)]}比较，边际 ±{100 * headline['margin']:.2f} 个百分点："
            f"{VERDICTS_ZH[headline['verdict']]}。")


def parse_headline_line_zh(text: str) -> dict | None:
    """The fields of the first Chinese headline line in ``text``, as :func:`parse_headline_line`
    gives them (numbers in points; ``verdict`` and ``kind`` by their English names, as metrics.json
    has them), or None."""
    in_english = {zh: en for en, zh in (*VERDICTS_ZH.items(), *KINDS_ZH.items())}
    return _fields(HEADLINE_LINE_ZH.search(text), in_english)


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


def _seed_list(seeds, count: int) -> list:
    """``seeds`` as a list naming one seed per pair (or [] when not given)."""
    if seeds is None:
        return []
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__len__"):
        raise ValueError(f"seeds must be a list with one seed per pair ({count} of them); got {seeds!r}")
    if len(seeds) != count:
        raise ValueError(f"seeds must name one seed per pair; got {len(seeds)} seeds for {count} pairs")
    return list(seeds)


def _floats(name: str, values) -> list:
    """``values`` as a flat list of finite floats, or a ValueError that names what is wrong."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name} must be a sequence of numbers (one per seed); got {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} must hold at least one value; got none")
    floats = []
    for index, value in enumerate(values):
        if getattr(value, "ndim", 0) or isinstance(value, (list, tuple, dict, set)):
            raise ValueError(f"{name} must be a flat sequence of numbers (one per seed); entry {index} is "
                             f"{type(value).__name__} {value!r}: pass a 1-D sequence")
        try:
            floats.append(float(value))
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be numbers; entry {index} is {value!r}") from None
    if not all(math.isfinite(v) for v in floats):
        raise ValueError(f"{name} must be finite numbers; got {floats}")
    return floats
