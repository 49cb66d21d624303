#!/usr/bin/env python3
"""Groups a `perf script -F comm,ip,sym` dump (perf record --call-graph dwarf) into hot-path
categories per process, for bench/run.sh.

Each sample goes to the first category matched by a frame, walking from the leaf towards main,
so the innermost "owner" wins: a write(2) under spdlog is logging, a sendmsg under Beast's
write_op is the HTTP response write. Generic syscall categories (file/pipe I/O) are used only
when no owner matched. Prints, per process, the share of samples of each category and the part
of it spent inside system calls.

    perf script -i perf.data -F comm,ip,sym | python3 bench/perf_categories.py serve-proxy ...
"""
import collections
import re
import sys

OWNERS = [
    ("access/request log (spdlog + fmt, flushed file and stderr writes)",
     r"spdlog::|fmt::v\d+::"),
    ("HTTP response write (Beast serializer + sendmsg)",
     r"beast::http::detail::write_op|beast::http::detail::write_some_op|beast::http::serializer|"
     r"http::detail::write_msg_op|beast::http::detail::chunk"),
    ("HTTP request read + parse (Beast)",
     r"beast::http::detail::read_op|beast::http::detail::read_some_op|basic_parser"),
    ("HTTP session coroutine body (struct/header copies, response build)",
     r"\(anonymous namespace\)::Session$|HttpServerRequest::|HttpServerResponse::|AsyncHandle"),
    ("data-plane frame write", r"FramedConnection::StartWrite|FramedConnection::Send"),
    ("protobuf envelopes (encode/decode)",
     r"google::protobuf|EncodeEnvelope|DecodeEnvelope|serve::v1::"),
    ("proxy request handling (ids, headers, routing)",
     r"RequestHandler::|RandomUuid|RouteTable|Router::|ReplicaConnection::"),
    ("user call (SDK Instance::Call, HttpRequest/Response conversion)",
     r"Instance::Call|TypedInstance|ToHttpRequest|ToHttpResponse|serve::detail::Invoke|"
     r"DataServer::Execute"),
    ("thread-pool handoff (post, futex wake/wait, context switches)",
     r"thread_pool|scheduler::post_immediate|futex|pthread_cond|scheduler::wake_one|posix_event|"
     r"conditionally_enabled_event"),
    ("data-plane frame read (recv + dispatch)", r"FramedConnection::ReadLoop"),
    ("epoll_wait", r"epoll_wait"),
]
GENERIC = [
    ("file/stdout write", r"ext4_|ksys_write|__libc_write|_IO_"),
    ("pipe read (log forwarding)", r"pipe_read|ksys_read|__libc_read"),
]
OWNERS = [(n, re.compile(p)) for n, p in OWNERS]
GENERIC = [(n, re.compile(p)) for n, p in GENERIC]
SYSCALL = re.compile(r"^(__sys_\w+|ksys_\w+|__x64_sys_\w+|__do_sys_\w+|do_sys_\w+|do_epoll_wait|do_futex)")
FRAME = re.compile(r"^\s+([0-9a-f]+) (.*)$")


def classify(frames):
    for cats in (OWNERS, GENERIC):
        for f in frames:
            for name, rx in cats:
                if rx.search(f):
                    return name
    return "other (Asio scheduler, coroutine glue, malloc outside the above)"


def main():
    wanted = set(sys.argv[1:])
    total = collections.Counter()
    per = collections.defaultdict(collections.Counter)
    in_sys = collections.defaultdict(collections.Counter)
    calls = collections.defaultdict(collections.Counter)
    comm, frames = None, []

    def flush():
        if comm is None or (wanted and comm not in wanted):
            return
        total[comm] += 1
        cat = classify(frames)
        per[comm][cat] += 1
        for f in frames:
            m = SYSCALL.match(f)
            if m:
                in_sys[comm][cat] += 1
                calls[comm][m.group(1)] += 1
                break

    for line in sys.stdin:
        line = line.rstrip("\n")
        m = FRAME.match(line)
        if m and comm is not None:
            frames.append(m.group(2))
            continue
        flush()
        comm, frames = (line.split()[0] if line.strip() else None), []
    flush()

    for c in (sys.argv[1:] or sorted(total)):
        n = total[c]
        if not n:
            continue
        print(f"{c}: {n} samples, {100 * sum(calls[c].values()) / n:.0f}% inside system calls")
        for cat, k in per[c].most_common():
            print(f"  {100 * k / n:5.1f}%  (syscalls {100 * in_sys[c][cat] / n:4.1f}%)  {cat}")
        top = ", ".join(f"{s} {100 * k / n:.1f}%" for s, k in calls[c].most_common(6))
        print(f"  system calls: {top}")


if __name__ == "__main__":
    main()
