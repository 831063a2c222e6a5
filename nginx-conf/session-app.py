#!/usr/bin/env python3
"""A tiny application behind nginx for nginx-conf/session-example.conf.

It keeps no sessions of its own: nginx sends the session's data in the
`X-Session` request header, and the application writes it back with the
`X-Shared-Map-Session` response header (or ends it with
`X-Shared-Map-Session-Destroy`). Several forked processes serve the same
socket, so any of them (and any nginx worker) sees the same session.

    SESSION_APP_USERS='alice:wonderland:user,root:s3cret:admin' \
        python3 nginx-conf/session-app.py [port] [processes]    (default 8081 4)

Users and their roles come from SESSION_APP_USERS (name:password:role, comma
separated); there is no built-in account. What it trusts, and why that is
safe: the session's data (`user=...; role=...`) is written only by this
application, after a password check; nginx replaces any X-Session header a
client sends, gives the session a new id at login (rotate=on), and the
session API the example exposes is read-only.
"""

import hmac
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
NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def load_users(spec):
    """`name:password:role,...` -> {name: (password, role)}."""
    users = {}
    for entry in filter(None, spec.split(",")):
        name, password, role = entry.split(":", 2)
        if not NAME.fullmatch(name) or role not in ("user", "admin") or not password:
            sys.exit(f"SESSION_APP_USERS: bad entry for {name!r}")
        users[name] = (password, role)
    return users


USERS = load_users(os.environ.get("SESSION_APP_USERS", ""))


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
        if self.path == "/admin":
            if s.get("role") != "admin":
                self.reply(403, "<p>Administrators only.</p>\n")
            else:
                self.reply(200, f"<p>Admin area, {html.escape(s['user'])}.</p>\n")
            return
        if "user" in s:
            page = (f"<p>Hello, {html.escape(s['user'])}. (app process {os.getpid()})</p>"
                    '<form method="post" action="/logout"><button>Log out</button></form>\n')
        else:
            page = (f"<p>Not logged in. (app process {os.getpid()})</p>"
                    '<form method="post" action="/login"><input name="user">'
                    '<input name="password" type="password"><button>Log in</button></form>\n')
        self.reply(200, page)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        if self.path == "/login":
            user = form.get("user", [""])[0]
            password = form.get("password", [""])[0]
            known = USERS.get(user) if NAME.fullmatch(user) else None
            # compare_digest: the time taken does not tell how much matched.
            if known is None or not hmac.compare_digest(known[0].encode(), password.encode()):
                self.reply(403, "<p>Wrong user name or password.</p>\n")
                return
            # Only this application writes the session, and only after the
            # password check; nginx gives the session a new id (rotate=on), so
            # an id planted in the browser before the login never carries it.
            self.reply(303, "", [("Location", "/"),
                                 ("X-Shared-Map-Session", f"user={user}; role={known[1]}")])
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
