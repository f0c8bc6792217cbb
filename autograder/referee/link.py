"""The grader's end of the referee protocol: what a test cell's names, calls and values turn into.

A test cell runs in the grader's process. Each name it uses that the learner's notebook defines is given to it as
the learner's *value* (a copy: lists, dicts, tensors, numbers, strings...) or, for anything else (functions,
classes, generators, objects), as a ``LearnerObject``: a stand-in whose calls, attributes, items, ``len``,
iteration and ``repr`` are requests to the agent in the learner's kernel (``agent.py``), answered with values or
further stand-ins. So a test reads as if it called the learner's code directly::

    got = count_pairs([1, 2, 1, 2])          # count_pairs is a LearnerObject; got is a plain dict, built here
    assert got == {(1, 2): 2, (2, 1): 1}     # decided here, with the grader's own ==, never in the learner's kernel

What a test sends the learner's code is copied too, with three conveniences that keep Python's semantics: an argument
the learner's code changes in place is changed here the same way; a result that *is* one of the arguments is that
very object; and a result that is the same object as an earlier one (a dict the learner's function keeps returning)
is the same object here, updated to what it holds now. Callables and
iterators of the test (a lambda, a ``torch.nn.Module``, a counting iterator) are not sent: the learner's code gets a
stand-in, and each use of it comes back here and runs the test's own object. A learner's exception arrives as an
exception of the same builtin kind (``IndexError``, ``NotImplementedError``...), named as the learner's was.

Replies are read with ``wire.Decoder`` and its limits; a reply that breaks them raises ``ReplyError`` in the test (the
test fails with a clear message). A call that runs past the test cell's deadline is interrupted; the test then ends
with ``CellTimeout``. A kernel that dies, stops answering, or breaks the protocol ends it with ``LinkBroken``.
"""

from __future__ import annotations

import builtins
import time
from dataclasses import dataclass

from autograder.referee import wire

#: Seconds a learner's call gets to answer after it was interrupted at its deadline; then the kernel counts as stuck.
GRACE_S = 10.0
MAX_TEXT = 4000


class CellTimeout(BaseException):
    """The test cell's time ran out while the learner's code was running (it was interrupted). A BaseException: a
    test's ``except Exception`` must not swallow it."""


class LinkBroken(BaseException):
    """The learner's kernel died, stopped answering, or broke the protocol; ``reason``: kernel, stuck or protocol."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


class ReplyError(Exception):
    """The learner's side answered something the grader cannot use (malformed, too large, of a kind that does not
    travel). The test fails with this message; the link stays usable."""


class LearnerError(Exception):
    """Base of the exceptions that the learner's code raised; each is also an instance of the builtin kind it was
    (``except IndexError`` in a test catches the learner's IndexError)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


_LEARNER_CLASSES: dict[tuple[str, type], type] = {}
#: Builtin kinds a learner's exception can take here. BaseException-only kinds (SystemExit...) become plain errors.
_USABLE = {name: k for name, k in vars(builtins).items()
           if isinstance(k, type) and issubclass(k, Exception) and not issubclass(k, Warning)}


def learner_exception(error: dict) -> Exception:
    """The exception to raise in the test for the learner's exception described by ``error`` (``agent.describe``)."""
    if not isinstance(error, dict):
        return ReplyError("the learner's side sent an error the grader cannot read")
    name = str(error.get("type", "Exception"))[:100] or "Exception"
    message = str(error.get("message", ""))[:MAX_TEXT]
    if name in ("TooLarge", "Unsendable"):
        return ReplyError(f"your code's result cannot be sent to the grader: {message}")
    if name == "StopIteration":
        return StopIteration()
    bases = [b for b in error.get("bases", []) if isinstance(b, str)]
    base = next((_USABLE[b] for b in [name, *bases] if b in _USABLE), Exception)
    key = (name, base)
    if key not in _LEARNER_CLASSES:
        _LEARNER_CLASSES[key] = type(name if name.isidentifier() else "Exception", (LearnerError, base),
                                     {"__module__": "learner"})
    cls = _LEARNER_CLASSES[key]
    where = str(error.get("where", ""))[:MAX_TEXT]
    exc = cls.__new__(cls)
    exc.args = (message + (f"\n    (raised by your code {where})" if where else ""),)
    return exc


class LearnerObject:
    """Stands for an object in the learner's kernel. Equality is identity; everything else is a request."""

    __slots__ = ("_gptcourse_link", "_gptcourse_id", "_gptcourse_kind", "_gptcourse_type", "_gptcourse_session")

    def __init__(self, link, handle_id: int, kind: str, type_name: str):
        for name, value in zip(self.__slots__, (link, handle_id, kind, type_name, link.session)):
            object.__setattr__(self, name, value)

    def _ask(self, op, *items):
        return self._gptcourse_link.request(op, self, *items)

    def __call__(self, *args, **kwargs):
        return self._ask("call", list(args), kwargs)

    def __getattr__(self, name):
        if name.startswith("__") or name.startswith("_gptcourse"):
            raise AttributeError(name)
        return self._ask("getattr", name)

    def __setattr__(self, name, value):
        raise TypeError(f"a test cannot set {name!r} on the learner's {self._gptcourse_type}: it holds a stand-in. "
                        "Change the learner's object through its methods (load_state_dict, train(), ...).")

    def __getitem__(self, key):
        return self._ask("getitem", key)

    def __len__(self):
        n = self._ask("len")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ReplyError(f"len() of the learner's {self._gptcourse_type} is not a non-negative int: {n!r}")
        return n

    def __iter__(self):
        return self._ask("iter")

    def __next__(self):
        return self._ask("next")

    def __bool__(self):
        answer = self._ask("bool")
        if not isinstance(answer, bool):
            raise ReplyError(f"bool() of the learner's {self._gptcourse_type} is not a bool")
        return answer

    def __repr__(self):
        try:
            text = self._ask("repr")
        except Exception:  # noqa: BLE001 - a repr must not fail the test's message
            text = None
        return text if isinstance(text, str) else f"<the learner's {self._gptcourse_type}>"

    __str__ = __repr__

    def __eq__(self, other):
        return self is other

    def __hash__(self):
        return id(self)


class Link:
    """The grader's end of the socket to one kernel's agent. One *session* per test cell (``begin``/``end``)."""

    def __init__(self, sock, limits: wire.Limits | None = None, interrupt=None, on_wait=None):
        self.sock = sock
        self.limits = limits or wire.Limits()
        self.interrupt = interrupt or (lambda: None)  # sends SIGINT to the kernel
        self.on_wait = on_wait  # runs while waiting: drains the kernel's output, raises LinkBroken if it died
        self.next_id = 1
        self.session = 0
        self.deadline: float | None = None
        self.timed_out = False
        self.proxies: dict[int, LearnerObject] = {}
        self.exported: dict[int, object] = {}
        self.identities: dict[int, object] = {}  # the learner's objects, by name: one object here for each there
        self.open = False

    # --- sessions -----------------------------------------------------------------------------------------------

    def begin(self, deadline: float) -> None:
        """Start a test cell's session: the agent (started by a kernel execution) says it is ready."""
        self.session += 1
        self.deadline, self.timed_out = deadline, False
        self.proxies, self.exported, self.identities = {}, {}, {}
        header, _ = self._receive()
        if header.get("op") != "ready":
            raise LinkBroken("protocol", f"expected the agent to be ready, got {str(header.get('op'))[:40]!r}")
        self.open = True

    def end(self) -> None:
        """End the session (the agent's execution returns). Stand-ins of this session stop working."""
        if self.open:
            self.open = False
            self._send({"op": "done"})

    # --- requests -----------------------------------------------------------------------------------------------

    def lookup(self, names: list[str]) -> dict:
        """The learner's values (or stand-ins) for those of ``names`` that the notebook defines."""
        found = self.request("lookup", None, sorted(names))
        if not isinstance(found, dict) or not all(isinstance(k, str) for k in found):
            raise ReplyError("the learner's side answered a name look-up with something else")
        return {k: v for k, v in found.items() if k in names}

    def request(self, op: str, target, *items):
        """Ask the agent for ``op`` on ``target`` (a LearnerObject or None); its answer as a value here."""
        if not self.open:
            raise RuntimeError("this stand-in for a learner object belongs to a test cell that has ended")
        if isinstance(target, LearnerObject) and target._gptcourse_session != self.session:
            raise RuntimeError(f"the learner's {target._gptcourse_type} belongs to an earlier test cell")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise CellTimeout("the test cell's time ran out")
        request_id, self.next_id = self.next_id, self.next_id + 1
        encoder = wire.Encoder(self.export)
        header = {"op": op, "id": request_id, "payload": encoder.encode([target, *items] if target is not None
                                                                        else list(items))}
        self._send(header, encoder.buffers)
        while True:
            try:
                reply, buffers = self._receive()
            except wire.TooLarge as exc:
                if exc.header is not None and exc.header.get("to") == request_id:
                    raise ReplyError(f"your code's answer is too large for the grader ({exc})") from None
                raise LinkBroken("protocol", str(exc)) from None
            if reply.get("op") != "reply":
                self._serve_callback(reply, buffers)
                continue
            if reply.get("to") != request_id:
                raise LinkBroken("protocol", "an answer to a question the grader did not ask")
            if self.timed_out:
                raise CellTimeout("the test cell's time ran out while the learner's code was running")
            return self._result(reply, buffers, encoder)

    def _result(self, reply: dict, buffers: list, request: wire.Encoder):
        if not reply.get("ok"):
            raise learner_exception(reply.get("error"))

        def resolve(tag, payload):
            if tag == "arg" and isinstance(payload, int) and 0 <= payload < len(request.mutables):
                return request.mutables[payload]
            return self.resolve(tag, payload)

        decoder = wire.Decoder(buffers, self.limits, resolve, self.identities)
        try:
            (value,) = decoder.decode(reply.get("payload"))
            mutated = reply.get("mutated") or {}
            if not isinstance(mutated, dict):
                raise wire.WireError("changed arguments that are not a mapping")
            changes = []
            for key in sorted(mutated, key=lambda k: int(k) if str(k).isdigit() else -1):
                index = int(key) if str(key).isdigit() else -1
                if not 0 <= index < len(request.mutables):
                    raise wire.WireError(f"a change to argument number {key!r}, which does not exist")
                changes.append((request.mutables[index], decoder.decode(mutated[key])))
        except (wire.WireError, ValueError, TypeError) as exc:
            raise ReplyError(f"the learner's side answered with a value the grader cannot read ({exc})") from None
        for old, new in changes:
            wire.update_in_place(old, new)
        return value

    # --- the other direction: the learner's code uses the test's callables and iterators ------------------------

    def export(self, obj):
        if isinstance(obj, LearnerObject):
            if obj._gptcourse_link is not self or obj._gptcourse_session != self.session:
                raise RuntimeError("a stand-in for a learner object of another test cell cannot be sent")
            return {"handle": obj._gptcourse_id}
        if hasattr(type(obj), "__next__"):
            kind = "iterator"
        elif callable(obj):
            kind = "callable"
        else:
            raise TypeError(f"a test can pass the learner's code plain values, callables and iterators, not a "
                            f"{type(obj).__name__}")
        key = id(obj)
        self.exported[key] = obj
        return {"remote": {"id": key, "kind": kind}}

    def resolve(self, tag, payload):
        if tag == "handle" and isinstance(payload, dict):
            key, kind, type_name = payload.get("id"), payload.get("kind"), payload.get("type")
            if not (isinstance(key, int) and kind in ("callable", "iterator", "object") and isinstance(type_name, str)):
                raise wire.WireError("a learner object described wrongly")
            if key not in self.proxies:
                self.proxies[key] = LearnerObject(self, key, kind, type_name[:200])
            return self.proxies[key]
        if tag == "remote" and payload in self.exported:
            return self.exported[payload]
        raise wire.WireError(f"unknown value type {tag!r}")

    def _serve_callback(self, header: dict, buffers: list) -> None:
        """Run one of the test's own callables or iterators for the learner's code, and answer."""
        reply = {"op": "reply", "to": header.get("id")}
        out_buffers: list = []
        try:
            if self.timed_out:
                raise RuntimeError("the test's time is up")
            target = self.exported.get(header.get("target"))
            if target is None or header.get("op") not in ("call", "next"):
                raise LinkBroken("protocol", "the learner's side asked for something the grader never gave it")
            decoder = wire.Decoder(buffers, self.limits, self.resolve, self.identities)
            payload = decoder.decode(header.get("payload"))
            if header["op"] == "next":
                value = next(target)
            else:
                args, kwargs = payload
                if not isinstance(args, list) or not isinstance(kwargs, dict):
                    raise wire.WireError("a call without a list of arguments and a dict of keywords")
                value = target(*args, **kwargs)
            # A callable that returns one of its arguments returns that very object to the learner's code, as in
            # Python (a sub-layer `lambda h: h` hands back the learner's own tensor).
            encoder = wire.Encoder(self.export, refs={id(m): i for i, m in enumerate(decoder.mutables)})
            reply.update(ok=True, payload=encoder.encode([value]))
            out_buffers = encoder.buffers
        except (CellTimeout, LinkBroken):
            raise
        except wire.WireError as exc:
            raise LinkBroken("protocol", str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - the kind goes back; the message may hold a test's secrets
            reply.update(ok=False, error={"type": type(exc).__name__ if type(exc).__name__ in _USABLE or
                                          isinstance(exc, StopIteration) else "RuntimeError",
                                          "message": "raised by the grader's test code (its message is not shown)"})
            out_buffers = []
        self._send(reply, out_buffers)

    # --- sending and waiting ------------------------------------------------------------------------------------

    def _send(self, header: dict, buffers=()) -> None:
        """Write a frame; a kernel that is gone (a broken pipe) ends the link, as when it dies during a call."""
        try:
            wire.write_frame(self.sock, header, buffers)
        except OSError:
            self._closed()

    def _closed(self):
        """The connection broke: LinkBroken("kernel") once the kernel is seen dead, else "protocol"."""
        end = time.monotonic() + 3  # a kernel that just died may take a moment to be seen dead
        while self.on_wait is not None and time.monotonic() < end:
            self.on_wait()  # raises LinkBroken("kernel") once the kernel is gone
            time.sleep(0.05)
        raise LinkBroken("protocol", "the learner's kernel closed the grader's connection")

    def _receive(self) -> tuple[dict, list]:
        """The next frame; at the deadline the kernel is interrupted and gets ``GRACE_S`` more to answer."""
        while True:
            try:
                return wire.read_frame(self.sock, self.limits, self.deadline, self.on_wait)
            except wire.Timeout:
                if self.timed_out or self.deadline is None:
                    raise LinkBroken("stuck", "the learner's code did not stop when it was interrupted") from None
                self.timed_out = True
                self.interrupt()
                self.deadline = time.monotonic() + GRACE_S
            except (wire.LinkClosed, ConnectionError):
                self._closed()
            except wire.TooLarge:
                raise
            except wire.WireError as exc:
                raise LinkBroken("protocol", str(exc)) from None


@dataclass(frozen=True)
class Memory:
    """What ``learner.memory`` found: the result, the address ranges of its tensors' storages in the kernel, and
    whether one of them is an argument's storage."""

    result: object
    regions: frozenset
    shares_arguments: bool

    def overlaps(self, other: "Memory") -> bool:
        return any(start < other_end and other_start < end
                   for start, end in self.regions for other_start, other_end in other.regions)


class LearnerSide:
    """What a test can ask of the learner's kernel besides calling its code: ``from autograder.referee import
    learner``."""

    link: Link | None = None

    def _link(self) -> Link:
        if self.link is None or not self.link.open:
            raise RuntimeError("autograder.referee.learner works only inside a test cell that the grader runs")
        return self.link

    def gradients(self, fn, *args, wrt, grad_output=None, **kwargs):
        """``fn(*args, **kwargs)`` in the learner's kernel, then the gradients of its output (weighted by
        ``grad_output``, as in ``torch.autograd.grad``) with respect to the positional arguments numbered in
        ``wrt``: returns ``(output, [gradient or None, ...])``. A gradient is None when it does not reach that
        argument (the learner detached it, say)."""
        if not isinstance(fn, LearnerObject):
            raise TypeError("learner.gradients takes one of the learner's functions")
        output, grads = self._link().request("gradients", fn, list(args), kwargs, list(wrt), grad_output)
        if not isinstance(grads, list) or len(grads) != len(wrt):
            raise ReplyError("the learner's side did not send one gradient per argument")
        return output, grads

    def seed(self, seed: int) -> None:
        """Seed Python's, NumPy's and PyTorch's global random generators in the learner's kernel."""
        self._link().request("seed", None, int(seed))

    def memory(self, fn, *args, **kwargs) -> "Memory":
        """``fn(*args, **kwargs)`` in the learner's kernel, and where its tensors live there: ``.result`` (a copy, as
        usual), ``.shares_arguments`` (a result tensor is, or is a view of, an argument) and ``.overlaps(other)``
        (two results share memory: one table handed out twice, or slices of one cached table). Results are kept
        alive in the kernel until the test cell ends, so two calls cannot land on reused memory by chance."""
        if not isinstance(fn, LearnerObject):
            raise TypeError("learner.memory takes one of the learner's functions")
        result, regions, shares = self._link().request("memory", fn, list(args), kwargs)
        if not isinstance(regions, list) or not isinstance(shares, bool):
            raise ReplyError("the learner's side did not say where its result lives")
        return Memory(result, frozenset(tuple(region) for region in regions), shares)

    def rng_state(self) -> str:
        """A fingerprint of the kernel's global random generators (Python's, NumPy's, PyTorch's): equal before and
        after a call when the call neither drew from them nor reseeded them."""
        state = self._link().request("rng_state", None)
        if not isinstance(state, str):
            raise ReplyError("the learner's side did not send a fingerprint of its random state")
        return state
