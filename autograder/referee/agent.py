"""The learner's side of the referee protocol: runs inside the learner's kernel and does what the grader asks.

The grader (``link.Link``, in another process) sends requests over a socket and this agent answers them with plain
values (``wire``). It never holds a test, an expected value or a tolerance: only the names a test looks up, the calls
it makes with their arguments, and the learner's answers. Whatever the learner's code does to this agent (replace it,
patch it, read it) changes only what the learner's side answers, which is the learner's own work anyway.

Requests (``op``) and what the reply's payload is:

* ``lookup`` names -> the learner's value for each name its notebook defines (modules excepted);
* ``call`` target, args, kwargs -> the return value; ``getattr``, ``getitem``, ``len``, ``iter``, ``next``,
  ``repr``, ``bool`` -> what Python gives for the learner's object;
* ``gradients`` target, args, kwargs, wrt, grad_output -> (output, the gradients of the ``wrt`` arguments);
* ``seed`` n -> None, after seeding Python's, NumPy's and PyTorch's global generators in the kernel;
* ``rng_state`` -> a fingerprint (a hex string) of those generators' states, to see whether a call used or reset them.
* ``memory`` target, args, kwargs -> (the return value, the memory its tensors occupy, whether that memory is also
  an argument's): to tell a fresh result from a view of an input or of a table the function keeps. The result is kept
  until the session ends, so that a later call cannot reuse its memory.

Values that are not plain (functions, classes, generators, modules, objects) are sent as *handles*: numbers the
grader uses in later requests. An argument the learner's code changed in place is sent back (``mutated``), and a
result that *is* one of the arguments is sent as a reference to it, so the grader's test sees in-place changes and
identity as if it had called the function itself. Callables and iterators that a test passes arrive as stand-ins
(``GraderCallable``, ``GraderIterator``) whose use is a request to the grader.

The grader interrupts a call that runs past its time with SIGINT. Between calls the agent defers SIGINT (it only
notes it), so that an interrupt can never cut a frame in half; during the learner's code it raises
KeyboardInterrupt as usual.

This file is sent into the kernel as source (``kernel.bootstrap_code``) with ``wire``; it imports only the standard
library at the top.
"""

import os
import random
import signal
import socket
import sys
import threading
import traceback

MAX_TEXT = 4000  # characters of an exception message or a repr sent back
OWN_FILES = ("<the grader",)  # the filenames this agent and wire run under in the kernel: not the learner's frames


class _Mode:
    """Which SIGINT handler is in force: deferred during the agent's own work, Python's default in learner code."""

    def __init__(self, agent, learner: bool):
        self.agent, self.learner = agent, learner

    def __enter__(self):
        self.agent._modes.append(self.learner)
        self.agent._apply_mode()
        if self.learner:
            self.agent._interrupted = False

    def __exit__(self, kind, value, tb):
        self.agent._modes.pop()
        interrupted = self.agent._interrupted and not self.learner
        self.agent._apply_mode()
        if interrupted and self.agent._modes and self.agent._modes[-1] and kind is None:
            self.agent._interrupted = False
            raise KeyboardInterrupt  # delivered while the agent talked to the grader inside learner code
        return False


class GraderCallable:
    """A callable of the test's (a function, a module): calling it asks the grader to call it with these values."""

    def __init__(self, agent, remote_id):
        self._agent, self._id = agent, remote_id

    def __call__(self, *args, **kwargs):
        return self._agent.callback("call", self._id, [list(args), kwargs])

    def __repr__(self):
        return "<a callable of the grader's test>"


class GraderIterator:
    """An iterator of the test's: each ``next`` asks the grader for the next item."""

    def __init__(self, agent, remote_id):
        self._agent, self._id = agent, remote_id

    def __iter__(self):
        return self

    def __next__(self):
        return self._agent.callback("next", self._id, [])

    def __repr__(self):
        return "<an iterator of the grader's test>"


class Agent:
    def __init__(self, sock, namespace: dict, wire, max_message_bytes: int):
        self.sock, self.namespace, self.wire = sock, namespace, wire
        self.limits = wire.Limits(max_message_bytes=max_message_bytes)
        self.handles: dict = {}     # handle id -> learner object (kept alive for the test cell)
        self.handle_of: dict = {}   # id(object) -> handle id: the same object always gets the same handle
        self.remotes: dict = {}     # the grader's objects' ids -> their stand-ins
        self.names: dict = {}       # id(object) -> (name, object): the learner's values sent, named for the session
        self.kept: list = []        # results of ``memory`` requests, alive until the session ends
        self.next_id = 1
        self._modes: list[bool] = []
        self._interrupted = False
        self._saved_handler = None
        self.thread, self.pid = threading.get_ident(), os.getpid()

    # --- SIGINT ---------------------------------------------------------------------------------------------------

    def _defer(self, signum, frame):
        self._interrupted = True

    def _apply_mode(self):
        learner = self._modes[-1] if self._modes else False
        signal.signal(signal.SIGINT, signal.default_int_handler if learner else self._defer)

    def learner_code(self):
        return _Mode(self, learner=True)

    def own_work(self):
        return _Mode(self, learner=False)

    # --- serving ------------------------------------------------------------------------------------------------

    def serve(self):
        """Answer the grader's requests until it says ``done``: one test cell. Runs as a kernel execution."""
        self._saved_handler = signal.getsignal(signal.SIGINT)
        try:
            with self.own_work():
                self.send({"op": "ready"})
                while True:
                    header, buffers = self.receive()
                    if header.get("op") == "done":
                        break
                    self.answer(header, buffers)
        finally:
            self.handles.clear()
            self.handle_of.clear()
            self.remotes.clear()
            self.names.clear()
            self.kept.clear()
            signal.signal(signal.SIGINT, self._saved_handler or signal.default_int_handler)

    def send(self, header, buffers=()):
        self.wire.write_frame(self.sock, header, buffers)

    def receive(self):
        return self.wire.read_frame(self.sock, self.limits)

    def answer(self, header, buffers):
        """Do what one request asks and send the reply (an error reply when anything goes wrong)."""
        reply = {"op": "reply", "to": header.get("id")}
        try:
            handler = getattr(self, "op_" + str(header.get("op")), None)
            if handler is None:
                raise ValueError(f"unknown request {header.get('op')!r}")
            decoder = self.wire.Decoder(buffers, self.limits, self.resolve)
            payload = decoder.decode(header.get("payload"))
            snapshots = [self.snapshot(m) for m in decoder.mutables]
            result = handler(*payload)
            refs = {id(m): i for i, m in enumerate(decoder.mutables)}
            encoder = self.wire.Encoder(self.export, refs, self.identify)
            try:
                reply["payload"] = encoder.encode([result])
                reply["mutated"] = {str(i): self.contents(encoder, m) for i, (m, before) in
                                    enumerate(zip(decoder.mutables, snapshots)) if self.snapshot(m) != before}
            except TypeError as exc:
                raise _Unsendable(str(exc)) from None
            reply["ok"] = True
            buffers_out = encoder.buffers
            if self.wire.frame_size(self.wire.dump_header(reply), buffers_out) > self.limits.max_message_bytes:
                raise _TooLarge(self.limits.max_message_bytes)
        except BaseException as exc:  # noqa: BLE001 - whatever the learner's code raised is the answer
            reply = {"op": "reply", "to": header.get("id"), "ok": False, "error": self.describe(exc)}
            buffers_out = []
        self.send(reply, buffers_out)

    # --- the grader's objects -----------------------------------------------------------------------------------

    def resolve(self, tag, payload):
        if tag == "handle":
            if payload not in self.handles:
                raise self.wire.WireError(f"no learner object number {payload!r}")
            return self.handles[payload]
        if tag == "remote" and isinstance(payload, dict) and isinstance(payload.get("id"), int):
            key = payload["id"]
            if key not in self.remotes:
                kind = GraderIterator if payload.get("kind") == "iterator" else GraderCallable
                self.remotes[key] = kind(self, key)
            return self.remotes[key]
        raise self.wire.WireError(f"unknown value type {tag!r}")

    def callback(self, op, remote_id, args):
        """Ask the grader to use one of its objects; answer its own requests meanwhile."""
        if threading.get_ident() != self.thread or os.getpid() != self.pid:
            raise RuntimeError("the grader's objects can be used only from the notebook's main thread")
        with self.own_work():
            request_id, self.next_id = self.next_id, self.next_id + 1
            encoder = self.wire.Encoder(self.export, identify=self.identify)
            header = {"op": op, "id": request_id, "target": remote_id, "payload": encoder.encode(args)}
            self.send(header, encoder.buffers)
            while True:
                reply, buffers = self.receive()
                if reply.get("op") != "reply":
                    self.answer(reply, buffers)  # the grader's code called the learner's again
                    continue
                if reply.get("to") != request_id:
                    raise RuntimeError("the grader answered another question")
                break
        if not reply.get("ok"):
            error = reply.get("error") or {}
            kind = {"StopIteration": StopIteration, "TypeError": TypeError, "ValueError": ValueError,
                    "IndexError": IndexError, "KeyError": KeyError}.get(error.get("type"), RuntimeError)
            raise kind(*([] if kind is StopIteration else [str(error.get("message", ""))[:MAX_TEXT]]))
        def resolve(tag, payload):  # the grader's callable returned one of the arguments it was given
            if tag == "arg" and isinstance(payload, int) and 0 <= payload < len(encoder.mutables):
                return encoder.mutables[payload]
            return self.resolve(tag, payload)

        decoder = self.wire.Decoder(buffers, self.limits, resolve)
        return decoder.decode(reply.get("payload"))[0]

    # --- the learner's objects ----------------------------------------------------------------------------------

    def export(self, obj):
        """A handle for a learner object that is not a plain value (or the grader's own object, sent back)."""
        if isinstance(obj, (GraderCallable, GraderIterator)):
            return {"remote": obj._id}
        if isinstance(obj, _Opaque):
            obj = obj.value
        key = self.handle_of.get(id(obj))
        if key is None:
            key, self.next_id = self.next_id, self.next_id + 1
            self.handles[key], self.handle_of[id(obj)] = obj, key
        kind = "iterator" if hasattr(type(obj), "__next__") else "callable" if callable(obj) else "object"
        return {"handle": {"id": key, "kind": kind, "type": type(obj).__qualname__[:200]}}

    def identify(self, obj):
        """A name for a learner value that may be sent again (a dict a function keeps returning): the grader then
        keeps one object for it. The value is held until the session ends, so that its id is not reused."""
        if id(obj) not in self.names:
            self.names[id(obj)] = (self.next_id, obj)
            self.next_id += 1
        return self.names[id(obj)][0]

    def contents(self, encoder, obj):
        """The value of an argument the learner's code changed in place (its parts may refer to other arguments)."""
        own = encoder.refs.pop(id(obj), None)
        try:
            return encoder.encode(obj)
        finally:
            if own is not None:
                encoder.refs[id(obj)] = own

    def snapshot(self, obj):
        """What is needed to tell whether ``obj`` was changed in place; compared with == before and after a call."""
        torch, np = sys.modules.get("torch"), sys.modules.get("numpy")
        if torch is not None and isinstance(obj, torch.Tensor):
            if obj.device.type == "meta":
                return ("meta", tuple(obj.shape), obj.dtype)
            flat = obj.detach().to("cpu").resolve_conj().resolve_neg().contiguous().reshape(-1)
            return (tuple(obj.shape), obj.dtype, str(obj.device), bytes(flat.view(torch.uint8).numpy().data))
        if np is not None and isinstance(obj, np.ndarray):
            return (obj.shape, obj.dtype.str, obj.tobytes())
        if isinstance(obj, bytearray):
            return bytes(obj)
        if isinstance(obj, dict):
            return tuple((self._key(k), self._key(v)) for k, v in obj.items())
        if isinstance(obj, set):
            return frozenset(self._key(x) for x in obj)
        return tuple(self._key(x) for x in obj)  # a list

    def _key(self, x):
        if self.wire.is_mutable(x):
            return ("same object", id(x))
        if isinstance(x, tuple):
            return ("tuple", tuple(self._key(i) for i in x))
        if type(x) in (int, float, complex, str, bytes, bool, type(None)):
            return (type(x).__name__, repr(x))
        return ("same object", id(x))

    def describe(self, exc: BaseException) -> dict:
        """An exception raised while answering, as the grader sees it: its type, message and the learner's frames."""
        if isinstance(exc, (_TooLarge, _Unsendable)):
            return {"type": type(exc).__name__.strip("_"), "bases": [], "message": str(exc), "where": ""}
        try:
            message = str(exc)[:MAX_TEXT]
        except BaseException:  # noqa: BLE001 - a learner's __str__ may fail too
            message = f"<{type(exc).__name__} whose message cannot be shown>"
        bases = [k.__name__ for k in type(exc).__mro__ if k.__module__ == "builtins"]
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(OWN_FILES)]
        where = "; ".join(f"in {f.name}, line {f.lineno}: {(f.line or '').strip()[:160]}" for f in frames[-3:])
        return {"type": type(exc).__name__[:100], "bases": bases, "message": message, "where": where[:MAX_TEXT]}

    # --- the requests -------------------------------------------------------------------------------------------

    def op_lookup(self, names):
        found = {}
        for name in names:
            if not isinstance(name, str) or name not in self.namespace:
                continue
            value = self.namespace[name]
            if type(value).__name__ == "module":
                continue  # a test imports what it uses; the learner's modules are not the grader's
            try:
                self.wire.Encoder(self.export).encode(value)
            except TypeError:  # a tensor of a dtype that does not travel, say: the test can still drive it
                value = _Opaque(value)
            found[name] = value
        return found

    def op_call(self, target, args, kwargs):
        with self.learner_code():
            return target(*args, **kwargs)

    def op_getattr(self, target, name):
        if not isinstance(name, str) or name.startswith("__"):
            raise AttributeError(f"the grader does not read {name!r}")
        with self.learner_code():
            return getattr(target, name)

    def op_getitem(self, target, key):
        with self.learner_code():
            return target[key]

    def op_len(self, target):
        with self.learner_code():
            return len(target)

    def op_iter(self, target):
        with self.learner_code():
            return iter(target)

    def op_next(self, target):
        with self.learner_code():
            return next(target)

    def op_bool(self, target):
        with self.learner_code():
            return bool(target)

    def op_repr(self, target):
        with self.learner_code():
            text = repr(target)
        return str(text)[:MAX_TEXT]

    def op_gradients(self, target, args, kwargs, wrt, grad_output):
        import torch

        inputs = []
        for index in wrt:
            tensor = args[index]
            if not isinstance(tensor, torch.Tensor) or not (tensor.is_floating_point() or tensor.is_complex()):
                raise TypeError(f"argument {index} is not a floating-point tensor: no gradient can be taken")
            inputs.append(tensor.requires_grad_(True))
        with self.learner_code():
            output = target(*args, **kwargs)
            grads = [None] * len(inputs)
            if isinstance(output, torch.Tensor) and output.requires_grad:
                grads = list(torch.autograd.grad(output, inputs, grad_outputs=grad_output, allow_unused=True))
        if isinstance(output, torch.Tensor):
            output = output.detach()
        return [output, grads]

    def op_seed(self, seed):
        random.seed(seed)
        for name in ("numpy", "torch"):
            module = sys.modules.get(name)
            if module is not None:
                (module.random.seed if name == "numpy" else module.manual_seed)(seed)


    def op_rng_state(self):
        import hashlib

        digest = hashlib.sha256(repr(random.getstate()).encode())
        numpy, torch = sys.modules.get("numpy"), sys.modules.get("torch")
        if numpy is not None:
            kind, keys, *rest = numpy.random.get_state()
            digest.update(repr((kind, keys.tolist(), rest)).encode())
        if torch is not None:
            digest.update(torch.get_rng_state().numpy().tobytes())
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                digest.update(b"".join(state.numpy().tobytes() for state in torch.cuda.get_rng_state_all()))
        return digest.hexdigest()


    def op_memory(self, target, args, kwargs):
        with self.learner_code():
            result = target(*args, **kwargs)
        self.kept.append(result)
        regions = _storages(result)
        return [result, sorted(regions), bool(regions & _storages([args, kwargs]))]


def _storages(value, depth=0) -> set:
    """(start, end) addresses of the whole storage of every tensor in ``value`` (in lists, tuples, dicts)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        if value.device.type == "meta":
            return set()
        storage = value.untyped_storage()
        if storage.nbytes() == 0:  # empty tensors hold no memory to share (their address may be 0 for all)
            return set()
        return {(storage.data_ptr(), storage.data_ptr() + storage.nbytes())}
    if depth > 8 or not isinstance(value, (list, tuple, dict)):
        return set()
    items = value.values() if isinstance(value, dict) else value
    return set().union(*(_storages(item, depth + 1) for item in items))


class _TooLarge(Exception):
    def __init__(self, limit):
        super().__init__(f"the result is larger than the {limit / 2**20:.0f} MB the grader accepts")


class _Unsendable(Exception):
    """The learner's result (or an argument it changed) is of a kind that cannot travel."""


class _Opaque:
    """Wraps a value that looks plain but cannot travel, so that it goes as a handle to the value itself."""

    def __init__(self, value):
        self.value = value


def connect(address, token: str, namespace: dict, wire, max_message_bytes: int) -> Agent:
    """Connect to the grader at ``address`` (a path: a Unix socket; a (host, port) pair: TCP) and say ``token``."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.connect(address if isinstance(address, str) else tuple(address))
    agent = Agent(sock, namespace, wire, max_message_bytes)
    agent.send({"op": "hello", "token": token})
    return agent
