"""Progress bars for the long operations: every byte deploy, checkout and verify copy or hash is
counted (tether.meter), and the CLI shows the count as a bar on a terminal only, with the total the
manifest announces and status lines on their own lines; -q keeps the result's line alone. The
verified copy under it (materialise._pump) hashes beside its reads and writes and starts writeback
as it goes."""

from __future__ import annotations

import io
import os
import re

from rich.console import Console

from tether import digest, meter
from tether.adapters import materialise
from tether.cli.base import byte_bar, progress


def test_every_byte_hashed_is_counted_once_and_only_inside_the_block(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(os.urandom((3 << 20) + 7))  # more than one block, and a partial last block
    seen: list[int] = []
    with meter.counting(seen.append):
        digest.sha256_file(f)
    assert sum(seen) == f.stat().st_size and len(seen) == 4
    digest.sha256_file(f)  # outside the block: nobody counts, nothing breaks
    assert sum(seen) == f.stat().st_size


def test_a_verified_copy_is_counted(tmp_path):
    from tether.adapters import materialise

    src, dst = tmp_path / "src.bin", tmp_path / "out" / "dst.bin"
    src.write_bytes(b"x" * 1_500_000)
    want = digest.sha256_file(src)
    seen: list[int] = []
    with meter.counting(seen.append):
        materialise._copy(src, dst, sha256=want, name="src.bin")
    assert sum(seen) == 1_500_000 and dst.read_bytes() == src.read_bytes()


def test_the_bar_renders_on_a_terminal_and_is_absent_when_piped(tmp_path):
    f = tmp_path / "model.onnx"
    f.write_bytes(b"y" * (2 << 20))
    out = io.StringIO()
    with byte_bar("verifying \x1b[2Jm@v1.0.0", console=Console(file=out, force_terminal=True, width=100)):
        digest.sha256_file(f)
    shown = out.getvalue()
    assert "verifying" in shown and "2.1/? MB" in shown, shown
    assert "\x1b[2J" not in shown  # the label (from the command line) is escaped
    seen: list[int] = []
    with meter.counting(seen.append), byte_bar("verifying"):  # pytest's stderr is no terminal
        digest.sha256_file(f)
    assert sum(seen) == 2 << 20  # the outer count still sees every byte: no bar took it over


class _Trickle:
    """A source that returns short, uneven reads, as a network stream does."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.k = data, 0, 0

    def readinto(self, buf) -> int:
        self.k += 1
        n = min(len(buf), 1 + (self.k * 7919) % len(buf), len(self.data) - self.pos)
        buf[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


class _ShortWriter(io.BytesIO):
    """A raw file whose writes may take fewer bytes than offered."""

    def write(self, b) -> int:
        return super().write(bytes(b)[: max(1, len(b) // 3)])


def test_overlapped_hashing_sees_every_byte_in_order_through_short_reads_and_writes():
    import hashlib

    data = os.urandom(materialise._BLOCK * (materialise._OVERLAP_AFTER + 5) + 12345)
    fout = _ShortWriter()
    hashes = [hashlib.sha256(), hashlib.md5()]
    materialise._pump(_Trickle(data), fout, hashes)
    assert fout.getvalue() == data
    assert hashes[0].hexdigest() == hashlib.sha256(data).hexdigest()
    assert hashes[1].hexdigest() == hashlib.md5(data).hexdigest()


def test_writeback_starts_in_order_for_every_stretch_written_and_failure_turns_it_off(tmp_path, monkeypatch):
    """The kernel is asked to start writing each _WRITEBACK bytes as they go out (one contiguous
    run of ranges from offset 0), never for a file without a descriptor; a refused call turns it
    off for the rest of the file. The bytes and digests are the same either way."""
    import hashlib

    calls: list[tuple[int, int]] = []
    answer = [0]

    def recorder(fd, offset, length, flags):
        assert flags == materialise._SYNC_FILE_RANGE_WRITE and os.fstat(fd).st_size >= offset + length
        calls.append((offset, length))
        return answer[0]

    monkeypatch.setattr(materialise, "_sync_file_range", lambda: recorder)
    data = os.urandom(3 * materialise._WRITEBACK + 4321)
    src = tmp_path / "src"
    src.write_bytes(data)
    with open(src, "rb", buffering=0) as fin:
        digest = materialise._write(fin, tmp_path / "a", None, "a", None, "hint")
    assert digest == hashlib.sha256(data).hexdigest() and (tmp_path / "a").read_bytes() == data
    assert [off for off, _ in calls] == [sum(n for _, n in calls[:i]) for i in range(len(calls))]  # contiguous from 0
    assert len(calls) == 3 and all(n >= materialise._WRITEBACK for _, n in calls)

    calls.clear()
    materialise._pump(_Trickle(data), _ShortWriter(), [hashlib.sha256()])  # no descriptor: never asked
    assert calls == []

    answer[0] = -1  # refused (a pipe, a filesystem that will not): asked once, then off
    with open(src, "rb", buffering=0) as fin:
        assert materialise._write(fin, tmp_path / "b", None, "b", None, "hint") == digest
    assert len(calls) == 1 and (tmp_path / "b").read_bytes() == data


def test_the_real_sync_file_range_is_bound_and_accepted_by_the_kernel(tmp_path):
    """tether's hosts are Linux (as this machine and CI are): the binding must be there."""
    fn = materialise._sync_file_range()
    assert fn is not None
    path = tmp_path / "f"
    path.write_bytes(os.urandom(1 << 20))
    fd = os.open(path, os.O_RDWR)
    try:
        assert fn(fd, 0, 1 << 20, materialise._SYNC_FILE_RANGE_WRITE) == 0
        assert fn(fd, 0, 1 << 20, 0x7FFF) != 0  # the binding passes its arguments: bad flags are refused
    finally:
        os.close(fd)


def test_the_bar_shows_the_announced_total_and_status_lines_print_on_their_own_line(tmp_path):
    f = tmp_path / "model.onnx"
    f.write_bytes(b"y" * (2 << 20))
    out = io.StringIO()
    with byte_bar("deploying production", console=Console(file=out, force_terminal=True, width=100)):
        meter.expect(f.stat().st_size)
        progress("materialising m@v1.0.0 and verifying every digest …")
        digest.sha256_file(f)
    shown = out.getvalue()
    assert "/? " not in shown and "0.0/2.1 MB" in shown and "2.1/2.1 MB" in shown, shown
    # the status line: the bar's line cleared first (not glued after it), then the line and its own newline
    assert "\x1b[2Kmaterialising m@v1.0.0 and verifying every digest …\n" in shown, repr(shown)
    before = io.StringIO()
    with byte_bar("checking", console=Console(file=before, force_terminal=True, width=100)):
        progress("nothing counted yet")  # no bar started before a total or a byte: a plain line
    assert "? bytes" not in before.getvalue() and "0/" not in before.getvalue(), before.getvalue()


def test_a_real_deploy_on_a_terminal_has_a_known_total_and_separate_status_lines(project_live, tmp_path):
    from terminal import ANSI, in_tty

    code, out = in_tty(project_live, "deploy", "--env", "production", "--target", str(tmp_path / "srv"))
    assert code == 0, out
    assert "? bytes" not in out and "/?" not in out, out
    sizes = re.findall(r"([0-9.]+)/([0-9.]+) ([kMG]B)", ANSI.sub("", out))
    assert sizes and sizes[-1][0] == sizes[-1][1] and float(sizes[-1][1]) > 0, sizes  # done: all of the total
    assert len({s[1] for s in sizes}) == 1, sizes  # one total, known from the first frame
    text = ANSI.sub("", out)
    for status in ("checking ", "materialising "):
        at = text.index(status)
        assert text[at - 1] in "\r\n", repr(text[at - 40:at + 20])  # starts its own line
        assert "\n" in text[at:text.index("…", at) + 3], repr(text[at:at + 200])  # and ends it
    assert "production: deployed fraud-detector@v1.0.0" in text.splitlines()[-1] or \
        "production: deployed fraud-detector@v1.0.0" in text.rstrip().splitlines()[-1], repr(text[-300:])

    quiet_code, quiet = in_tty(project_live, "deploy", "--env", "production", "--target", str(tmp_path / "q"), "-q")
    assert quiet_code == 0 and [ln for ln in ANSI.sub("", quiet).replace("\r", "").splitlines() if ln] == \
        [f"production: deployed fraud-detector@v1.0.0 to {tmp_path / 'q'} (was empty)"], repr(quiet)


def test_quiet_keeps_the_result_line_errors_and_exit_codes(project_live, tmp_path):
    from project import threshold_release

    p = project_live
    loud = p.ok("deploy", "--env", "production", "--target", str(tmp_path / "a"))
    assert "checking" in loud.err
    res = p.ok("deploy", "--env", "production", "--target", str(tmp_path / "b"), "-q")
    assert res.err == "" and res.out.splitlines() == [
        f"production: deployed fraud-detector@v1.0.0 to {tmp_path / 'b'} (was empty)"]
    p.code_only_change("quiet")
    res = p.ok("release", "--quiet")
    assert res.err == "" and len(res.out.splitlines()) == 1 and res.out.startswith("released fraud-detector@v1.0.1 at ")
    res = p.ok("promote", "fraud-detector@v1.0.1", "--env", "staging", "--reason", "r", "-q")
    assert res.out.splitlines() == [res.out.strip()] and "staging: (empty) → fraud-detector@v1.0.1" in res.out, res.out
    # not pushed: -q keeps that as a warning, the one line on stderr (no gate lines, no status line)
    assert res.err.splitlines() == [res.err.strip()] and res.err.startswith("warning: local only: not pushed"), res.err
    res = p.ok("rollback", "--env", "staging", "--release", "fraud-detector@v1.0.0", "--reason", "r", "-q", "--push")
    assert res.err == "" and len(res.out.splitlines()) == 1 and res.out.startswith(
        "staging: fraud-detector@v1.0.1 → fraud-detector@v1.0.0 (rollback, commit ") and ", pushed)" in res.out, res.out
    res = p.ok("checkout", "staging", "-q")
    assert res.err == "" and res.out.startswith("checked out fraud-detector@v1.0.0 (staging) at ") and \
        len(res.out.splitlines()) == 1, res.out
    p.ok("checkout", "main", "-q")
    res = p.ok("gc", "-q")
    assert res.err == "" and len(res.out.splitlines()) == 1 and res.out.startswith("deleted "), res.out
    # an error is still an error, with the same exit code, quiet or not
    v = threshold_release(p, 0.35)
    loud = p.tether("promote", v, "--env", "production", "--reason", "r", "--skip-staging", "s")
    quiet = p.tether("promote", v, "--env", "production", "--reason", "r", "--skip-staging", "s", "-q")
    assert loud.code == quiet.code == 5 and quiet.out == "" and quiet.err.startswith("error: promote refused"), quiet
