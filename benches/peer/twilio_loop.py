"""The peer of `benches peer`: the official Twilio helper library (twilio-python 9.x, unmodified) creating
calls in a loop, the way a script with a list of numbers would, against the simulator.

Usage:
  twilio_loop.py --base-url URL --account-sid AC… --auth-token T --mode sequential|pool [--threads 32]
                 [--seconds 10] [--first-number N] [--url URL] [--status-callback URL]

`sequential`: one thread calls `client.calls.create(...)` back to back. `pool`: a ThreadPoolExecutor of
`--threads` workers, each with its own `Client` (its own HTTP session, so connections are kept alive per
thread) looping the same way. Every create dials a new number, +8180 followed by 8 digits counting up from
`--first-number`, so no (To, Url) pair repeats. The loop stops starting creates after `--seconds`; the
elapsed time runs until the last one in flight has returned.

The only change from talking to Twilio is the API domain's base URL (`client.api.base_url`, as in
sim/tests/helper_library/messages.py). Prints one JSON object: mode, threads, calls (created), errors,
first_error, elapsed_s, calls_per_s.
"""

import argparse
import itertools
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from twilio.rest import Client

FROM = "+14155550199"


def client(args):
    c = Client(args.account_sid, args.auth_token)
    c.api.base_url = args.base_url
    return c


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--account-sid", required=True)
    p.add_argument("--auth-token", required=True)
    p.add_argument("--mode", choices=["sequential", "pool"], required=True)
    p.add_argument("--threads", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--first-number", type=int, default=10_000_000)
    p.add_argument("--url", default="http://127.0.0.1:9/twiml")
    p.add_argument("--status-callback", default="http://127.0.0.1:9/status")
    args = p.parse_args()

    threads = 1 if args.mode == "sequential" else args.threads
    clients = [client(args) for _ in range(threads)]
    numbers = itertools.count(args.first_number)
    lock = threading.Lock()
    errors = []

    def next_to():
        with lock:
            n = next(numbers)
        if n > 99_999_999:
            raise RuntimeError("ran out of numbers")
        return "+8180%08d" % n

    def worker(c, deadline):
        created = 0
        while time.monotonic() < deadline:
            try:
                c.calls.create(
                    to=next_to(),
                    from_=FROM,
                    url=args.url,
                    status_callback=args.status_callback,
                    method="POST",
                )
                created += 1
            except Exception as e:  # noqa: BLE001 - counted and reported, the loop goes on
                with lock:
                    errors.append(repr(e))
                if len(errors) > 100:
                    break
        return created

    t0 = time.monotonic()
    deadline = t0 + args.seconds
    if threads == 1:
        calls = worker(clients[0], deadline)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            calls = sum(pool.map(lambda c: worker(c, deadline), clients))
    elapsed = time.monotonic() - t0
    print(
        json.dumps(
            {
                "mode": args.mode,
                "threads": threads,
                "calls": calls,
                "errors": len(errors),
                "first_error": errors[0] if errors else None,
                "elapsed_s": elapsed,
                "calls_per_s": calls / elapsed if elapsed > 0 else 0.0,
            }
        )
    )


if __name__ == "__main__":
    main()
