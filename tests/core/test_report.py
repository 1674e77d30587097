"""The run report's summary table says only what the run can know."""

from __future__ import annotations

from denoise_core import report

BASE = {"count": 2, "denoised": 2, "errors": 0, "noise_sigma_in_mean": 6.1, "psnr_mean": None}


def test_a_run_without_references_leaves_the_reference_rows_out():
    html = report.render_html({**BASE, "with_reference": 0}, [], [], [])
    assert "PSNR mean (dB)" not in html and "No image had a reference" in html
    assert "input noise sigma mean" in html  # the no-reference estimate stays


def test_a_run_with_references_shows_them():
    html = report.render_html({**BASE, "with_reference": 2, "psnr_mean": 31.5}, [], [], [])
    assert "PSNR mean (dB)" in html and "31.50" in html
    assert "No image had a reference" not in html


def test_benchmark_report_renders_the_tables_and_escapes_text():
    md = "| set | a<b> |\n|---|---|\n| x | 1.00 |\n\nOracle choices: h=25."
    html = report.benchmark_html("denoise benchmark", md, [])
    assert "<table>" in html and "<td>1.00</td>" in html and "|---|" not in html
    assert "<b>" not in html and "a&lt;b&gt;" in html  # text stays text
    assert "Oracle choices: h=25." in html
