"""Serve the built site on this machine: ``make serve`` (``PORT=8001 make serve`` for another port).

Opened as file:// pages the book reads fine, but its search does not work: Sphinx's search loads its index with
JavaScript, which browsers refuse to do for files. Served over HTTP, from 127.0.0.1 only, everything works.
"""

import argparse
import functools
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SITE = Path(__file__).resolve().parents[2] / "_build" / "html"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # one line per file served is noise; errors still go to stderr
        if not args or not str(args[1]).startswith(("2", "3")):
            super().log_message(format, *args)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000, help="the port (0: any free one)")
    parser.add_argument("--site", type=Path, default=SITE, help="the built site (default: _build/html)")
    args = parser.parse_args(argv)
    if not (args.site / "index.html").exists():
        print(f"There is no site in {args.site} yet: run make book first.", file=sys.stderr)
        return 2
    try:
        server = ThreadingHTTPServer(("127.0.0.1", args.port), functools.partial(QuietHandler, directory=args.site))
    except OSError as error:
        print(f"Port {args.port} cannot be used ({error.strerror}); perhaps another make serve is running. "
              f"Try another port: make serve PORT={args.port + 1}", file=sys.stderr)
        return 2
    print(f"The book is at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops the server).", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nStopped.")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
