"""POST GitLab's pipeline trigger form where a node has python3 but no curl (run by notify.sh).

    python3 notify_post.py TOKEN_FILE ENDPOINT REF TIMEOUT_S

Prints one line, "<HTTP status> " or "0 <error class>". It runs on the cluster's python3, which may
be as old as 3.6 (RHEL/Rocky/Alma 8, CentOS 7): standard library only, and nothing newer than 3.6
(the unit tier checks this file with vermin). The token is read from its 0600 file, never argv.
"""

import sys
import urllib.error
import urllib.parse
import urllib.request


def post(token_file: str, endpoint: str, ref: str, timeout: float) -> str:
    """The form `token`, `ref` to `endpoint`; returns the line to print."""
    with open(token_file) as fh:
        token = fh.read()
    body = urllib.parse.urlencode({"token": token, "ref": ref}).encode()
    try:
        with urllib.request.urlopen(endpoint, data=body, timeout=timeout) as answer:
            return f"{answer.getcode()} "
    except urllib.error.HTTPError as exc:
        return f"{exc.code} "
    except Exception as exc:  # noqa: BLE001 (one line for the record, whatever went wrong)
        return f"0 {type(exc).__name__}"


if __name__ == "__main__":
    print(post(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
