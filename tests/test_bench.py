"""Benchmark reports: JSON layout {rows, summary, command, machine} and the Markdown table."""

import json

from vision3d_kd.bench.report import markdown_table, write_results
from vision3d_kd.cli.main import main


def test_write_results_layout(tmp_path):
    result = {"rows": [{"field": "grid", "psnr_test": 27.5}, {"field": "mlp", "psnr_test": 24.1, "note": "x"}],
              "summary": {"psnr_grid": 27.5}}
    jpath, mpath = write_results("demo", result, tmp_path)
    payload = json.loads(jpath.read_text())
    assert set(payload) == {"rows", "summary", "command", "machine"}
    assert payload["summary"] == {"psnr_grid": 27.5} and payload["machine"]["cpu_count"] >= 1
    md = mpath.read_text()
    assert "| field | psnr_test | note |" in md and "| mlp | 24.1 | x |" in md


def test_markdown_table_columns_in_first_seen_order():
    assert markdown_table([{"a": 1}, {"b": 2.0}]).splitlines()[0] == "| a | b |"


def test_unknown_benchmark_is_a_one_line_error(capsys, tmp_path):
    try:
        main(["bench", "nope", "--out-dir", str(tmp_path)])
    except SystemExit as exc:
        assert exc.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown benchmark") and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())
