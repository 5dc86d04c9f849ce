"""Tasks for the Focused Transformer claims: dictionary lookup far beyond the local context (the paper's
synthetic task, arXiv 2307.03170 sec. 5) and passkey retrieval, answered from memory.

Dictionary format (bytes): definitions "abcd:xyz;" packed into windows of L tokens, never straddling a window
boundary (the rest of a window is padded with spaces), then a question "?abcd:" whose answer is the value "xyz".
Training (crossbatch): each lane's previous window holds one window of definitions, its current window asks
questions about them ("?abcd:xyz;" repeated, the loss on the value bytes only); other lanes' definition windows
are the negatives. Evaluation: a dictionary of many windows is read into memory (`read_into_memory`), the local
context holds only the question, and the model generates the value (exact match).
"""
from __future__ import annotations

import random
import string
from dataclasses import dataclass

import torch

from ...checks import positive_int
from ..lanes import memory_lanes
from .crossbatch import CrossbatchBatch, make_layout
from .layer import read_into_memory

PAD = " "
IGNORE = -100  # cross-entropy ignore_index: bytes that are not answers
# Bytes before a pass key that a copy of it is matched on ("key is " for its first digit): a window boundary there
# or inside the key cuts it (`key_cut_by_window`).
KEY_CUT_REACH = 6


@dataclass(frozen=True)
class Dictionary:
    """A window-aligned dictionary: text (definitions, len = windows * window), keys / values in text order."""

    text: str
    keys: tuple
    values: tuple
    window: int

    def question(self, i: int) -> str:
        return f"?{self.keys[i]}:"

    def __repr__(self) -> str:
        return f"Dictionary({len(self.keys)} definitions, {len(self.text)} bytes, window={self.window})"


def _keys(rng: random.Random, count: int, key_len: int, exclude: frozenset = frozenset()) -> list[str]:
    """`count` distinct random keys of `key_len` lowercase letters, none of them in `exclude`."""
    if count + len(exclude) > 26**key_len // 2:
        raise ValueError(f"{count} distinct keys of {key_len} letters would fill more than half of the "
                         f"{26**key_len} possible keys; use longer keys")
    seen: set[str] = set(exclude)
    out = []
    while len(out) < count:
        key = "".join(rng.choices(string.ascii_lowercase, k=key_len))
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


def near_miss_keys(rng: random.Random, count: int, key_len: int, bases: int = 2) -> list[str]:
    """`count` distinct keys, each one of `bases` random keys with one letter (at a random place) changed: keys
    that share all but one letter, so that only a match on every letter tells them apart (hard negatives)."""
    if count > bases * (1 + key_len * 25):
        raise ValueError(f"{bases} bases of {key_len} letters have only {bases * (1 + key_len * 25)} near misses; "
                         f"{count} were asked for")
    roots = _keys(rng, bases, key_len)
    seen: set[str] = set()
    out = []
    while len(out) < count:
        root, at = rng.choice(roots), rng.randrange(key_len)
        key = root[:at] + rng.choice(string.ascii_lowercase) + root[at + 1:]
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


def definitions_per_window(window: int, key_len: int, value_len: int) -> int:
    per_def = key_len + value_len + 2
    if window < per_def:
        raise ValueError(f"window={window} is shorter than one definition ({per_def} bytes)")
    return window // per_def


def make_window_dictionary(windows: int, window: int, key_len: int = 4, value_len: int = 3,
                           seed: int = 0, keys: list[str] | None = None) -> Dictionary:
    """`windows` windows of `window` bytes, each floor(window / (key_len + value_len + 2)) definitions + padding.
    keys: the keys to define (default: distinct random keys); values are random."""
    positive_int("windows", windows)
    per_window = definitions_per_window(window, key_len, value_len)
    rng = random.Random(seed)
    if keys is None:
        keys = _keys(rng, windows * per_window, key_len)
    elif len(keys) != windows * per_window or len(set(keys)) != len(keys) or {len(k) for k in keys} != {key_len}:
        raise ValueError(f"keys must be {windows * per_window} distinct keys of {key_len} letters")
    values = ["".join(rng.choices(string.ascii_lowercase, k=value_len)) for _ in keys]
    parts = []
    for w in range(windows):
        body = "".join(f"{k}:{v};" for k, v in zip(keys[w * per_window : (w + 1) * per_window],
                                                     values[w * per_window : (w + 1) * per_window]))
        parts.append(body + PAD * (window - len(body)))
    return Dictionary("".join(parts), tuple(keys), tuple(values), window)


def _bytes(text: str) -> torch.Tensor:
    return torch.tensor(list(text.encode("ascii")), dtype=torch.long)


def lookup_batch(lanes: int, window: int, d: int, rng: random.Random, key_len: int = 4,
                 value_len: int = 3, local_defs: int = 0, near_miss: float = 0.0) -> CrossbatchBatch:
    """A crossbatch batch of the lookup task: lane i's previous window = one window of definitions, its current
    window = questions with answers about them ("?key:value;" from a random phase), targets IGNORE except the
    value bytes. Negatives: d - 1 other lanes' definition windows (each lane its own dictionary).
    local_defs > 0 starts the current window with that many definitions of other keys, asked about too: a
    lookup inside the window (the same circuit, learnt first, as the paper's d = 1 phase intends).
    near_miss: the share of lanes whose keys (definitions and local definitions) are `near_miss_keys`: with
    random keys one or two letters already tell a window's 7 keys apart, so a model need not learn to match the
    rest, and a memory of thousands of keys then confuses it."""
    if not 0.0 <= near_miss <= 1.0:
        raise ValueError(f"near_miss is a share of lanes, in [0, 1]; got {near_miss}")
    prev, prev_y, curr, curr_y = [], [], [], []
    per_window = definitions_per_window(window, key_len, value_len)
    for _ in range(lanes):
        lane_keys = None
        if near_miss and rng.random() < near_miss:  # no draw without near misses: older streams stay as they were
            lane_keys = near_miss_keys(random.Random(rng.randrange(2**31)), per_window + local_defs, key_len)
        book = make_window_dictionary(1, window, key_len, value_len, seed=rng.randrange(2**31),
                                      keys=lane_keys and lane_keys[:per_window])
        text = book.text
        prev.append(_bytes(text))
        prev_y.append(torch.full((window,), IGNORE, dtype=torch.long))
        keys, values = list(book.keys), list(book.values)
        asked, targets, phase = "", [], rng.randrange(key_len + value_len + 3)
        if local_defs:
            extra = make_window_dictionary(1, local_defs * (key_len + value_len + 2), key_len, value_len,
                                           seed=rng.randrange(2**31), keys=lane_keys and lane_keys[per_window:])
            fresh = [(k, v) for k, v in zip(extra.keys, extra.values) if k not in keys]
            asked = "".join(f"{k}:{v};" for k, v in fresh)
            keys += [k for k, _ in fresh]
            values += [v for _, v in fresh]
            phase = 0
        while len(asked) < window + 1 + 16:
            i = rng.randrange(len(keys))
            start = len(asked) + key_len + 2  # first value byte
            targets.extend(range(start, start + value_len))
            asked += f"?{keys[i]}:{values[i]};"
        tokens = _bytes(asked[phase : phase + window + 1])
        y = torch.full((window,), IGNORE, dtype=torch.long)
        for t in targets:
            if 1 <= t - phase <= window:
                y[t - phase - 1] = tokens[t - phase]
        curr.append(tokens[:window])
        curr_y.append(y)
    # negatives from their own generator: the windows drawn next do not depend on d
    layout = make_layout(lanes, d, random.Random(rng.randrange(2**31)), docs=list(range(lanes)))
    return CrossbatchBatch(torch.stack(prev), torch.stack(prev_y), torch.stack(curr), torch.stack(curr_y), layout,
                           [0] * lanes)


def _check_question(prompt: str, marker: str) -> None:
    if marker not in prompt[-200:]:
        raise ValueError(f"the prompt has no question: it must end with a question containing {marker!r} "
                         f"(e.g. '?abcd:' for a dictionary lookup, or the passkey QUESTION)")


@torch.no_grad()
def answer(model, prompt: str, max_new: int, memory_size: int | None, keep_last: int, marker: str = "?",
           read: bool = False) -> str:
    """Read `prompt` into memory (all but its last `keep_last` bytes) and greedily generate `max_new` bytes from
    the kept tail. memory_size None or 0: no memory, the model sees only the tail (the no-memory baseline)."""
    _check_question(prompt, marker)
    tokens = _bytes(prompt).to(next(model.parameters()).device)
    keep_last = min(keep_last, tokens.numel())
    if not memory_size:
        with memory_lanes(model, sizes=[0]):
            out = model.generate(tokens[None, -keep_last:], max_new)
    else:
        with memory_lanes(model, sizes=[memory_size]):
            tail = read_into_memory(model, tokens, keep_last=keep_last, read=read)
            out = model.generate(tail, max_new)
    return bytes(out[0, -max_new:].tolist()).decode("ascii", errors="replace")


def local_context(book: Dictionary, defs: int, answered: int, seed: int = 0) -> str:
    """Local text to ask a question after, shaped like a training window: `defs` definitions of fresh keys (none
    of `book`'s) then `answered` questions about them with their answers. The asked definition is never in it:
    it stays wherever the dictionary put it (in memory)."""
    if defs < 0 or not 0 <= answered <= defs:
        raise ValueError(f"need 0 <= answered <= defs, got defs={defs}, answered={answered}")
    if not defs:
        return ""
    key_len, value_len = len(book.keys[0]), len(book.values[0])
    # A stream of its own: Random(seed) would replay the draws of a dictionary made with the same seed, so the
    # fresh definitions' values would repeat the dictionary's values (an answer leaked into the local text).
    rng = random.Random(f"local_context:{seed}")
    keys = _keys(rng, defs, key_len, exclude=frozenset(book.keys))
    pairs = [(key, "".join(rng.choices(string.ascii_lowercase, k=value_len))) for key in keys]
    return "".join(f"{k}:{v};" for k, v in pairs) + "".join(f"?{k}:{v};" for k, v in pairs[:answered])


@torch.no_grad()
def dictionary_accuracy(model, book: Dictionary, questions: list[int], memory_size: int | None,
                        read: bool = False, context: str = "") -> float:
    """Exact-match accuracy of looking up book.keys[i] for i in `questions`: the whole dictionary read once into
    a memory of `memory_size` tokens (None/0: no memory), then each question asked with only `context` (e.g.
    `local_context`, never the asked definition) and the question in the local window (generation reads memory
    but never writes it)."""
    if not questions:
        raise ValueError("questions is empty; pass indices of keys to look up")
    value_len = len(book.values[0])
    if len(context) + len(book.question(0)) + value_len > model.config.context:
        raise ValueError(f"context ({len(context)} bytes) and the question do not fit the model's "
                         f"{model.config.context}-token window")
    device = next(model.parameters()).device
    hits = 0
    with memory_lanes(model, sizes=[memory_size or 0]):
        if memory_size:
            read_into_memory(model, _bytes(book.text).to(device), keep_last=0, read=read)
        for i in questions:
            out = model.generate(_bytes(context + book.question(i)).to(device)[None], value_len)
            hits += bytes(out[0, -value_len:].tolist()).decode("ascii", errors="replace") == book.values[i]
    return hits / len(questions)


def passkey_batch(lanes: int, window: int, rng: random.Random, local_share: float = 0.0,
                  repeat_targets: bool = False) -> CrossbatchBatch:
    """A crossbatch batch (d = 1) of the passkey task: lane i's previous window = filler with the key line at a
    random place, its current window = filler, the question and the answer; targets IGNORE except the answer's
    digits and the "." after them (so that a greedy answer stops). d = 1 because every document has the same
    template: another lane's key line is not distinguishable from the own one by content (a negative would be a
    second, equally valid pass key). With probability `local_share` the current window repeats the key line
    before the question (a lookup inside the window: the same circuit, learnt first). repeat_targets: the key's
    second occurrence in the key line ("... Remember it. 37613 is ...") is a target too, a copy from its first
    occurrence 20 bytes back (more signal for the same copy; the random draws are the same either way)."""
    from ...tasks.passkey import FILLER, KEY_LINE, QUESTION, key_offsets

    prev, prev_y, curr, curr_y = [], [], [], []
    filler = FILLER * (2 * window // len(FILLER) + 2)
    for _ in range(lanes):
        key = str(rng.randint(1, 50000))
        line = KEY_LINE.format(key=key)
        if len(line) > window:
            raise ValueError(f"window={window} is shorter than the key line ({len(line)} bytes)")
        cut = rng.randrange(window - len(line) + 1)
        start = rng.randrange(len(FILLER))
        text = filler[start : start + cut] + line
        text += filler[start + cut : start + cut + window - len(text)]
        prev.append(_bytes(text))
        prev_y.append(torch.full((window,), IGNORE, dtype=torch.long))
        if repeat_targets:
            again = cut + key_offsets(key)[1]
            prev_y[-1][again - 1 : again - 1 + len(key)] = prev[-1][again : again + len(key)]
        tail = QUESTION + key + "."
        if rng.random() < local_share and len(line) + len(tail) <= window:
            tail = line + tail
        lead = rng.randrange(max(1, window + 1 - len(tail)))
        asked = filler[start : start + lead] + tail
        asked += filler[: window + 1 - len(asked)]
        tokens = _bytes(asked)
        y = torch.full((window,), IGNORE, dtype=torch.long)
        first = lead + len(tail) - len(key) - 1
        for t in range(first, first + len(key) + 1):  # the digits, then the "." that ends the answer
            y[t - 1] = tokens[t]
        curr.append(tokens[:window])
        curr_y.append(y)
    layout = make_layout(lanes, 1, rng, docs=list(range(lanes)))
    return CrossbatchBatch(torch.stack(prev), torch.stack(prev_y), torch.stack(curr), torch.stack(curr_y), layout,
                           [0] * lanes)


def key_cut_by_window(example, window: int, reach: int = KEY_CUT_REACH) -> bool:
    """Whether a window boundary of `read_into_memory` (every `window` tokens from the prompt's start) falls
    inside one of the key's two occurrences in the key line, or within the `reach` bytes before one (the bytes a
    copy of it is matched on). Layers below the memory layer see only their own window, so the bytes just after
    a boundary are written to memory without the bytes before them."""
    from ...tasks.passkey import key_offsets

    for offset in key_offsets(example.answer):
        lo = max(1, example.key_offset + offset - reach)  # boundaries are positive multiples of `window`
        if -(-lo // window) * window <= example.key_offset + offset + len(example.answer):
            return True
    return False


@torch.no_grad()
def passkey_trial(model, example, memory: bool, overlap: int = 0) -> tuple[bool, torch.Tensor | None]:
    """Ask one `longlab.tasks.passkey` example. memory: the prompt read into memory (`read_into_memory`, windows
    re-reading `overlap` tokens), only the question kept local; else the model sees the prompt's last window only.
    Returns (correct, attention mass on the key line per memory-layer head (H,) at the question's last byte, or
    None without memory)."""
    from ...tasks.passkey import KEY_LINE, QUESTION, score_passkey

    _check_question(example.prompt, QUESTION.strip())
    device = next(model.parameters()).device
    tokens = _bytes(example.prompt).to(device)
    context = model.config.context
    new = len(example.answer) + 1
    if not memory:
        with memory_lanes(model, sizes=[0]):
            out = model.generate(tokens[None, -context:], new)
        return score_passkey(bytes(out[0, -new:].tolist()).decode("ascii", "replace"), example.answer), None
    layer = model.memory_layers()[0]
    with memory_lanes(model, sizes=[tokens.numel()]):
        tail = read_into_memory(model, tokens, keep_last=len(QUESTION), read=False, overlap=overlap)
        _, _, reads = model(tail, return_retrievals=True)
        found = reads[layer.layer_index].lanes[0]
        mass = None
        if found is not None:
            lo = example.key_offset
            hi = lo + len(KEY_LINE.format(key=example.answer))
            inside = (found.positions[:, -1] >= lo) & (found.positions[:, -1] < hi)
            mass = (found.weights[:, -1] * inside).sum(-1)
        out = model.generate(tail, new)
    return score_passkey(bytes(out[0, -new:].tolist()).decode("ascii", "replace"), example.answer), mass
