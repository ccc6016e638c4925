"""A webhook receiver for the tests, as a platform would write one.

Usage: webhook_receiver.py SECRET FAIL_FIRST LOG_FILE

Checks every delivery with the `verify` function that docs/events.md shows (read from that
page, so the documented code is the tested code), answers 503 to the first FAIL_FIRST valid
deliveries and 200 afterwards, 400 to a bad signature, and appends one JSON line per delivery
to LOG_FILE. Prints its port on the first line of stdout. Listens on 127.0.0.1 only.
"""

import json
import pathlib
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "events.md"
CODE = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
if CODE is None:
    sys.exit("docs/events.md has no python block with verify()")
NAMESPACE = {}
exec(CODE.group(1), NAMESPACE)  # noqa: S102 - the project's own documented snippet
verify = NAMESPACE["verify"]

SECRET = sys.argv[1].encode()
FAIL_FIRST = int(sys.argv[2])
LOG = pathlib.Path(sys.argv[3])
LOCK = Lock()
VALID = 0


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        global VALID
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        ok = verify(SECRET, self.headers.get("tollgate-signature", ""), body)
        with LOCK:
            if ok:
                VALID += 1
                status = 503 if VALID <= FAIL_FIRST else 200
            else:
                status = 400
            entry = {
                "status": status,
                "valid": ok,
                "id_header": self.headers.get("tollgate-event-id"),
                "type_header": self.headers.get("tollgate-event-type"),
                "body": body.decode("utf-8", "replace"),
            }
            with LOG.open("a") as log:
                log.write(json.dumps(entry) + "\n")
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
print(server.server_port, flush=True)
server.serve_forever()
