"""``make run``'s last step: start the gateway on embedded defaults (with the prepared catalogue as
``RELEVANCE_CATALOG`` unless one is set), wait until it is ready, show a sample scoring request and the explanation
of one of its decisions (as curl and their answers), then keep serving until Ctrl-C (``--exit`` stops after the
samples)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

import httpx

from relevance_core.data import derived_dir

SAMPLE = {
    "query": "simpson angle bracket",
    "items": [
        {"id": "100001"},
        {"id": "new-1", "title": "Simpson Strong-Tie 5 in. x 5 in. 12-Gauge Galvanized Angle"},
        {"id": "new-2", "title": "BEHR Premium 1 gal. Deep Base Solid Color Concrete Stain"},
    ],
    "evidence": True,
}
EXPLAIN = {"query": "simpson angle bracket", "title": "BEHR Premium 1 gal. Deep Base Solid Color Concrete Stain",
           "counterfactual": True}


def _show(url: str, path: str, payload: dict[str, object]) -> httpx.Response:
    """POST ``payload`` to ``path``, printing the request as curl and the answer."""
    body = json.dumps(payload)
    print(f"\n$ curl -s {url}{path} -H 'content-type: application/json' -d {shlex.quote(body)}\n")
    response = httpx.post(f"{url}{path}", content=body, headers={"content-type": "application/json"}, timeout=10)
    print(json.dumps(response.json(), indent=2))
    return response


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--exit", action="store_true", help="stop the gateway after the sample request")
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    env = dict(os.environ)
    catalogue = derived_dir() / "catalogue.tsv"
    if "RELEVANCE_CATALOG" not in env and catalogue.is_file():
        env["RELEVANCE_CATALOG"] = str(catalogue)
    server = subprocess.Popen([sys.executable, "-m", "relevance.cli", "serve", "--port", str(args.port)], env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                print(f"the gateway exited with code {server.returncode}", file=sys.stderr)
                return 1
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                print("the gateway did not become ready within 120 s", file=sys.stderr)
                return 1
            time.sleep(0.5)
        scored = _show(url, "/v1/score", SAMPLE)
        explained = _show(url, "/v1/explain", EXPLAIN)
        print(f"\nanalyst page: {url}/explain   OpenAPI docs: {url}/docs   metrics: {url}/metrics   "
              "gRPC: 127.0.0.1:50051")
        if args.exit:
            return 0 if scored.status_code == explained.status_code == 200 else 1
        print("serving; Ctrl-C stops it")
        server.wait()
        return server.returncode
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=15)


if __name__ == "__main__":
    sys.exit(main())
