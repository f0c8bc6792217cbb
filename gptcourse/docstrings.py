"""Real English that ships with every Python: the docstrings of the standard library (Chapters 5 and 7).

Every function and class of the standard library explains itself in a docstring, written by Python's developers.
This module collects them from a fixed list of modules, grouped by the area of the library they belong to, so the
text is the same on every machine with the same Python release. Docstrings change a little between releases: record
``corpus.fingerprint(docstrings_text())`` next to anything trained or measured on them, as the tokenizer does.

Only modules that are safe to import are listed (none opens a window, prints or starts anything on import), and
none whose text depends on the operating system (``os.path`` is ``posixpath`` on Linux and macOS, ``ntpath`` on
Windows); names a module imports from elsewhere are skipped for the same reason.
"""

import importlib
import inspect
from dataclasses import dataclass

AREAS = {
    "text": ["string", "textwrap", "difflib", "re", "unicodedata", "codecs", "gettext"],
    "numbers and maths": ["math", "cmath", "statistics", "fractions", "decimal", "random", "numbers"],
    "files and the OS": ["os", "shutil", "pathlib", "glob", "fnmatch", "tempfile", "filecmp", "stat",
                         "zipfile", "tarfile", "gzip"],
    "internet and data formats": ["json", "csv", "base64", "binascii", "urllib.parse", "urllib.request",
                                  "http.client", "email.message", "html", "html.parser", "mimetypes", "configparser",
                                  "plistlib"],
    "concurrency": ["threading", "queue", "concurrent.futures", "asyncio", "multiprocessing", "sched",
                    "subprocess"],
    "data structures and functions": ["collections", "heapq", "bisect", "itertools", "functools", "operator",
                                      "copy", "dataclasses", "enum", "array", "weakref"],
}


@dataclass(frozen=True)
class Docstring:
    area: str  # one of AREAS
    module: str  # "textwrap"
    name: str  # "textwrap.dedent", or the module's own name for its module docstring
    text: str  # the docstring, cleaned of indentation (inspect.cleandoc)


def _public_members(module) -> list[tuple[str, object]]:
    """Functions and classes defined in ``module`` itself (not imported into it), and their methods, by name."""
    found = []
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if getattr(obj, "__module__", None) not in (module.__name__, module.__name__.lstrip("_")):
            continue
        found.append((name, obj))
        if inspect.isclass(obj):
            found += [(f"{name}.{attr}", member) for attr, member in sorted(vars(obj).items())
                      if not attr.startswith("_") and inspect.isroutine(member)]
    return found


def stdlib_docstrings(areas: dict[str, list[str]] = AREAS) -> list[Docstring]:
    """Every non-empty docstring of the listed modules and of their public functions, classes and methods, in a
    fixed order (area, module, name). Text a module inherits from elsewhere is not repeated."""
    result, seen = [], set()
    for area, modules in areas.items():
        for module_name in modules:
            module = importlib.import_module(module_name)
            for name, obj in [(module_name, module)] + [(f"{module_name}.{n}", o) for n, o in _public_members(module)]:
                doc = inspect.getdoc(obj) if obj is module else obj.__doc__
                text = inspect.cleandoc(doc) if doc else ""
                if text and text not in seen:
                    seen.add(text)
                    result.append(Docstring(area, module_name, name, text))
    return result


def docstrings_text(docstrings: list[Docstring] | None = None) -> str:
    """The docstrings as one text, separated by blank lines (the form the tokenizer and the model read)."""
    return "\n\n".join(d.text for d in (stdlib_docstrings() if docstrings is None else docstrings))
