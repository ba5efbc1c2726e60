"""What the e2e scripts share about the processes they start: free loopback ports, waiting for
a process to listen, stopping it (only the processes a script started, by their handles), and
printing a run's checks."""

import socket
import subprocess
import time


def free_port():
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, error=SystemExit):
    """Waits (10 s at most) until something accepts on 127.0.0.1:`port`; raises `error` when
    `process` exits first or nothing listens in time."""
    for _ in range(200):
        if process.poll() is not None:
            raise error(f"{' '.join(map(str, process.args[:2]))} exited early")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise error(f"nothing listens on {port}")


def stop(process):
    """Terminates `process` if it still runs; kills it after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def print_checks(checks):
    """Prints `(ok, line, notes)` checks, one line each; returns (passed, failed)."""
    passed = failed = 0
    for ok, line, notes in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {line}")
        for note in notes:
            print(f"     {note}")
        passed += ok
        failed += not ok
    return passed, failed
