"""``make run``'s last step: start the gateway on embedded defaults, wait until it is ready, show a sample
scoring request (as curl and its answer), then keep serving until Ctrl-C (``--exit`` stops after the sample)."""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time

import httpx

SAMPLE = {
    "query": "simpson angle bracket",
    "items": [
        {"id": "100001"},
        {"id": "new-1", "title": "Simpson Strong-Tie 5 in. x 5 in. 12-Gauge Galvanized Angle"},
        {"id": "new-2", "title": "BEHR Premium 1 gal. Deep Base Solid Color Concrete Stain"},
    ],
    "evidence": True,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--exit", action="store_true", help="stop the gateway after the sample request")
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen([sys.executable, "-m", "relevance.cli", "serve", "--port", str(args.port)])
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
        body = json.dumps(SAMPLE)
        print(f"\n$ curl -s {url}/v1/score -H 'content-type: application/json' -d {shlex.quote(body)}\n")
        response = httpx.post(f"{url}/v1/score", content=body, headers={"content-type": "application/json"},
                              timeout=10)
        print(json.dumps(response.json(), indent=2))
        print(f"\nOpenAPI docs: {url}/docs   metrics: {url}/metrics   gRPC: 127.0.0.1:50051")
        if args.exit:
            return 0 if response.status_code == 200 else 1
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
