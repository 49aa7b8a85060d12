"""``alphaops bench scale``: one child process per (point, step), its own peak RSS, the growth fits,
and a section of docs/benchmarks.md that replaces itself and keeps the rest of the file."""

from __future__ import annotations

import json
import math

import pytest

from pipelines.app.bench_scale import BEGIN, END, ScalePoint, growth, replace_section, scale_bench


def test_growth_recovers_a_known_exponent_and_slope():
    rows = [{"step": "features", "timeframe": "1m", "bars": n, "seconds": 3e-6 * n ** 1.5, "peak_rss_mb": 500 + n / 1e4}
            for n in (1e5, 1e6, 2.6e6)]
    assert growth(rows, "features", "seconds")["exponent"] == pytest.approx(1.5)
    assert growth(rows, "features", "peak_rss_mb")["per_million"] == pytest.approx(100.0)
    assert math.isnan(growth(rows[:1], "features", "seconds")["exponent"])  # one point fits nothing


def test_the_section_replaces_itself_and_keeps_the_model_table():
    first = replace_section("# Model benchmark\n\n| a | b |\n", f"{BEGIN}\nold\n{END}\n")
    second = replace_section(first + "\ntrailing notes\n", f"{BEGIN}\nnew\n{END}\n")
    assert second.count(BEGIN) == 1 and "new" in second and "old" not in second
    assert second.startswith("# Model benchmark") and second.rstrip().endswith("trailing notes")


def test_a_small_bench_measures_each_step_in_its_own_process(tmp_path, monkeypatch):
    monkeypatch.delenv("ALPHAOPS_HOME", raising=False)  # each point gets its own home under root
    out = tmp_path / "docs" / "benchmarks.md"
    out.parent.mkdir()
    out.write_text("# Model benchmark\n\nthe model table\n")
    points = [ScalePoint("3k minutes", "1m", 1, 3_000), ScalePoint("6k minutes", "1m", 1, 6_000)]
    result = scale_bench(out=out, root=tmp_path / "root", steps=["ingest", "features"], points=points)
    rows = result["rows"]
    assert [(r["point"], r["step"]) for r in rows] == [("3k minutes", "ingest"), ("3k minutes", "features"),
                                                       ("6k minutes", "ingest"), ("6k minutes", "features")]
    assert [r["rows"] for r in rows] == [3_000, 3_000, 6_000, 6_000]
    assert all(r["peak_rss_mb"] > 100 and r["seconds"] > 0 for r in rows)
    assert (tmp_path / "root" / "3k_minutes" / "warehouse").exists()
    text = out.read_text()
    assert text.startswith("# Model benchmark\n\nthe model table") and BEGIN in text and END in text
    assert "| 6k minutes | 6,000 | features |" in text and "benchmarks_scale.png" in text
    assert json.loads(out.with_name("benchmarks_scale.json").read_text())["rows"] == json.loads(json.dumps(rows))
    with pytest.raises(ValueError, match="prefix"):
        scale_bench(out=out, root=tmp_path / "root", steps=["features"], points=points)


def test_the_model_bench_keeps_the_scale_section(tmp_path):
    from pipelines.app.bench_report import keep_scale_section

    out = tmp_path / "benchmarks.md"
    out.write_text(f"# Model benchmark\n\nold table\n\n{BEGIN}\nscale rows\n{END}\n")
    text = keep_scale_section(out, "# Model benchmark\n\nnew table\n")
    assert text.startswith("# Model benchmark\n\nnew table") and "old table" not in text
    assert f"{BEGIN}\nscale rows\n{END}" in text
    out.write_text("# Model benchmark\n")
    assert keep_scale_section(out, "new") == "new"
