"""Python requests through HTTPS_PROXY, as an unmodified tool would use it.

HTTPS_PROXY (with credentials in the URL) and REQUESTS_CA_BUNDLE come from the environment.
Usage: python3 requests_get.py URL   -> prints the status, then the body.
"""
import sys

import requests

try:
    response = requests.get(sys.argv[1], timeout=20)
    print(response.status_code)
    print(response.text)
except requests.exceptions.ProxyError as error:
    print("proxy-error")
    print(error)
