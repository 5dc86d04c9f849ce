"""The static site's index page: notebooks (run time or failure), methods (viz.tour.METHODS), measured results.

Measured results are read from the committed records, never typed in: the checkpoint JSONs in data/checkpoints
(held-out loss, unigram bar, loss vs memory size) and the benchmark CSVs under data/bench (copied next to the page).
"""
from __future__ import annotations

import csv
import html
import json
import shutil
from pathlib import Path

from viz.tour import METHODS, find_notebook

ROOT = Path(__file__).resolve().parents[1]
STYLE = """body{font-family:Inter,'Helvetica Neue',Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#1f2933;line-height:1.5}table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:14px}
th,td{border:1px solid #e4e7eb;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f5f7fa}
.fail{color:#d64545;font-weight:bold}.scroll{overflow-x:auto}.nowrap td{white-space:nowrap}
code{background:#f5f7fa;padding:0 3px}"""


def _e(value) -> str:
    return html.escape(str(value))


def _number(value: str) -> str:
    try:
        x = float(value)
    except ValueError:
        return _e(value)
    return f"{x:,.0f}" if x.is_integer() and abs(x) < 1e15 else f"{x:.4g}"


def _table(header: list[str], rows: list[list[str]], nowrap: bool = False) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    cls = ' class="nowrap"' if nowrap else ""
    return f'<div class="scroll"><table{cls}><tr>{head}</tr>{body}</table></div>'


def notebooks_section(results) -> str:
    rows = []
    for r in results:
        status = f"ran in {r.seconds:.0f} s" if r.ok else f'<span class="fail">failed</span>: {_e(r.error)}'
        rows.append([f'<a href="{_e(r.name)}.html">{_e(r.name)}</a>', _e(r.title), status])
    return "<h2>Notebooks</h2>" + _table(["page", "title", "build"], rows)


def methods_section(built: set[str]) -> str:
    rows = []
    for m in METHODS:
        nb = find_notebook(m, ROOT / "notebooks")
        stem = Path(nb).stem if nb else None
        link = f'<a href="{_e(stem)}.html">{_e(stem)}</a>' if stem in built else (_e(stem) if stem else "<i>coming</i>")
        rows.append([_e(m.name), _e(m.idea), f'<a href="{_e(m.url)}">{_e(m.paper)}</a>', link])
    return "<h2>Methods</h2>" + _table(["method", "idea", "paper", "notebook"], rows)


def checkpoint_rows(folder: Path) -> list[list[str]]:
    """One row per checkpoint record: name, model, held-out loss, unigram bar, and what else it measured."""
    rows = []
    for path in sorted(folder.glob("*.json")):
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        info, config = meta.get("info", {}), meta.get("config", {})
        if "val_loss" not in info:
            continue
        extra = []
        mem = info.get("memory_eval")
        if mem:
            losses = ", ".join(f"{s:,}: {v:.4f}" for s, v in zip(mem["memory_sizes"], mem["mean_loss"]))
            extra.append(f"mean held-out loss by memory size (tokens): {losses}")
        ref = info.get("dense_reference")
        if ref:
            extra.append(f"dense model after the same {ref['step']} steps: {ref['val_loss']:.4f}")
        layers = ", ".join(config.get("attention", []))
        rows.append([f"<code>{_e(path.stem)}</code>", _e(layers), f"{info['val_loss']:.4f}",
                     f"{info.get('unigram_val_loss', float('nan')):.4f}", _e("; ".join(extra)),
                     f"<code>{_e(info.get('command', ''))}</code>"])
    return rows


def bench_section(out: Path) -> str:
    parts = []
    for path in sorted((ROOT / "data" / "bench").rglob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            table = list(csv.reader(handle))
        if len(table) < 2:
            continue
        rel = path.relative_to(ROOT / "data")
        target = out / "data" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
        parts.append(f'<h3><a href="data/{_e(rel.as_posix())}">{_e(rel.as_posix())}</a></h3>'
                     + _table([_e(h) for h in table[0]], [[_number(c) for c in row] for row in table[1:]], nowrap=True))
    return "".join(parts)


def records_section(out: Path) -> str:
    """Links to the other recorded result files (data/*/ JSON and CSV outside checkpoints and bench), copied."""
    links = []
    for path in sorted((ROOT / "data").rglob("*")):
        rel = path.relative_to(ROOT / "data")
        if path.suffix not in (".json", ".csv") or rel.parts[0] in ("checkpoints", "bench") or len(rel.parts) < 2:
            continue
        if path.stat().st_size > 5_000_000:  # built artefacts (e.g. a retrieval database), not records
            continue
        target = out / "data" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
        links.append(f'<li><a href="data/{_e(rel.as_posix())}">{_e(rel.as_posix())}</a></li>')
    return f"<h3>Other recorded results (data/)</h3><ul>{''.join(links)}</ul>" if links else ""


def write_index(out: Path, results, small: bool = False) -> Path:
    built = {r.name for r in results}
    checkpoints = checkpoint_rows(ROOT / "data" / "checkpoints")
    size = "small: the notebooks' CI-sized defaults" if small else "larger: viz/site.py SITE_PARAMETERS"
    page = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>longlab: long-context methods, computed</title>
<style>{STYLE}</style></head><body>
<h1>longlab: long-context methods, computed</h1>
<p>Every notebook executed headless and exported to HTML ({_e(size)}). Figures are interactive (zoom, hover);
explorer sliders need a running kernel: clone the repository and run <code>make lab</code>. Rebuild this site with
<code>make site</code>.</p>
{notebooks_section(results)}
{methods_section(built)}
<h2>Measured results</h2>
<h3>Checkpoints (data/checkpoints, nats/byte on held-out files)</h3>
{_table(["checkpoint", "layers", "held-out loss", "unigram bar", "also measured", "regenerate"], checkpoints)}
<h3>Benchmarks (data/bench, recorded runs; times in seconds)</h3>
{bench_section(out)}
{records_section(out)}
</body></html>
"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
