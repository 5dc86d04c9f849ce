"""`longlab bench dilated --scale` and `longlab bench memory --scale` at tiny sizes: they run, write their own
CSVs with the load average in every row, label extrapolated dense timings, and agree with exact answers.
(No timing assertions: timings are recorded, never tested.)"""
from __future__ import annotations

import pytest

from longlab.bench._dilated_scale import longnet_branches
from longlab.bench.common import read_csv
from longlab.cli import main as cli


def test_longnet_branches_geometric_up_to_n():
    assert longnet_branches(1 << 20) == ([2048 * 2**i for i in range(10)], [2**i for i in range(10)])
    assert longnet_branches(4096) == ([2048, 4096], [1, 2])
    assert longnet_branches(100, w0=2048) == ([100], [1])
    with pytest.raises(ValueError, match="ratio"):
        longnet_branches(4096, ratio=1)


def test_bench_dilated_scale_tiny(tmp_path):
    assert cli(["bench", "dilated", "--scale", "--scale-sizes", "128", "256", "512", "--w0", "32", "--heads", "2",
                "--head-dim", "8", "--repeats", "1", "--dense-sizes", "128", "256", "--scale-backward-sizes", "256",
                "--out", str(tmp_path)]) == 0
    rows = read_csv(tmp_path / "dilated_scale_cpu.csv")
    assert [(int(r["N"]), r["causal"], r["pass"]) for r in rows] == [
        (128, "False", "fwd"), (128, "True", "fwd"), (256, "False", "fwd"), (256, "True", "fwd"),
        (512, "False", "fwd"), (512, "True", "fwd"), (256, "False", "fwd+bwd")]
    sources = [r["sdpa_source"] for r in rows]
    assert sources[:4] == ["measured"] * 4 and sources[4:6] == ["extrapolated from N=256 (time x N^2, memory x N)"] * 2
    assert sources[6] == ""  # no dense comparison for the backward row
    assert [int(r["branches"]) for r in rows] == [3, 3, 4, 4, 5, 5, 4]
    for r in rows:
        assert float(r["dilated_s"]) > 0 and float(r["dilated_peak_mib"]) > 0
        assert float(r["load_before"]) >= 0 and float(r["load_after"]) >= 0
    # the extrapolation is the measured 256 time x (512 / 256)^2
    assert float(rows[4]["sdpa_s"]) == pytest.approx(4 * float(rows[2]["sdpa_s"]))


def test_bench_memory_scale_tiny(tmp_path):
    pytest.importorskip("faiss")
    assert cli(["bench", "memory", "--scale", "--scale-sizes", "2048", "8192", "--ivf-min", "8192", "--nprobes",
                "1", "128", "--persist-sizes", "8192", "--queries", "16", "--out", str(tmp_path)]) == 0
    rows = read_csv(tmp_path / "memory_scale_cpu.csv")
    methods = [(int(r["keys"]), r["method"]) for r in rows]
    assert methods == [(2048, "exact (KVMemory)"), (2048, "faiss flat (knn_inner_product)"),
                       (8192, "exact (KVMemory)"), (8192, "faiss flat (knn_inner_product)"),
                       (8192, "faiss ivf nprobe=1"), (8192, "faiss ivf nprobe=128"),
                       (8192, "save (streaming safetensors)"), (8192, "load (streaming safetensors)")]
    by = {m: r for (_, m), r in zip(methods, rows)}
    assert float(rows[1]["same_neighbours"]) == 1.0 and float(rows[3]["same_neighbours"]) == 1.0
    assert float(by["faiss ivf nprobe=128"]["recall"]) == 1.0  # 128 >= nlist = 90: every list scanned
    assert float(by["faiss ivf nprobe=1"]["recall"]) < 1.0
    assert float(by["load (streaming safetensors)"]["same_neighbours"]) == 1.0
    assert all(float(r["load_before"]) >= 0 for r in rows)


@pytest.mark.cuda
def test_bench_memory_scale_tiny_on_the_gpu(tmp_path):
    """On a GPU: exact search only (faiss-cpu and save/load are CPU work), with what the memory holds on the GPU
    recorded."""
    assert cli(["bench", "memory", "--scale", "--scale-sizes", "8192", "--queries", "16", "--device", "cuda",
                "--out", str(tmp_path)]) == 0
    gpu = read_csv(tmp_path / "memory_scale_cuda.csv")
    assert [r["method"] for r in gpu] == ["exact (KVMemory)"] and "cuda" in gpu[0]["device"]
    assert float(gpu[0]["device_gib"]) >= 2 * 8192 * 64 * 4 / 2**30  # keys and values
    assert float(gpu[0]["search_s"]) > 0


def test_scale_figures_from_tiny_runs(tmp_path):
    """The notebook figures draw every series from the rows, with titled axes, and say when load was high."""
    pytest.importorskip("faiss")
    from viz.scale import dilated_scale_figure, load_note, memory_scale_figure

    cli(["bench", "dilated", "--scale", "--scale-sizes", "128", "256", "--w0", "32", "--heads", "1", "--head-dim", "4",
         "--repeats", "1", "--dense-sizes", "128", "--scale-backward-sizes", "--out", str(tmp_path)])
    cli(["bench", "memory", "--scale", "--scale-sizes", "4096", "--ivf-min", "4096", "--nprobes", "1", "64",
         "--persist-sizes", "--queries", "8", "--out", str(tmp_path)])
    drows, mrows = read_csv(tmp_path / "dilated_scale_cpu.csv"), read_csv(tmp_path / "memory_scale_cpu.csv")
    for fig in (dilated_scale_figure(drows), memory_scale_figure(mrows)):
        layout = fig.to_plotly_json()["layout"]
        for axis in ("xaxis", "xaxis2", "yaxis", "yaxis2"):
            assert layout[axis]["title"]["text"], axis
    names = {t.name for t in dilated_scale_figure(drows).data}
    assert {"dilated (full)", "dilated (causal)", "dense SDPA (full, measured)",
            "dense SDPA (full, extrapolated)"} <= names
    assert [t.name for t in memory_scale_figure(mrows).data][:3] == [
        "exact (KVMemory)", "faiss flat (knn_inner_product)", "faiss IVF, 4,096 keys"]
    quiet = [{"load_before": "0.5", "load_after": "1.0"}]
    assert load_note(quiet) == "quiet machine"
    assert "under load" in load_note([{"load_before": "0.5", "load_after": "7.25"}])
