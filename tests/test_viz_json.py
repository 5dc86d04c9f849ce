"""Every viz figure and explorer sends only finite numbers: a NaN or an infinity in a figure is not JSON, and a
live FigureWidget sends its figure as JSON (jupyter-client then prints "Message serialization failed with:
Out of range float values are not JSON compliant" into the notebook).

Two checks: the figure's own data (`to_plotly_json`, numpy arrays included) holds no non-finite number; and
for explorers, every comm message a live widget sends (opening, then one redraw per control) passes
`json.dumps(..., allow_nan=False)`, the check jupyter-client makes. A coverage test makes sure a new figure
function in viz/ gets a case here.
"""
from __future__ import annotations

import base64
import importlib
import inspect
import json
import math
import pkgutil

import numpy as np
import pytest
import torch

pytest.importorskip("plotly")
ipywidgets = pytest.importorskip("ipywidgets")

import plotly.graph_objects as go  # noqa: E402
from comm.base_comm import BaseComm  # noqa: E402

import viz  # noqa: E402
from longlab.attention.patterns import Dense, Dilated, SlidingWindow  # noqa: E402


def nonfinite(obj, path="fig"):
    """Paths (strings) of every non-finite number inside a to_plotly_json() tree or a comm message."""
    if isinstance(obj, dict) and "bdata" in obj and "dtype" in obj:  # plotly's base64 typed array
        obj = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"]))
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in nonfinite(v, f"{path}.{k}")]
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in nonfinite(v, f"{path}[{i}]")]
    if isinstance(obj, memoryview):  # a binary comm buffer: JSON never sees it
        return []
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "fc":
            return [f"{path}{list(i)}" for i in np.argwhere(~np.isfinite(obj))[:3]]
        if obj.dtype == object:
            return [p for i, v in enumerate(obj.ravel().tolist()) for p in nonfinite(v, f"{path}<flat {i}>")]
        return []
    if isinstance(obj, (float, np.floating)) and not math.isfinite(obj):
        return [path]
    return []


class RecordingComm(BaseComm):
    """A comm that keeps every message a widget publishes (open, update) instead of sending it."""

    def __init__(self, *args, **kwargs):
        self.messages = []
        super().__init__(*args, **kwargs)

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        self.messages.append((msg_type, data))


@pytest.fixture
def comms(monkeypatch):
    """Widgets created inside the test talk to RecordingComms (the list of them is returned)."""
    made = []

    def create_comm(*args, **kwargs):
        made.append(RecordingComm(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ipywidgets.widgets.widget.comm, "create_comm", create_comm)
    return made


def assert_json_clean(messages):
    for msg_type, data in messages:
        try:
            json.dumps(data, allow_nan=False, default=lambda o: "<buffer>")
        except ValueError as err:
            raise AssertionError(f"a {msg_type} message is not JSON ({err}): {nonfinite(data, msg_type)[:5]}") from None


# ---- the cases: name of a viz figure function -> a zero-argument builder (small, CI-sized inputs) ----


@pytest.fixture(scope="module")
def memory_objects():
    from longlab.memory.memory_eval import loss_vs_memory, loss_vs_memory_docs
    from longlab.memory.retrievals import record_retrievals
    from longlab.models import TinyLM, TinyLMConfig

    torch.manual_seed(0)
    model = TinyLM(TinyLMConfig(context=16, d_model=16, n_heads=2, n_layers=2, attention=("dense", "memorizing"),
                                memory_size=32, memory_topk=4)).eval()
    tokens = torch.randint(0, 256, (16 * 5 + 1,), generator=torch.Generator().manual_seed(1))

    class Doc:
        def __init__(self, name, tokens):
            self.name, self._tokens = name, tokens

        def tokens(self):
            return self._tokens

    ret = record_retrievals(model, tokens, memory_size=32, progress=False)  # first window: NaN scores
    curve = loss_vs_memory(model, tokens, [0, 32], progress=False)
    sweep = loss_vs_memory_docs(model, [Doc("a", tokens), Doc("b", tokens.flip(0))], [0, 32], progress=False)
    return ret, curve, sweep


def cases(memory_objects):
    from longlab.analysis.allocation import effective_allocation
    from longlab.parallel import simulate
    from longlab.parallel.holdings import holdings
    from viz import allocation, complexity, dilated_explorer, memory_explorer, parallel_cost, parallel_trace
    from viz import pattern_heatmap as ph
    from viz.parallel_compare import random_qkv

    ret, curve, sweep = memory_objects
    dil = Dilated.geometric(4, 2, 3)
    rows = [{"N": 64, "causal": "True", "pass": "fwd", "dilated_s": 0.1, "sdpa_s": 0.2, "speedup": 2.0}]
    q, k, v = random_qkv(32, 4, head_dim=4)
    _, trace = simulate("ring", q, k, v, 2)
    measured = [{"method": "ring", "rank": r, "measured_s": 0.01, "model_comm_s": 0.001} for r in range(2)]
    return {
        "pattern_heatmap": lambda: ph.pattern_heatmap(dil, 16, heads=4, head=1),
        "pattern_explorer": lambda: ph.pattern_explorer(n=16, flag=False),
        "head_grid": lambda: dilated_explorer.head_grid(dil, 16, 4),
        "query_keys": lambda: dilated_explorer.query_keys(dil, 16, 4, 0, 9),
        "flops_figure": lambda: dilated_explorer.flops_figure({"dense": Dense(), "dilated": dil}, [64, 256]),
        "masking_vs_gathering": lambda: dilated_explorer.masking_vs_gathering(dil, 32, 4, 0, block=8),
        "runtime_figure": lambda: dilated_explorer.runtime_figure(rows),
        "dilated_explorer": lambda: dilated_explorer.dilated_explorer(n=16, flag=False),
        "structural_figure": lambda: allocation.structural_figure(
            {"dense": Dense(), "sliding": SlidingWindow(4), "dilated": dil}, 4, 64),
        "effective_figure": lambda: allocation.effective_figure(
            {"dilated": effective_allocation(dil, *torch.randn(3, 1, 4, 32, 8).unbind(0))}),
        "path_length_figure": lambda: allocation.path_length_figure({"sliding": [(16, 3.0), (32, math.inf)]}),
        "allocation_explorer": lambda: allocation.allocation_explorer(n=64, flag=False),
        "dense_cost_figure": lambda: complexity.dense_cost_figure([256, 1024], patterns={"dilated": dil}),
        "retrieval_figure": lambda: memory_explorer.retrieval_figure(ret, 3),  # first window: nothing retrieved
        "retrieval_explorer": lambda: memory_explorer.retrieval_explorer(ret, 40, flag=False),
        "gates_figure": lambda: memory_explorer.gates_figure(torch.tensor([0.3, float("nan")])),  # NaN: no gate
        "loss_vs_memory_figure": lambda: memory_explorer.loss_vs_memory_figure(curve),
        "memory_helped_figure": lambda: memory_explorer.memory_helped_figure(curve, smooth=4),
        "recall_figure": lambda: memory_explorer.recall_figure(
            [{"index": "exact", "recall": 1.0, "search_s": 0.01}, {"index": "hnsw", "recall": 0.9, "search_s": 0.002}]),
        "loss_vs_memory_sweep_figure": lambda: memory_explorer.loss_vs_memory_sweep_figure(sweep),
        "volume_figure": lambda: parallel_cost.volume_figure(64, 2, 2, 4, (2,), (64, 128), methods=("ring",)),
        "causal_work_figure": lambda: parallel_cost.causal_work_figure(64, 2),
        "measured_figure": lambda: parallel_cost.measured_figure(measured),
        "step_figure": lambda: parallel_trace.step_figure(trace, holdings(trace, "ring"), "ring", 1),
        "trace_figure": lambda: parallel_trace.trace_figure("ulysses", 4, 16, 2, False, 0),  # message figure
        "trace_explorer": lambda: parallel_trace.trace_explorer(seq_len=32, flag=False),
    }


# Modules whose every figure function has a case above; the live-widget check below covers every module.
CASE_MODULES = ("allocation", "complexity", "dilated_explorer", "memory_explorer", "parallel_cost",
                "parallel_trace", "pattern_heatmap", "tour")


def viz_functions():
    """(module, name, function) of every public module-level function of every viz module."""
    found = []
    for info in pkgutil.iter_modules(viz.__path__):
        module = importlib.import_module(f"viz.{info.name}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ == module.__name__ and not name.startswith("_"):
                found.append((info.name, name, fn))
    return found


def test_every_figure_function_of_the_case_modules_has_a_case(memory_objects):
    """A function returning a figure (or an explorer) in CASE_MODULES needs a case in `cases`."""
    missing = [f"viz.{m}.{n}" for m, n, fn in viz_functions() if m in CASE_MODULES and n not in cases(memory_objects)
               and ("Figure" in str(inspect.signature(fn).return_annotation) or n.endswith(("_explorer", "_figure")))]
    assert not missing, f"add a case to tests/test_viz_json.py for: {missing}"


def test_figures_hold_only_finite_numbers(memory_objects):
    bad = {}
    for name, build in cases(memory_objects).items():
        fig = build()
        assert isinstance(fig, go.Figure), f"{name} returned {type(fig).__name__}"
        found = nonfinite(fig.to_plotly_json())
        if found:
            bad[name] = found[:3]
        json.dumps(json.loads(fig.to_json()), allow_nan=False)
    assert not bad, f"non-finite numbers in figures: {bad}"


def test_nonfinite_finds_nan_and_inf():
    fig = go.Figure(go.Heatmap(z=np.array([[1.0, np.nan]]))).add_scatter(y=[1, math.inf])
    assert len(nonfinite(fig.to_plotly_json())) == 2
    assert nonfinite(go.Figure(go.Heatmap(z=np.array([[1, None]], dtype=object))).to_plotly_json()) == []


def _move(control):
    """Set a control to another allowed value (the next option, one step, the other boolean)."""
    if isinstance(control, ipywidgets.Checkbox):
        control.value = not control.value
    elif hasattr(control, "options"):
        values = [o[1] if isinstance(o, tuple) else o for o in control.options]
        control.value = values[(values.index(control.value) + 1) % len(values)]
    else:
        step = control.step or 1
        control.value = control.value + step if control.value + step <= control.max else control.value - step


def default_explorers():
    """Every `*_explorer` function of viz that can be built from its defaults (all of them but those that need
    data, which get their own test)."""
    found = []
    for module, name, fn in viz_functions():
        params = inspect.signature(fn).parameters.values()
        if name.endswith("_explorer") and all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                                              for p in params):
            found.append(pytest.param(fn, id=f"{module}.{name}"))
    return found


@pytest.mark.parametrize("make", default_explorers())
def test_live_explorer_messages_are_json(make, comms):
    """Every message of a live explorer, from opening it through one move of each control, is valid JSON."""
    box = make(flag=True)
    assert isinstance(box, ipywidgets.VBox)
    for control in box.controls.values():
        _move(control)
    messages = [m for c in comms for m in c.messages]
    assert any(t == "comm_open" for t, _ in messages) and len(messages) > len(box.controls)
    assert_json_clean(messages)


def test_live_retrieval_explorer_messages_are_json(comms, memory_objects):
    from viz.memory_explorer import retrieval_explorer

    ret = memory_objects[0]
    box = retrieval_explorer(ret, ret.tokens.numel() - 1, flag=True)
    box.controls["query"].value = 2  # the first window: nothing retrieved, NaN scores in the Retrievals
    assert_json_clean([m for c in comms for m in c.messages])


def test_recording_comm_sees_a_nan():
    """The check itself fails on a NaN sent through a live FigureWidget (what the notebooks printed)."""
    fig = go.FigureWidget(go.Heatmap(z=np.full((2, 2), np.nan)))
    state = ipywidgets.widgets.widget._remove_buffers(fig.get_state())[0]
    with pytest.raises(AssertionError, match="not JSON"):
        assert_json_clean([("comm_open", state)])
