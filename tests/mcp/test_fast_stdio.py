"""fast_stdio: the loop-driven pipes keep the wire clean (stray output goes to stderr), carry lines
of any length, end at EOF, restore the descriptors, and step aside where they are not safe."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

SCRIPT = shutil.which("mcp-server-conversations", path=os.path.dirname(sys.executable))
ENV = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHON_DOTENV_DISABLED": "1"}

ECHO = textwrap.dedent(
    """
    import asyncio, os, sys
    from mcp_server_conversations.mcp import fast_stdio

    async def main():
        print("usable", fast_stdio.usable(), file=sys.stderr, flush=True)
        async with fast_stdio._claimed_pipes() as (reader, writer):
            print("stray print", flush=True)          # fd 1 is stderr while serving
            os.write(1, b"stray write\\n")
            assert sys.stdin.read() == ""              # fd 0 reads /dev/null
            async for line in reader:
                await writer.write(f"{len(line)}:{line[:5]}|{line[-6:]}")
                await writer.flush()
        os.write(1, b"after\\n")                       # the wire is back on fd 1, blocking again
        print("blocking", os.get_blocking(0), os.get_blocking(1), file=sys.stderr, flush=True)

    asyncio.run(main())
    """
)


def test_pipes_keep_the_wire_clean_and_carry_long_lines() -> None:
    big = "x" * 1_000_000 + "end\n"
    proc = subprocess.run(
        [sys.executable, "-c", ECHO],
        input=f"hello\n{big}last-without-newline",
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "6:hello|hello\n1000004:xxxxx|xxend\n20:last-|ewline" + "after\n"
    assert "usable True" in proc.stderr
    assert "stray print" in proc.stderr and "stray write" in proc.stderr
    assert "blocking True True" in proc.stderr


def test_not_used_when_stdout_and_stderr_are_one_pipe() -> None:
    code = "import sys; from mcp_server_conversations.mcp import fast_stdio; print(fast_stdio.usable())"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert proc.stdout.strip() == "False"


def rpc_lines(*messages: dict) -> str:
    return "".join(json.dumps(m) + "\n" for m in messages)


def test_server_over_pipes_answers_a_request_larger_than_the_read_buffer(tmp_path) -> None:
    summary = "s" * 150_000  # one request line of ~150 KB (the reader's buffer is 64 KiB)
    lines = rpc_lines(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "create_conversation", "arguments": {"summary": summary}},
        },
        {"jsonrpc": "2.0", "id": 3, "method": "ping"},
    )
    assert SCRIPT
    proc = subprocess.Popen(
        [SCRIPT, "--db", str(tmp_path / "x.db")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert proc.stdin and proc.stdout
    proc.stdin.write(lines)
    proc.stdin.flush()
    replies = {}
    while len(replies) < 3:
        msg = json.loads(proc.stdout.readline())
        replies[msg["id"]] = msg
    proc.stdin.close()  # EOF: the server ends on its own
    assert proc.wait(timeout=30) == 0
    created = replies[2]["result"]
    assert not created.get("isError"), created
    assert created["structuredContent"]["summary"] == summary
    assert replies[3]["result"] == {}


def test_server_exits_when_the_client_stops_reading(tmp_path) -> None:
    """A client that closes its end of our stdout and then stdin: the server notices the broken
    pipe, closes its database (whose threads would otherwise keep the process alive) and exits."""
    assert SCRIPT
    proc = subprocess.Popen(
        [SCRIPT, "--db", str(tmp_path / "x.db")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}
    proc.stdin.write(json.dumps(init).encode() + b"\n")
    proc.stdin.flush()
    proc.stdout.readline()
    proc.stdout.close()
    proc.stdin.write(b'{"jsonrpc": "2.0", "id": 2, "method": "ping"}\n')  # its answer meets a closed pipe
    proc.stdin.flush()
    proc.stdin.close()
    try:
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, proc.stderr.read().decode()[-2000:]
