#!/usr/bin/env python3
"""A tiny application behind nginx for nginx-conf/session-example.conf.

It keeps no sessions of its own: nginx sends the session's data in the
`X-Session` request header, and the application writes it back with the
`X-Shared-Map-Session` response header (or ends it with
`X-Shared-Map-Session-Destroy`). Several forked processes serve the same
socket, so any of them (and any nginx worker) sees the same session.

    python3 nginx-conf/session-app.py [port] [processes]    (default 8081 4)
"""

import html
import os
import re
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8081
PROCESSES = int(sys.argv[2]) if len(sys.argv) > 2 else 4


def session(headers):
    """The session data nginx passed, as a dict: `user=alice; cart=3`."""
    data = headers.get("X-Session", "")
    return dict(p.split("=", 1) for p in data.split("; ") if "=" in p)


class App(BaseHTTPRequestHandler):
    def reply(self, status, body, extra=()):
        body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App-Pid", str(os.getpid()))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        s = session(self.headers)
        if "user" in s:
            page = (f"<p>Hello, {html.escape(s['user'])}. (app process {os.getpid()})</p>"
                    '<form method="post" action="/logout"><button>Log out</button></form>\n')
        else:
            page = (f"<p>Not logged in. (app process {os.getpid()})</p>"
                    '<form method="post" action="/login"><input name="user">'
                    "<button>Log in</button></form>\n")
        self.reply(200, page)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        if self.path == "/login":
            user = form.get("user", [""])[0]
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", user):
                self.reply(400, "<p>A user name is 1 to 64 letters, digits, _ . or -.</p>\n")
                return
            # Ending the old session and writing in the same response gives the
            # user a new session id at login.
            self.reply(303, "", [("Location", "/"),
                                 ("X-Shared-Map-Session-Destroy", "1"),
                                 ("X-Shared-Map-Session", f"user={user}")])
        elif self.path == "/logout":
            self.reply(303, "", [("Location", "/"), ("X-Shared-Map-Session-Destroy", "1")])
        else:
            self.reply(404, "<p>Not found.</p>\n")

    def log_message(self, fmt, *args):
        sys.stderr.write(f"[app {os.getpid()}] {fmt % args}\n")


def main():
    server = HTTPServer(("127.0.0.1", PORT), App, bind_and_activate=False)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.server_bind()
    server.server_activate()
    children = []
    for _ in range(PROCESSES):
        pid = os.fork()
        if pid == 0:
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                pass
            os._exit(0)
        children.append(pid)
    print(f"app on http://127.0.0.1:{PORT}/, processes {children}", file=sys.stderr)

    def stop(signum, _frame):
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        sys.exit(0)

    # Stopping the parent stops the processes it forked.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
