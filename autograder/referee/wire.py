"""The referee's wire format: plain values in length-prefixed frames, between the grader and the learner's kernel.

A frame is ``b"GPTR"``, the number of buffers (4 bytes), the header's length (8 bytes), the header (JSON), then each
buffer as its length (8 bytes) and its bytes. The header is a JSON object; the values in it are encoded as a tree in
which every JSON object is a *tag* naming a type (``{"list": [...]}``, ``{"tensor": {...}}``, ...) and the raw bytes
of tensors, arrays and ``bytes`` are buffers, referred to by index. ``Encoder`` lists the types.

Nothing is unpickled and nothing a frame says is executed. ``Decoder`` rebuilds only the listed types, after checking
every size against ``Limits``; a frame or value that breaks a rule raises ``WireError``. Anything else (a learner's
function, a generator, a module) never travels: ``Encoder`` hands it to its ``export`` function, which replaces it by
a *handle* tag that the other side can only use through further requests.

This file is also sent, as source, into the learner's kernel (``agent.py``), so it imports only the standard library
at the top; torch and numpy are used when a value of theirs appears.
"""

from __future__ import annotations

import json
import select
import struct
import sys
import time

MAGIC = b"GPTR"
_HEAD = struct.Struct(">4sIQ")
_LEN = struct.Struct(">Q")
TENSOR_DTYPES = ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
                 "complex64", "complex128")
NUMPY_KINDS = "biufc"  # booleans, integers, floats, complex numbers: arrays of objects or strings never travel
MAX_DIMS = 32


class Limits:
    """What a frame may hold. The grader sets them for what the learner sends; both sides check before sending."""

    def __init__(self, max_message_bytes=256 * 2**20, max_depth=100, max_items=2_000_000, max_buffers=100_000):
        self.max_message_bytes = max_message_bytes
        self.max_depth = max_depth
        self.max_items = max_items
        self.max_buffers = max_buffers


class WireError(Exception):
    """A frame or a value that breaks the format or a limit."""


class TooLarge(WireError):
    """A frame over ``Limits.max_message_bytes``; it was read to its end and dropped, so the link is still usable.
    ``header`` is the frame's header when it was small enough to keep, else None."""

    def __init__(self, message: str, header: dict | None = None):
        super().__init__(message)
        self.header = header


class LinkClosed(WireError):
    """The other side closed the connection (or died) before a whole frame arrived."""


class Timeout(WireError):
    """The deadline passed before a whole frame arrived."""


# --------------------------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------------------------


def _torch():
    return sys.modules.get("torch")


def _numpy():
    return sys.modules.get("numpy")


def is_mutable(value) -> bool:
    """The kinds of value whose identity and in-place changes the protocol keeps track of."""
    torch, np = _torch(), _numpy()
    return (isinstance(value, (list, dict, set, bytearray)) or (torch is not None and isinstance(value, torch.Tensor))
            or (np is not None and isinstance(value, np.ndarray)))


class Encoder:
    """Turns a value into a JSON tree plus buffers.

    Plain values: None, bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset, range,
    slice, Ellipsis, torch.Tensor (any of ``TENSOR_DTYPES``, any device), torch.dtype, torch.device, torch.Size,
    numpy arrays and scalars of booleans and numbers. A subclass travels as its base type, without its behaviour
    (a ``Counter`` arrives as a dict, a ``float`` subclass as a float). Everything else goes to ``export(value)``,
    which returns a handle tag, or raises ``TypeError`` when there is none.

    ``mutables`` lists the lists, dicts, sets, bytearrays, tensors and arrays in the order they were encoded; the
    ``Decoder`` on the other side lists what it builds in the same order, so "the n-th one" names the same object on
    both sides (see ``agent.Agent`` for identity and in-place changes).
    """

    def __init__(self, export=None, refs=None, identify=None):
        self.buffers: list = []
        self.mutables: list = []
        self.export = export
        self.refs = refs or {}  # id(object) -> index: objects that go back as {"arg": index}
        self.identify = identify  # object -> a token naming it for the whole session, or None
        self._active: set = set()
        self._done: set = set()

    def encode(self, value):
        if value is None or value is Ellipsis:
            return None if value is None else {"ellipsis": 0}
        if is_mutable(value):
            if id(value) in self.refs:
                return {"arg": self.refs[id(value)]}
            token = self.identify(value) if self.identify is not None else None
            if token is not None:
                if token in self._done:
                    self.mutables.append(value)  # counted as the decoder counts it, so {"arg": i} still lines up
                    return {"same": token}
                if token in self._active:
                    raise TypeError("a value that contains itself cannot be sent")
                self._active.add(token)
                inner = self._encode(value)
                self._active.discard(token)
                self._done.add(token)
                return {"obj": [token, inner]}
        return self._encode(value)

    def _encode(self, value):
        torch, np = _torch(), _numpy()
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return int.__int__(value)
        if isinstance(value, float):
            return float.__float__(value)
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, complex):
            return {"complex": [value.real, value.imag]}
        if isinstance(value, (bytes, bytearray)):
            if isinstance(value, bytearray):
                self.mutables.append(value)
            return {"bytearray" if isinstance(value, bytearray) else "bytes": self._buffer(bytes(value))}
        if torch is not None:
            if isinstance(value, torch.Tensor):
                self.mutables.append(value)
                return {"tensor": self._tensor(value, torch)}
            if isinstance(value, torch.dtype):
                return {"torch_dtype": str(value).replace("torch.", "")}
            if isinstance(value, torch.device):
                return {"torch_device": str(value)}
            if isinstance(value, torch.Size):
                return {"torch_size": [int(n) for n in value]}
        if np is not None and isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in NUMPY_KINDS:
            return self._numpy(value, np)
        if isinstance(value, (list, tuple, set, frozenset)):
            kind = next(k for k in (list, tuple, set, frozenset) if isinstance(value, k))
            if kind is list or kind is set:
                self.mutables.append(value)
            return {kind.__name__: [self.encode(item) for item in value]}
        if isinstance(value, dict):
            self.mutables.append(value)
            return {"dict": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        if isinstance(value, range):
            return {"range": [value.start, value.stop, value.step]}
        if isinstance(value, slice):
            return {"slice": [self.encode(value.start), self.encode(value.stop), self.encode(value.step)]}
        if self.export is None:
            raise TypeError(f"a {type(value).__name__} cannot be sent")
        return self.export(value)

    def _buffer(self, data) -> int:
        self.buffers.append(data)
        return len(self.buffers) - 1

    def _tensor(self, t, torch) -> dict:
        dtype = str(t.dtype).replace("torch.", "")
        if dtype not in TENSOR_DTYPES:
            raise TypeError(f"a tensor of dtype {dtype} cannot be sent (only {', '.join(TENSOR_DTYPES)})")
        if t.layout != torch.strided:
            raise TypeError(f"a {t.layout} tensor cannot be sent; make it dense first (.to_dense())")
        info = {"dtype": dtype, "shape": list(t.shape), "device": str(t.device), "grad": bool(t.requires_grad),
                "buffer": None}
        if t.device.type != "meta":
            flat = t.detach().to("cpu").resolve_conj().resolve_neg().contiguous().reshape(-1)
            info["buffer"] = self._buffer(flat.view(torch.uint8).numpy().data if flat.numel() else b"")
        return info

    def _numpy(self, a, np) -> dict:
        if isinstance(a, np.ndarray):
            self.mutables.append(a)
            data = np.ascontiguousarray(a)
            return {"ndarray": {"dtype": a.dtype.str, "shape": list(a.shape), "buffer": self._buffer(data.tobytes())}}
        return {"numpy_scalar": {"dtype": a.dtype.str, "buffer": self._buffer(a.tobytes())}}


class Decoder:
    """Rebuilds values from a JSON tree and buffers, checking every rule; raises ``WireError`` on the first break.

    ``resolve(tag, payload)`` turns the tags that are not plain values (handles, references to arguments) into
    objects; without it they are refused."""

    PLAIN_TAGS = {"list", "tuple", "set", "frozenset", "dict", "bytes", "bytearray", "complex", "tensor", "ndarray",
                  "numpy_scalar", "torch_dtype", "torch_device", "torch_size", "range", "slice", "ellipsis", "obj",
                  "same"}

    def __init__(self, buffers, limits: Limits, resolve=None, identities: dict | None = None):
        self.buffers = buffers
        self.limits = limits
        self.resolve = resolve
        self.identities = identities if identities is not None else {}  # token -> the object built for it
        self.items = 0
        self.mutables: list = []

    def decode(self, tree, depth: int = 0):
        self.items += 1
        if self.items > self.limits.max_items:
            raise WireError(f"more than {self.limits.max_items:,} values in one message")
        if depth > self.limits.max_depth:
            raise WireError(f"values nested more than {self.limits.max_depth} deep")
        if tree is None or isinstance(tree, (bool, int, float, str)):
            return tree
        if not isinstance(tree, dict) or len(tree) != 1:
            raise WireError(f"not a value: {type(tree).__name__}")
        ((tag, payload),) = tree.items()
        if tag not in self.PLAIN_TAGS:
            if self.resolve is None:
                raise WireError(f"unknown value type {tag!r}")
            return self.resolve(tag, payload)
        return getattr(self, "_" + tag)(payload, depth + 1)

    def _obj(self, payload, depth):
        """A mutable value with its session-wide name: the object built for that name before, if any, is updated
        in place and returned (the learner's code returned the same object again), else a new one is kept."""
        if not (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[0], int)
                and isinstance(payload[1], dict) and len(payload[1]) == 1
                and next(iter(payload[1])) in ("list", "dict", "set", "bytearray", "tensor", "ndarray")):
            raise WireError("a named value that is not [name, a list, dict, set, bytearray, tensor or array]")
        token, value = payload[0], self.decode(payload[1], depth)
        old = self.identities.get(token)
        if old is None:
            self.identities[token] = value
            return value
        if type(old) is not type(value):
            raise WireError("a named value that changed its type")
        update_in_place(old, value)
        self._stands_for(value, old)
        return old

    def _same(self, token, depth):
        if not isinstance(token, int) or token not in self.identities:
            raise WireError(f"a reference to a value never sent: {token!r}")
        self.mutables.append(self.identities[token])
        return self.identities[token]

    def _stands_for(self, decoded, kept) -> None:
        """``kept`` is the object the receiver uses for ``decoded``: list it in its place among the mutables."""
        for index in range(len(self.mutables) - 1, -1, -1):
            if self.mutables[index] is decoded:
                self.mutables[index] = kept
                return

    def _items(self, payload, depth):
        if not isinstance(payload, list):
            raise WireError("a sequence that is not a list")
        return [self.decode(item, depth) for item in payload]

    def _list(self, payload, depth):
        out: list = []
        self.mutables.append(out)
        out.extend(self._items(payload, depth))
        return out

    def _tuple(self, payload, depth):
        return tuple(self._items(payload, depth))

    def _set(self, payload, depth):
        out: set = set()
        self.mutables.append(out)
        out.update(self._hashable(item) for item in self._items(payload, depth))
        return out

    def _frozenset(self, payload, depth):
        return frozenset(self._hashable(item) for item in self._items(payload, depth))

    def _dict(self, payload, depth):
        out: dict = {}
        self.mutables.append(out)
        if not isinstance(payload, list):
            raise WireError("a dict that is not a list of pairs")
        for pair in payload:
            if not isinstance(pair, list) or len(pair) != 2:
                raise WireError("a dict entry that is not a pair")
            key = self._hashable(self.decode(pair[0], depth))
            out[key] = self.decode(pair[1], depth)
        return out

    @staticmethod
    def _hashable(value):
        try:
            hash(value)
        except TypeError:
            raise WireError(f"a {type(value).__name__} as a dict key or set item") from None
        return value

    def _buffer(self, index):
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(self.buffers):
            raise WireError(f"a reference to a missing buffer: {index!r}")
        return self.buffers[index]

    def _bytes(self, payload, depth):
        return bytes(self._buffer(payload))

    def _bytearray(self, payload, depth):
        out = bytearray(self._buffer(payload))
        self.mutables.append(out)
        return out

    def _complex(self, payload, depth):
        if not (isinstance(payload, list) and len(payload) == 2 and all(type(x) in (int, float) for x in payload)):
            raise WireError("a complex number that is not [real, imag]")
        return complex(*payload)

    def _shape(self, shape) -> list[int]:
        if not (isinstance(shape, list) and len(shape) <= MAX_DIMS
                and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
            raise WireError(f"not a shape: {shape!r}")
        return shape

    def _tensor(self, info, depth):
        torch = _torch() or __import__("torch")
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "device", "grad", "buffer"}:
            raise WireError("a tensor without exactly dtype, shape, device, grad and buffer")
        if info["dtype"] not in TENSOR_DTYPES:
            raise WireError(f"a tensor of dtype {info['dtype']!r}")
        dtype, shape = getattr(torch, info["dtype"]), self._shape(info["shape"])
        device = self._device(info["device"], torch)
        numel = 1
        for n in shape:
            numel *= n
        if device.type == "meta":
            out = torch.empty(shape, dtype=dtype, device="meta")
        else:
            data = self._buffer(info["buffer"])
            itemsize = torch.empty((), dtype=dtype).element_size()
            if len(data) != numel * itemsize:
                raise WireError(f"a tensor of shape {shape} and dtype {info['dtype']} with {len(data)} bytes")
            flat = torch.frombuffer(bytearray(data), dtype=torch.uint8) if numel else torch.empty(0, dtype=torch.uint8)
            out = flat.view(dtype).reshape(shape).to(device)
        if not isinstance(info["grad"], bool):
            raise WireError("a tensor whose grad flag is not a boolean")
        if info["grad"] and (out.is_floating_point() or out.is_complex()):
            out.requires_grad_(True)
        self.mutables.append(out)
        return out

    @staticmethod
    def _device(name, torch):
        if not isinstance(name, str) or len(name) > 20:
            raise WireError(f"not a device: {name!r}")
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError):
            raise WireError(f"not a device: {name!r}") from None
        cuda_here = torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
        if device.type == "cuda" and not cuda_here:
            return torch.device("cpu")  # cannot happen on one machine; keep the numbers rather than fail
        if device.type == "mps" and not torch.backends.mps.is_available():
            return torch.device("cpu")
        if device.type not in ("cpu", "cuda", "mps", "meta"):
            raise WireError(f"a tensor on a {device.type} device")
        return device

    def _numpy_dtype(self, name):
        np = _numpy() or __import__("numpy")
        try:
            dtype = np.dtype(name) if isinstance(name, str) and len(name) <= 8 else None
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind not in NUMPY_KINDS or dtype.fields is not None:
            raise WireError(f"a numpy dtype that does not travel: {name!r}")
        return np, dtype

    def _ndarray(self, info, depth):
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "buffer"}:
            raise WireError("an array without exactly dtype, shape and buffer")
        np, dtype = self._numpy_dtype(info["dtype"])
        shape, data = self._shape(info["shape"]), self._buffer(info["buffer"])
        numel = 1
        for n in shape:
            numel *= n
        if len(data) != numel * dtype.itemsize:
            raise WireError(f"an array of shape {shape} and dtype {dtype} with {len(data)} bytes")
        out = np.frombuffer(bytes(data), dtype=dtype).reshape(shape).copy()
        self.mutables.append(out)
        return out

    def _numpy_scalar(self, info, depth):
        if not isinstance(info, dict) or set(info) != {"dtype", "buffer"}:
            raise WireError("a numpy scalar without exactly dtype and buffer")
        np, dtype = self._numpy_dtype(info["dtype"])
        data = self._buffer(info["buffer"])
        if len(data) != dtype.itemsize:
            raise WireError(f"a numpy {dtype} scalar with {len(data)} bytes")
        return np.frombuffer(bytes(data), dtype=dtype)[0]

    def _torch_dtype(self, name, depth):
        if name not in TENSOR_DTYPES:
            raise WireError(f"not a torch dtype: {name!r}")
        return getattr(_torch() or __import__("torch"), name)

    def _torch_device(self, name, depth):
        torch = _torch() or __import__("torch")
        self._device(name, torch)  # checked like a tensor's
        return torch.device(name)

    def _torch_size(self, payload, depth):
        return (_torch() or __import__("torch")).Size(self._shape(payload))

    def _ints(self, payload, n):
        if not (isinstance(payload, list) and len(payload) == n):
            raise WireError("a range or slice of the wrong length")
        return payload

    def _range(self, payload, depth):
        start, stop, step = self._ints(payload, 3)
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (start, stop, step)) or step == 0:
            raise WireError("a range of anything but integers")
        return range(start, stop, step)

    def _slice(self, payload, depth):
        return slice(*(self.decode(x, depth) for x in self._ints(payload, 3)))

    def _ellipsis(self, payload, depth):
        return Ellipsis


def update_in_place(old, new) -> None:
    """Make ``old`` hold what ``new`` holds (the same kind of value), keeping ``old``'s identity."""
    torch, np = _torch(), _numpy()
    if isinstance(old, (list, bytearray)) and isinstance(new, type(old)):
        old[:] = new
    elif isinstance(old, (dict, set)) and isinstance(new, type(old)):
        old.clear()
        old.update(new)
    elif torch is not None and isinstance(old, torch.Tensor) and isinstance(new, torch.Tensor):
        with torch.no_grad():
            if old.shape == new.shape and old.dtype == new.dtype:
                old.copy_(new)
            else:
                old.data = new.to(old.device)
    elif np is not None and isinstance(old, np.ndarray) and isinstance(new, np.ndarray) and old.shape == new.shape:
        old[...] = new


# --------------------------------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------------------------------


def frame_size(header_bytes: bytes, buffers) -> int:
    return _HEAD.size + len(header_bytes) + sum(_LEN.size + len(b) for b in buffers)


def dump_header(header: dict) -> bytes:
    # ensure_ascii: a learner's string with lone surrogates (valid in Python, not in UTF-8) still travels.
    return json.dumps(header, separators=(",", ":"), ensure_ascii=True, allow_nan=True).encode("ascii")


def write_frame(sock, header: dict, buffers=()) -> None:
    data = dump_header(header)
    sock.sendall(_HEAD.pack(MAGIC, len(buffers), len(data)) + data)
    for buf in buffers:
        sock.sendall(_LEN.pack(len(buf)))
        if len(buf):
            sock.sendall(buf)


class _Reader:
    """Reads exactly n bytes at a time from a socket, before a deadline (None: wait for ever)."""

    def __init__(self, sock, deadline):
        self.sock, self.deadline = sock, deadline

    def wait(self, on_wait=None, slice_s: float = 0.2) -> None:
        """Until bytes are ready; ``on_wait()`` runs between slices (it may raise to stop waiting)."""
        while True:
            left = None if self.deadline is None else self.deadline - time.monotonic()
            if left is not None and left <= 0:
                raise Timeout("no answer before the deadline")
            step = slice_s if on_wait is not None else left
            if step is not None and left is not None:
                step = min(step, left)
            ready, _, _ = select.select([self.sock], [], [], step)
            if ready:
                return
            if on_wait is not None:
                on_wait()

    def exactly(self, n: int, keep: bool = True):
        out = bytearray(n if keep else 0)
        view, got, scratch = memoryview(out), 0, bytearray(min(n, 1 << 20)) if not keep else None
        while got < n:
            self.wait()
            chunk = view[got:] if keep else memoryview(scratch)[: min(n - got, len(scratch))]
            count = self.sock.recv_into(chunk)
            if count == 0:
                raise LinkClosed("the other side closed the connection")
            got += count
        return out


def read_frame(sock, limits: Limits, deadline: float | None = None, on_wait=None) -> tuple[dict, list]:
    """The next frame's header and buffers; ``on_wait()`` runs while nothing has arrived yet.

    A frame over ``limits.max_message_bytes`` is read to its end but not kept (``TooLarge``), so that the next frame
    can still be read; one that breaks the format raises ``WireError``, after which the link is unusable."""
    reader = _Reader(sock, deadline)
    reader.wait(on_wait)
    magic, n_buffers, header_len = _HEAD.unpack(reader.exactly(_HEAD.size))
    if magic != MAGIC:
        raise WireError("not a frame of this protocol")
    if n_buffers > limits.max_buffers:
        raise WireError(f"a frame with {n_buffers} buffers")
    total = _HEAD.size + header_len
    keep = total <= limits.max_message_bytes
    raw = reader.exactly(header_len, keep)
    buffers = []
    for _ in range(n_buffers):
        (size,) = _LEN.unpack(reader.exactly(_LEN.size))
        total += _LEN.size + size
        keep = keep and total <= limits.max_message_bytes
        data = reader.exactly(size, keep)
        buffers.append(data if keep else None)
    header = _parse_header(raw) if len(raw) == header_len else None
    if not keep:
        raise TooLarge(f"a message of {total / 2**20:.1f} MB (the limit is {limits.max_message_bytes / 2**20:.0f} MB)",
                       header)
    return header, buffers


def _parse_header(raw) -> dict:
    try:
        header = json.loads(bytes(raw))
    except (ValueError, RecursionError) as exc:
        raise WireError(f"a header that is not JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise WireError("a header that is not a JSON object")
    return header


def encode_message(header: dict, values: dict, export=None, refs=None) -> tuple[dict, list, Encoder]:
    """``header`` with each of ``values`` encoded into it (same keys), the buffers, and the encoder (its mutables)."""
    enc = Encoder(export, refs)
    out = dict(header)
    for key, value in values.items():
        out[key] = enc.encode(value)
    return out, enc.buffers, enc
