#!/usr/bin/env python3
"""A link emulator in user space, for kernels without tc's netem (a kernel built without
sch_netem): scripts/netns_cluster.sh runs it for `shape delay D loss P` there.

It relays Ethernet frames between the two ends of each PAIR of interfaces (AF_PACKET sockets,
standard library only), each direction of each pair as one netem link: every frame held for
the delay, a random share of them dropped, at most LIMIT frames waiting (netem's default),
the frames of a direction kept in order.  Frames keep their virtio-net header
(PACKET_VNET_HDR), so the kernel's large segments and unfinished checksums cross unchanged,
as they cross a veth.

    link_emulator.py delay 50ms loss 1% --pair xmx-v1:xmx-w1 [--pair ...] [--seed N]

Bad arguments: one line on stderr, exit 2; a kernel whose packet sockets cannot do this
(no AF_PACKET, no PACKET_VNET_HDR): one line, exit 3.  SIGTERM or SIGINT: it stops, frames
in flight dropped, and prints what it relayed and dropped (the kernel's drops on a full
socket buffer included).  It prints "ready" once every socket is bound.
"""
import argparse
import collections
import random
import re
import select
import signal
import socket
import struct
import sys
import time

SOL_PACKET, PACKET_VNET_HDR, PACKET_STATISTICS, ETH_P_ALL, PACKET_OUTGOING = 263, 15, 6, 3, 4
SO_RCVBUFFORCE = 33    # root's SO_RCVBUF, past net.core.rmem_max
FRAME = 1 << 18        # the largest frame read: a 64 KiB segment, its headers, to spare
DRAIN = 64             # frames read from one socket before the queues are looked at again


class Link:
    """One direction of a pair: frames read from ``source`` leave by ``sink`` after
    ``delay`` seconds, unless dropped."""

    def __init__(self, source, sink, delay, loss, limit, rng):
        self.source, self.sink = source, sink
        self.delay, self.loss, self.limit, self.rng = delay, loss, limit, rng
        self.waiting = collections.deque()
        self.counts = collections.Counter()
        self.buffer = bytearray(FRAME)

    def take(self, frame, now):
        self.counts["seen"] += 1
        if self.rng.random() < self.loss:
            self.counts["lost"] += 1
        elif len(self.waiting) >= self.limit:
            self.counts["over limit"] += 1
        else:
            self.waiting.append((now + self.delay, frame))

    def release(self, now):
        while self.waiting and self.waiting[0][0] <= now:
            try:
                self.sink.send(self.waiting.popleft()[1])
            except OSError:             # the link set down meanwhile: lost, as on a wire
                self.counts["unsent"] += 1

    def next_due(self):
        return self.waiting[0][0] if self.waiting else None


def milliseconds(text):
    found = re.fullmatch(r"(\d+(?:\.\d+)?)(us|ms|s)?", text)
    if not found:
        raise ValueError("delay: expected a time such as 50ms, got %r" % text)
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, None: 1e-6}[found.group(2)]  # tc: bare = us
    return float(found.group(1)) * scale


def share(text):
    found = re.fullmatch(r"(\d+(?:\.\d+)?)%", text)
    if not found or float(found.group(1)) > 100:
        raise ValueError("loss: expected a percentage such as 1%%, got %r" % text)
    return float(found.group(1)) / 100


def parse(argv):
    parser = argparse.ArgumentParser(prog="link_emulator.py", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("netem", nargs="+", help="delay TIME and/or loss PERCENT, as tc netem")
    parser.add_argument("--pair", action="append", required=True, metavar="A:B",
                        help="two interfaces whose frames are relayed to each other")
    parser.add_argument("--limit", type=int, default=1000, help="frames waiting a direction")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    words, args.delay, args.loss = list(args.netem), 0.0, 0.0
    try:
        while words:
            key = words.pop(0)
            if key not in ("delay", "loss") or not words:
                raise ValueError("expected delay TIME and/or loss PERCENT (the netem options "
                                 "this emulator has), got %r" % " ".join(args.netem))
            value = words.pop(0)
            if key == "delay":
                args.delay = milliseconds(value)
            else:
                args.loss = share(value)
        args.pair = [tuple(p.split(":")) for p in args.pair]
        if any(len(p) != 2 or not all(p) for p in args.pair):
            raise ValueError("--pair: expected A:B, two interface names")
    except ValueError as e:
        parser.error(str(e))
    return args


def packet_socket():
    """A raw packet socket that keeps each frame's virtio-net header, or exit 3 saying why
    this kernel has none."""
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    except OSError as e:
        print("link_emulator.py: this kernel's packet sockets cannot relay frames with their "
              "virtio-net headers: %s" % e, file=sys.stderr)
        sys.exit(3)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 23)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 23)
    return sock


def bound(interface):
    sock = packet_socket()
    sock.bind((interface, ETH_P_ALL))
    sock.setblocking(False)
    return sock


def kernel_drops(sock):
    """Frames the kernel dropped on ``sock``'s full buffer since last asked."""
    try:
        return struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))[1]
    except OSError:
        return 0


def links_of(args):
    rng, links = random.Random(args.seed), {}
    for a, b in args.pair:
        try:
            ends = bound(a), bound(b)
        except OSError as e:
            sys.exit("link_emulator.py: error: --pair %s:%s: %s" % (a, b, e.strerror))
        for source, sink in (ends, ends[::-1]):
            links[source.fileno()] = Link(source, sink, args.delay, args.loss, args.limit, rng)
    return links


def read(link, now):
    for _ in range(DRAIN):
        try:
            size, address = link.source.recvfrom_into(link.buffer, FRAME, socket.MSG_TRUNC)
        except BlockingIOError:
            return
        except OSError:             # the link set down (ENETDOWN): read again once it is up
            link.counts["read errors"] += 1
            return
        if address[2] == PACKET_OUTGOING:       # a frame this emulator sent
            continue
        if size > FRAME:
            link.counts["too large"] += 1
        else:
            link.take(bytes(link.buffer[:size]), now)


def relay(links, stopping):
    while not stopping:
        dues = [d for d in (link.next_due() for link in links.values()) if d is not None]
        wait = max(0.0, min(dues) - time.monotonic()) if dues else 0.5
        try:
            ready, _, _ = select.select(list(links), [], [], wait)
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd in ready:
            read(links[fd], now)
        for link in links.values():
            link.release(now)


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    links, stopping = links_of(args), []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    print("ready", flush=True)
    relay(links, stopping)
    for link in links.values():
        link.counts["kernel dropped"] += kernel_drops(link.source)
    totals = sum((link.counts for link in links.values()), collections.Counter())
    print("link_emulator.py: stopped; frames %s" % dict(sorted(totals.items())), flush=True)


if __name__ == "__main__":
    main()
