#!/usr/bin/env python3
"""A site that stops accepting connections, then accepts again.

    python3 test/blackhole.py PORTFILE TARGET_PORT GOFILE [MAX_SECONDS]

Listens on 127.0.0.1 (a free port, written to PORTFILE) with an accept
backlog of 0 and fills that backlog with connections of its own that it
never accepts.  Linux then drops every further SYN (with the default
net.ipv4.tcp_abort_on_overflow = 0), so a client's connect hangs until its
own timeout: the site is "blackholed", as when a firewall drops packets.
Once GOFILE exists, it accepts (and closes) its own connections and from
then on forwards every connection to 127.0.0.1:TARGET_PORT (the stand-in),
so the same URL works again.  Exits after MAX_SECONDS (default 300).
"""
import os
import select
import socket
import sys
import threading
import time


def fill_backlog(port):
    """Connect until a connect no longer completes; returns the clients."""
    clients = []
    for _ in range(16):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(0.3)
        try:
            c.connect(("127.0.0.1", port))
        except (socket.timeout, OSError):
            c.close()
            return clients
        clients.append(c)
    sys.exit("blackhole: the backlog never filled")


def pump(a, b):
    socks = [a, b]
    try:
        while True:
            r, _, _ = select.select(socks, [], [], 60)
            if not r:
                return
            for s in r:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)
    except OSError:
        pass
    finally:
        a.close()
        b.close()


def main():
    portfile, target, gofile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    deadline = time.monotonic() + (float(sys.argv[4]) if len(sys.argv) > 4 else 300)
    lsn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(0)
    port = lsn.getsockname()[1]
    clients = fill_backlog(port)
    with open(portfile + ".tmp", "w") as f:
        f.write(f"{port}\n")
    os.rename(portfile + ".tmp", portfile)
    print(f"blackhole: port {port} blackholed ({len(clients)} connections in the backlog)",
          flush=True)
    while not os.path.exists(gofile):
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
    lsn.settimeout(0.5)
    for _ in clients:
        s, _ = lsn.accept()
        s.close()
    for c in clients:
        c.close()
    print(f"blackhole: port {port} accepts again, forwarding to {target}", flush=True)
    lsn.listen(64)
    while time.monotonic() < deadline:
        try:
            s, _ = lsn.accept()
        except socket.timeout:
            continue
        up = socket.create_connection(("127.0.0.1", target), timeout=5)
        up.settimeout(None)
        s.settimeout(None)
        threading.Thread(target=pump, args=(s, up), daemon=True).start()


if __name__ == "__main__":
    main()
