"""autograder/referee: the protocol between the tests (here) and the learner's code (a real Jupyter kernel).

What crosses is checked against Python's own semantics: values arrive as their plain types with the same contents,
stand-ins behave like the learner's objects, in-place changes and identity survive, exceptions keep their kind, and
a kernel that misbehaves (hangs, ignores the interrupt, sends garbage or too much) costs the test, never the grader.
"""

from __future__ import annotations

import collections
import math
import time

import numpy as np
import pytest
import torch

from autograder.referee import learner, wire
from autograder.referee.kernel import LearnerKernel, LocalKernelProcess
from autograder.referee.link import CellTimeout, LearnerError, LearnerObject, LinkBroken, ReplyError

LEARNER_CODE = r'''
import collections, signal, time
import torch

def echo(x):
    return x

def same(x):
    return x

_shared = {}
def shared(key):
    _shared[key] = len(_shared)
    return _shared

def append_one(xs):
    xs.append(1)
    return None

def fill_(t):
    t.add_(1)

def counter():
    return collections.Counter("abracadabra")

class Anything(float):
    def __eq__(self, other):
        return True

def anything():
    return Anything(1.0)

class Always:
    def __eq__(self, other):
        return True

def always():
    return Always()

class Box:
    def __init__(self, n):
        self.n = n
        self.items = list(range(n))
    def __len__(self):
        return self.n
    def __getitem__(self, i):
        if i >= self.n:
            raise IndexError(f"no item {i}")
        return self.items[i] * 10
    def grow(self):
        self.n += 1
        self.items.append(self.n - 1)
        return self
    def __repr__(self):
        return f"Box({self.n})"

def count(n):
    for i in range(n):
        yield i

class MyError(ValueError):
    pass

def fails(kind):
    if kind == "mine":
        raise MyError("a mistake of mine")
    if kind == "exit":
        raise SystemExit(3)
    if kind == "unicode":
        b"\xff".decode("utf-8")
    raise NotImplementedError("not yet")

def apply(f, x):
    return f(x) + 1

def take_two(it):
    return [next(it), next(it)]

def loop_forever(x):
    while True:
        pass

def ignore_interrupts(x):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        time.sleep(0.5)

def square_sum(x, w):
    return (x * w).sum(dim=-1)

def detached(x, w):
    return (x * w.detach()).sum(dim=-1)

def big(n):
    return torch.zeros(n, dtype=torch.uint8)

def deep(n):
    value = []
    for _ in range(n):
        value = [value]
    return value

def sparse():
    return torch.eye(3).to_sparse()

def draw():
    return torch.rand(3)

_TABLE = torch.arange(100.0)

def rows_of_table(n):
    return _TABLE[:n]

def first_half(x):
    return x[: len(x) // 2]

def doubled(x):
    return {"twice": [x * 2]}

def add_into(layer, x):
    h = layer(layer(x))  # twice: the second time, x reaches the test as an object it has seen before
    h += x  # in place: changes x too when layer returns its input
    return h

def exit_later():
    import os, threading
    threading.Timer(0.2, lambda: os._exit(1)).start()

def garbage():
    import sys
    sys.modules["_gptcourse_agent"].AGENT.sock.sendall(b"not a frame at all" * 10)
    time.sleep(5)
'''


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    folder = tmp_path_factory.mktemp("referee")
    limits = wire.Limits(max_message_bytes=2 * 2**20, max_depth=50)
    k = LearnerKernel(LocalKernelProcess(folder), limits=limits)
    k.start()
    assert k.run_cell(LEARNER_CODE, 60).status == "ok"
    yield k
    k.shutdown()


@pytest.fixture
def ask(kernel):
    """Run ``fn(names)`` in a test session: ``names`` maps each learner name to what the referee gets for it."""
    def run(fn, timeout=30):
        link = kernel.begin_session(time.monotonic() + timeout)
        type(learner).link = link
        try:
            names = link.lookup(["echo", "same", "shared", "append_one", "fill_", "counter", "anything", "always",
                                 "Box", "count", "fails", "apply", "take_two", "loop_forever", "ignore_interrupts",
                                 "square_sum", "detached", "big", "deep", "sparse", "draw", "garbage", "MyError",
                                 "rows_of_table", "first_half", "doubled", "add_into"])
            return fn(names)
        finally:
            type(learner).link = None
            kernel.end_session()
    return run


# --------------------------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------------------------

PLAIN = [None, True, False, 0, -7, 2**200, 1.5, -0.0, math.inf, -math.inf, 3 + 4j, "", "héllo 🙂", "\ud800 lone",
         b"\x00\xff", bytearray(b"ab"), [1, [2, [3]]], (1, (2,)), (), {"a": 1, (1, 2): [3], None: {}}, {1, 2},
         frozenset({"x"}), range(2, 10, 3), slice(1, None, -1), Ellipsis]


def test_plain_values_arrive_with_their_type_and_contents(ask):
    got = ask(lambda n: [n["echo"](value) for value in PLAIN])
    for sent, back in zip(PLAIN, got):
        assert type(back) is type(sent) and back == sent, (sent, back)
    nan = ask(lambda n: n["echo"](math.nan))
    assert math.isnan(nan)
    assert math.copysign(1, got[7]) == -1 and PLAIN[7] == 0.0  # the sign of zero survives


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64,
                                   torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool, torch.complex64])
def test_tensors_of_every_dtype_and_shape(ask, dtype):
    base = torch.arange(24).reshape(2, 3, 4)
    tensors = [base.to(dtype), base.to(dtype)[:, ::2].transpose(0, 2), torch.tensor(5).to(dtype),
               torch.zeros(0, 3, dtype=dtype)]
    got = ask(lambda n: [n["echo"](t) for t in tensors])
    for sent, back in zip(tensors, got):
        assert back.dtype == sent.dtype and back.shape == sent.shape and torch.equal(back, sent)


def test_tensor_flags_numpy_and_torch_types(ask):
    weight = torch.randn(3, requires_grad=True)
    array, scalar = np.arange(6, dtype=np.float32).reshape(2, 3), np.int64(7)
    back = ask(lambda n: n["echo"]([weight, array, scalar, torch.float16, torch.device("cpu"), torch.Size([2, 3])]))
    assert back[0].requires_grad and torch.equal(back[0], weight)
    assert isinstance(back[1], np.ndarray) and back[1].dtype == np.float32 and (back[1] == array).all()
    assert type(back[2]) is np.int64 and back[2] == 7
    assert back[3:] == [torch.float16, torch.device("cpu"), torch.Size([2, 3])]


def test_subclasses_arrive_as_their_plain_base_without_their_behaviour(ask):
    counts, anything, always = ask(lambda n: (n["counter"](), n["anything"](), n["always"]()))
    assert type(counts) is dict and counts["a"] == 5
    assert type(anything) is float and anything == 1.0 and anything != 2.0  # its __eq__ stayed in the kernel
    assert isinstance(always, LearnerObject) and always != 1 and always != always.__class__  # a stand-in
    assert always == always  # identity only


# --------------------------------------------------------------------------------------------------------------------
# Stand-ins, semantics
# --------------------------------------------------------------------------------------------------------------------


def test_stand_ins_behave_like_the_learners_objects(ask):
    def drive(n):
        box = n["Box"](3)
        assert isinstance(box, LearnerObject) and len(box) == 3 and box[2] == 20 and repr(box) == "Box(3)"
        assert box.grow() is box and len(box) == 4 and box.items == [0, 1, 2, 3]
        assert list(n["count"](4)) == [0, 1, 2, 3]
        with pytest.raises(IndexError, match="no item 9"):
            box[9]
        with pytest.raises(TypeError, match="cannot set"):
            box.n = 0
        return box

    stale = ask(drive)
    with pytest.raises(RuntimeError, match="ended"):
        len(stale)  # a stand-in lives for its test cell


def test_exceptions_keep_their_kind_and_say_where(ask):
    def drive(n):
        for kind, expected in [("mine", ValueError), ("todo", NotImplementedError), ("unicode", UnicodeDecodeError)]:
            with pytest.raises(expected) as info:
                n["fails"](kind)
            assert isinstance(info.value, LearnerError) and "in fails, line" in str(info.value)
        with pytest.raises(LearnerError) as info:
            n["fails"]("exit")  # never a SystemExit in the grader
        assert type(info.value).__name__ == "SystemExit" and not isinstance(info.value, SystemExit)
    ask(drive)


def test_in_place_changes_and_identity_survive(ask):
    def drive(n):
        xs, t = [0], torch.zeros(2)
        n["append_one"](xs)
        n["fill_"](t)
        assert xs == [0, 1] and torch.equal(t, torch.ones(2))
        arg = {"k": [1]}
        assert n["same"](arg) is arg
        first = n["shared"]("a")
        second = n["shared"]("b")
        assert first is second and first == {"a": 0, "b": 1}  # one dict in the kernel, one here
    ask(drive)


def test_the_tests_callables_and_iterators_run_here(ask):
    seen = []

    def drive(n):
        assert n["apply"](lambda x: seen.append(x) or x * 2, 5) == 11
        source = iter([7, 8, 9])
        assert n["take_two"](source) == [7, 8] and next(source) == 9  # the learner took exactly two
        # The learner's code calls the test's callable, which calls the learner's code again.
        assert n["apply"](lambda x: n["echo"](x) * 3, 2) == 7
        # A test's callable that returns its argument returns the learner's very object, as Python would.
        x = torch.ones(2)
        n["add_into"](lambda h: h, x)
        assert torch.equal(x, torch.full((2,), 2.0)), "the learner's in-place add reached its own x"
        with pytest.raises(RuntimeError, match="grader's test code"):
            n["apply"](lambda x: 1 / 0, 1)  # the test's exception reaches the learner without its message
    ask(drive)
    assert seen == [5]


def test_gradients_and_seeding_happen_in_the_kernel(ask):
    def drive(n):
        x, w = torch.randn(4, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64, requires_grad=True)
        up = torch.randn(4, dtype=torch.float64)
        out, (grad,) = learner.gradients(n["square_sum"], x, w, wrt=[1], grad_output=up)
        assert torch.allclose(out, (x * w).sum(-1).detach()) and torch.allclose(grad, up @ x)
        _, (none,) = learner.gradients(n["detached"], x, w, wrt=[1], grad_output=up)
        assert none is None
        learner.seed(5)
        first = n["draw"]()
        learner.seed(5)
        assert torch.equal(n["draw"](), first) and not torch.equal(n["draw"](), first)
        # The fingerprint of the kernel's generators moves when learner code draws or reseeds, and only then.
        before = learner.rng_state()
        n["echo"](1)
        assert learner.rng_state() == before
        n["draw"]()
        assert learner.rng_state() != before
        learner.seed(5)
        seeded = learner.rng_state()
        n["draw"]()
        learner.seed(5)
        assert learner.rng_state() == seeded
    ask(drive)


def test_memory_tells_fresh_results_from_views_and_kept_tables(ask):
    def drive(n):
        x = torch.arange(6.0)
        view = learner.memory(n["first_half"], x)
        assert view.shares_arguments and torch.equal(view.result, x[:3])
        fresh = [learner.memory(n["doubled"], x) for _ in range(2)]
        assert not fresh[0].shares_arguments and not fresh[0].overlaps(fresh[1])
        assert torch.equal(fresh[1].result["twice"][0], x * 2)
        table = [learner.memory(n["rows_of_table"], k) for k in (3, 5)]
        assert table[0].overlaps(table[1]) and not table[0].shares_arguments
        empty = learner.memory(n["doubled"], torch.zeros(0))
        assert not empty.shares_arguments and not empty.overlaps(learner.memory(n["doubled"], torch.zeros(0)))
    ask(drive)


# --------------------------------------------------------------------------------------------------------------------
# Misbehaviour: limits, garbage, time
# --------------------------------------------------------------------------------------------------------------------


def test_what_cannot_be_used_fails_the_test_and_the_link_goes_on(ask):
    def drive(n):
        with pytest.raises(ReplyError, match="larger than"):
            n["big"](3 * 2**20)  # over this link's 2 MB
        with pytest.raises(ReplyError, match="nested"):
            n["deep"](200)
        with pytest.raises(ReplyError, match="sparse"):
            n["sparse"]()
        assert n["echo"](41) == 41
    ask(drive)


def test_a_call_past_the_deadline_is_interrupted(ask):
    start = time.monotonic()
    with pytest.raises(CellTimeout):
        ask(lambda n: n["loop_forever"](1), timeout=2)
    assert time.monotonic() - start < 15
    assert ask(lambda n: n["echo"](1)) == 1  # the kernel answers again


def test_garbage_a_stuck_kernel_and_a_kernel_that_died_between_calls_break_the_link(tmp_path):
    def broken(source, timeout):
        k = LearnerKernel(LocalKernelProcess(tmp_path))
        k.start()
        try:
            k.run_cell(LEARNER_CODE, 60)
            link = k.begin_session(time.monotonic() + timeout)
            fn, echo = (link.lookup([source, "echo"])[name] for name in (source, "echo"))
            with pytest.raises(LinkBroken) as info:
                if source == "exit_later":
                    fn()
                    time.sleep(1)
                    echo(1)  # the kernel died between two calls
                else:
                    fn(1) if source != "garbage" else fn()
            return info.value.reason
        finally:
            k.shutdown()

    assert broken("garbage", 10) == "protocol"
    assert broken("ignore_interrupts", 1) == "stuck"
    assert broken("exit_later", 10) == "kernel"


# --------------------------------------------------------------------------------------------------------------------
# The decoder alone: what a hostile kernel could send
# --------------------------------------------------------------------------------------------------------------------

LIMITS = wire.Limits(max_message_bytes=1000, max_depth=5, max_items=100)


@pytest.mark.parametrize("tree, buffers, why", [
    ({"tensor": {"dtype": "float32", "shape": [1000], "device": "cpu", "grad": False, "buffer": 0}}, [b"1234"],
     "bytes"),
    ({"tensor": {"dtype": "object", "shape": [1], "device": "cpu", "grad": False, "buffer": 0}}, [b"x"], "dtype"),
    ({"tensor": {"dtype": "float32", "shape": [-1], "device": "cpu", "grad": False, "buffer": 0}}, [b""], "shape"),
    ({"tensor": {"dtype": "uint8", "shape": [1], "device": "tpu", "grad": False, "buffer": 0}}, [b"x"], "device"),
    ({"ndarray": {"dtype": "|O", "shape": [1], "buffer": 0}}, [b"12345678"], "numpy dtype"),
    ({"bytes": 3}, [b"x"], "missing buffer"),
    ({"dict": [[{"list": []}, 1]]}, [], "key"),
    ({"pickle": "gASVCAAAAAAAAACMBHRleHSULg=="}, [], "unknown"),
    ({"list": [{"list": [{"list": [{"list": [{"list": [{"list": [{"list": [{"list": []}]}]}]}]}]}]}]}, [], "deep"),
    ({"list": list(range(200))}, [], "values"),
    ({"same": 99}, [], "never sent"),
    ([1, 2], [], "not a value"),
])
def test_the_decoder_refuses_malformed_values(tree, buffers, why):
    with pytest.raises(wire.WireError, match=why):
        wire.Decoder(buffers, LIMITS).decode(tree)


def test_frames_over_the_limit_are_read_and_dropped_then_the_next_one_is_fine():
    import socket

    a, b = socket.socketpair()
    with a, b:
        wire.write_frame(a, {"op": "reply", "to": 1}, [b"x" * 5000])
        wire.write_frame(a, {"op": "reply", "to": 2})
        with pytest.raises(wire.TooLarge) as info:
            wire.read_frame(b, LIMITS, time.monotonic() + 5)
        assert info.value.header == {"op": "reply", "to": 1}
        assert wire.read_frame(b, LIMITS, time.monotonic() + 5) == ({"op": "reply", "to": 2}, [])
        a.sendall(b"XXXX" + bytes(12))
        with pytest.raises(wire.WireError, match="not a frame"):
            wire.read_frame(b, LIMITS, time.monotonic() + 5)
