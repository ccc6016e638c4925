"""An SSE upstream for `scripts/bench-load streams`: every GET with the expected bearer token
gets an endless chunked `text/event-stream`, one event every INTERVAL seconds carrying the time
it was sent (the first after a random part of the interval, so events spread evenly).

usage: sse_upstream.py PORT INTERVAL TOKEN"""

import asyncio
import random
import resource
import sys
import time


async def handle(reader, writer, interval, expected):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        auth = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")[1:]
                if line.lower().startswith(b"authorization:")]
        if auth != [expected]:
            writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        # A client that goes away is noticed at once (its end of the stream reads as EOF),
        # not at the next write, so its descriptor is not held for another interval.
        gone = asyncio.ensure_future(reader.read())
        await asyncio.wait([gone], timeout=random.random() * interval)
        n = 0
        while not gone.done():
            event = f"id: {n}\ndata: {time.time():.6f}\n\n".encode()
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            n += 1
            await asyncio.wait([gone], timeout=interval)
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main():
    port, interval, token = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3].encode()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = await asyncio.start_server(lambda r, w: handle(r, w, interval, b"Bearer " + token), "127.0.0.1", port,
                                        backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
