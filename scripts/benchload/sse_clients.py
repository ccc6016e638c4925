"""SSE clients for `scripts/bench-load streams`: opens N streams through a proxy (absolute-form
GET, Proxy-Authorization), RATE per second, then holds them HOLD seconds, reading events and
timing each from the moment the upstream sent it. With CHURN > 0, a stream that has lived a
random 5-CHURN seconds closes and a new one opens in its place. Prints "opened" once every
stream is up, then one JSON line of results.

usage: sse_clients.py PROXY_PORT TARGET_URL AUTH N RATE HOLD CHURN"""

import asyncio
import json
import random
import resource
import sys
import time


class Tally:
    def __init__(self):
        self.latencies, self.events, self.failed, self.opened, self.reopened = [], 0, 0, 0, 0
        self.first_error = ""


async def stream(port, target, auth, tally, until, churn, ready):
    host = target.split("/")[2]
    request = (f"GET {target} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: {auth}\r\n"
               f"Accept: text/event-stream\r\n\r\n").encode()
    first = True
    while time.time() < until:
        lifetime = random.uniform(5, churn) if churn else None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as e:
            tally.failed += 1
            tally.first_error = tally.first_error or f"connect: {e}"
            await asyncio.sleep(0.5)
            continue
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise ConnectionError(head.split(b"\r\n")[0].decode(errors="replace"))
            if first:
                tally.opened += 1
                ready.release()
                first = False
            else:
                tally.reopened += 1
            opened = time.time()
            while time.time() < until and (lifetime is None or time.time() - opened < lifetime):
                line = await asyncio.wait_for(reader.readline(), timeout=max(0.1, until - time.time()))
                if not line:
                    raise ConnectionError("the stream ended")
                if line.startswith(b"data: "):
                    tally.events += 1
                    sent = float(line[6:].strip())
                    if len(tally.latencies) < 200_000:
                        tally.latencies.append((time.time() - sent) * 1000)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            tally.failed += 1
            tally.first_error = tally.first_error or str(e)
            await asyncio.sleep(0.5)
        except asyncio.TimeoutError:
            pass
        finally:
            writer.close()
        if lifetime is None:
            break


async def main():
    port, target, auth = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    n, rate, hold, churn = int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tally, ready = Tally(), asyncio.Semaphore(0)
    until = time.time() + n / rate + 60 + hold  # the ramp, the wait for the last, the hold
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(stream(port, target, auth, tally, until, churn, ready)))
        if i % 100 == 99:
            await asyncio.sleep(100 / rate)
    deadline = time.time() + 60
    while tally.opened < n and time.time() < deadline and tally.failed < n:
        await asyncio.sleep(0.2)
    print("opened", tally.opened, flush=True)
    # Hold from now on: the latency of the ramp is not counted.
    tally.latencies.clear()
    await asyncio.sleep(hold)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    lat = sorted(tally.latencies)
    pick = lambda q: lat[min(len(lat) - 1, int(len(lat) * q))] if lat else 0.0  # noqa: E731
    print(json.dumps({"opened": tally.opened, "reopened": tally.reopened, "failed": tally.failed,
                      "first_error": tally.first_error, "events": tally.events, "p50_ms": pick(0.5),
                      "p99_ms": pick(0.99), "max_ms": lat[-1] if lat else 0.0}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
