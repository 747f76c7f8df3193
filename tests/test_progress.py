"""Progress bars for the long operations: every byte deploy, checkout and verify copy or hash is
counted (tether.meter), and the CLI shows the count as a bar on a terminal only."""

from __future__ import annotations

import io
import os

from rich.console import Console

from tether import digest, materialise, meter
from tether.cli.base import byte_bar


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
    from tether import materialise

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
