"""The run report's summary table says only what the run can know."""

from __future__ import annotations

from denoise_core import bulk, report

BASE = {"count": 2, "denoised": 2, "errors": 0, "noise_sigma_in_mean": 6.1, "psnr_mean": None}


def test_a_run_without_references_leaves_the_reference_rows_out():
    html = report.render_html({**BASE, "with_reference": 0}, [], [], [])
    assert "PSNR mean (dB)" not in html and "No image had a reference" in html
    assert "input noise sigma mean" in html  # the no-reference estimate stays


def test_a_run_with_references_shows_them():
    html = report.render_html({**BASE, "with_reference": 2, "psnr_mean": 31.5}, [], [], [])
    assert "PSNR mean (dB)" in html and "31.50" in html
    assert "No image had a reference" not in html


def test_files_left_alone_are_listed_by_kind_and_no_row_when_none():
    html = report.render_html({**BASE, "other_files": {".dng": 2, ".txt": 1}}, [], [], [])
    assert "<th>other files left alone (not images)</th><td>2 .dng, 1 .txt</td>" in html
    assert "other files left alone" not in report.render_html(
        {**BASE, "other_files": {}}, [], [], []
    )


def test_benchmark_report_renders_the_tables_and_escapes_text():
    md = "| set | a<b> |\n|---|---|\n| x | 1.00 |\n\nOracle choices: h=25."
    html = report.benchmark_html("denoise benchmark", md, [])
    assert "<table>" in html and "<td>1.00</td>" in html and "|---|" not in html
    assert "<b>" not in html and "a&lt;b&gt;" in html  # text stays text
    assert "Oracle choices: h=25." in html


def record(key: str, change: float, reason: str = "") -> dict:
    return {
        "key": key,
        "psnr": None,
        "change_rms": change,
        "skipped": bool(reason),
        "skipped_reason": reason or None,
    }


def test_crops_never_show_a_skip_below_copy():
    """A ``--skip-below`` copy changed least (0) but its "after" is its "before": the
    crops show denoised images only; a resumed image (output existed) may be shown."""
    records = [
        record("copied.jpg", 0.0, f"{bulk.CLEAN_REASON_PREFIX} 0.20 below --skip-below 1"),
        record("resumed.jpg", 0.01, bulk.SKIPPED_EXISTING),
        record("a.jpg", 0.05),
        record("b.jpg", 0.09),
    ]
    picked = dict(bulk.pick_samples(records))
    assert [r["key"] for r in picked.values()] == ["b.jpg", "a.jpg", "resumed.jpg"]
    assert [bulk.copied_unchanged(r) for r in records] == [True, False, False, False]
